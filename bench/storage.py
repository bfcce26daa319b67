"""Repository growth over 10 daily backups of a database that changes 1% a day.

    .venv/bin/python bench/storage.py                      # 1M orders, 10 days, 3 patterns
    .venv/bin/python bench/storage.py --rows 200000 --days 5 --patterns scattered

A PostgreSQL database on the machine's server (127.0.0.1:5432, trust auth):
``customers`` (50,000 rows) and ``orders`` (``--rows``, default 1,000,000: ids,
status, amounts, two md5 strings, a timestamp - about 150 MB as plain SQL).
Each "day" changes 1% of the orders, then ``VACUUM`` (nightly maintenance),
then backs up the database once per variant, each variant into a restic
repository of its own (local, restic's default repository format: version 2,
``--compression auto``). Change patterns (``--patterns``):

  scattered  1% of the orders updated, chosen uniformly at random
  clustered  1% of the orders updated, one contiguous id range (a random one
             each day): a burst of activity on some accounts
  append     1% new orders inserted at the end (an insert-only table)

Variants:

  backupctl (default)    ``backupctl run``: pg_dump -Fc (zlib level 6 per table),
                         restic with its default --compression auto
  backupctl (compression: false)
                         ``backupctl run`` of a project with ``compression:
                         {enabled: false}``: pg_dump -Fc --compress=0, restic auto
  -Fc -Z0                pg_dump -Fc -Z0 (uncompressed custom format), restic auto
  -Fc -Z0, restic max    the same, restic --compression max
  -Fc -Z0, restic off    the same, restic --compression off: dedup alone
  SQL | gzip             pg_dump (plain SQL) | gzip (level 6)
  SQL | gzip --rsyncable pg_dump | gzip --rsyncable
  SQL, restic auto       plain SQL, uncompressed, restic auto

"added" is the growth of the repository directory on disk (packs, index,
snapshot files) per backup; day 1 is the first, full backup. Snapshots are
never forgotten (retention: keep everything), so nothing is pruned. All
repositories share one chunker polynomial (``init --copy-chunker-params``;
backupctl's repository is created here first, so backupctl finds it), so
they cut the same data at the same places. See docs/storage.md for the
trade-off.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    PG_DUMP_VERSION,
    RESTIC_VERSION,
    Workspace,
    dir_size,
    human,
    machine_line,
    median,
    need,
    print_table,
    run,
)

DB = "backupctl_bench_storage"
PG = {"PGHOST": "127.0.0.1", "PGPORT": "5432", "PGUSER": "postgres"}
CUSTOMERS = 50_000

SCHEMA = """
SELECT setseed(0.42);
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, city text, created date);
INSERT INTO customers
  SELECT g, 'Customer ' || g, 'user' || g || '@example.com',
         (ARRAY['Berlin', 'Hamburg', 'München', 'Köln', 'Wien'])[1 + g % 5],
         date '2020-01-01' + g % 1500
  FROM generate_series(1, {customers}) g;
CREATE TABLE orders (
  id bigint PRIMARY KEY, customer int, status text, total numeric(10, 2),
  note text, updated timestamptz);
INSERT INTO orders
  SELECT g, 1 + (g::bigint * 7919) % {customers},
         (ARRAY['new', 'paid', 'shipped', 'done'])[1 + (g % 4)],
         round((random() * 500)::numeric, 2),
         md5(g::text) || ' ' || md5(random()::text),
         timestamptz '2024-01-01 00:00+00' + g * interval '1 minute'
  FROM generate_series(1, {rows}) g;
"""

CHANGE = {
    "scattered": """
        UPDATE orders SET status = 'changed', total = total + 1,
               note = md5(random()::text) || ' ' || md5(random()::text),
               updated = updated + interval '1 day'
        WHERE random() < 0.01;""",
    "clustered": """
        UPDATE orders SET status = 'changed', total = total + 1,
               note = md5(random()::text) || ' ' || md5(random()::text),
               updated = updated + interval '1 day'
        WHERE id BETWEEN {start} AND {start} + {count} - 1;""",
    "append": """
        INSERT INTO orders
          SELECT m + g, 1 + ((m + g) * 7919) % {customers}, 'new',
                 round((random() * 500)::numeric, 2),
                 md5((m + g)::text) || ' ' || md5(random()::text),
                 timestamptz '2024-01-01 00:00+00' + (m + g) * interval '1 minute'
          FROM (SELECT max(id) AS m FROM orders) x, generate_series(1, {count}) g;""",
}

VARIANTS = [
    "backupctl (default: -Fc)",
    "backupctl (compression: false)",
    "-Fc -Z0, restic auto",
    "-Fc -Z0, restic max",
    "-Fc -Z0, restic off",
    "SQL | gzip",
    "SQL | gzip --rsyncable",
    "SQL, restic auto",
]
# backupctl variant -> its project (the first one's repository is created first)
BACKUPCTL = {"backupctl (default: -Fc)": "store", "backupctl (compression: false)": "plain"}
# variant -> (dump format, restic --compression)
RAW = {
    "-Fc -Z0, restic auto": ("fc0", "auto"),
    "-Fc -Z0, restic max": ("fc0", "max"),
    "-Fc -Z0, restic off": ("fc0", "off"),
    "SQL | gzip": ("gz", "auto"),
    "SQL | gzip --rsyncable": ("gzr", "auto"),
    "SQL, restic auto": ("sql", "auto"),
}


def psql(sql: str, dbname: str = DB) -> str:
    env = dict(os.environ, **PG, PGDATABASE=dbname)
    return run(["psql", "-X", "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql], env=env).stdout.strip()


def make_dumps(folder: Path, day: int) -> tuple[dict[str, Path], dict[str, float]]:
    """The day's dumps in each raw format; seconds to make each."""
    env = dict(os.environ, **PG, PGDATABASE=DB)
    stamp = f"day{day:02d}_{time.strftime('%H%M%S')}"
    paths = {
        "fc0": folder / f"fc0_{stamp}.dump",
        "sql": folder / f"sql_{stamp}.sql",
        "gz": folder / f"gz_{stamp}.sql.gz",
        "gzr": folder / f"gzr_{stamp}.sql.gz",
    }
    seconds: dict[str, float] = {}
    for fmt, argv in (("fc0", ["pg_dump", "-Fc", "-Z0", "-f", str(paths["fc0"])]),
                      ("sql", ["pg_dump", "-f", str(paths["sql"])])):  # fmt: skip
        started = time.perf_counter()
        run(argv, env=env)
        seconds[fmt] = time.perf_counter() - started
    for fmt, option in (("gz", []), ("gzr", ["--rsyncable"])):
        started = time.perf_counter()
        with paths[fmt].open("wb") as out:
            import subprocess

            subprocess.run(["gzip", "-c", *option, str(paths["sql"])], stdout=out, check=True)
        seconds[fmt] = seconds["sql"] + time.perf_counter() - started
    return paths, seconds


def restic_backup(repo: Path, path: Path, compression: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    run(["restic", "--repo", str(repo), "--compression", compression, "backup", "--quiet",
         "--tag", "bench", "--", str(path)], env=env)  # fmt: skip
    return time.perf_counter() - started


def one_pattern(root: Path, pattern: str, rows: int, days: int) -> dict:
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", "postgres")
    psql(f"CREATE DATABASE {DB}", "postgres")
    psql(SCHEMA.format(customers=CUSTOMERS, rows=rows))
    psql("VACUUM ANALYZE")
    db_size = int(psql(f"SELECT pg_database_size('{DB}')"))

    base = root / pattern
    ws = Workspace(base / "ws")
    repos = {v: base / "repos" / f"r{i}" for i, v in enumerate(VARIANTS)}
    database = {"type": "postgres", "host": PG["PGHOST"], "port": int(PG["PGPORT"]),
                "name": DB, "user": PG["PGUSER"]}  # fmt: skip
    keep_all = {"local_days": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}
    ws.write_config([
        {"name": project, "database": database, "restic": {"repository_path": str(repos[v])},
         "retention": keep_all, "compression": {"enabled": v == VARIANTS[0]}}
        for v, project in BACKUPCTL.items()
    ])  # fmt: skip
    ws.backupctl("db", "migrate")
    restic_env = ws.restic_env("store")[0]
    restic_env.pop("RESTIC_REPOSITORY")
    restic_env["RESTIC_CACHE_DIR"] = str(base / "cache")
    # One chunker polynomial for all: restic picks a random one per repository, and
    # where it cuts decides how much of a changed file is a new chunk.
    password_file = base / "restic-password"
    password_file.write_text(restic_env["RESTIC_PASSWORD"])
    run(["restic", "init", "--repo", str(repos[VARIANTS[0]])], env=restic_env)
    for variant in [*VARIANTS[1:2], *RAW]:
        run(["restic", "init", "--repo", str(repos[variant]), "--copy-chunker-params",
             "--from-repo", str(repos[VARIANTS[0]]), "--from-password-file",
             str(password_file)], env=restic_env)  # fmt: skip
    dumps_dir = base / "dumps"
    dumps_dir.mkdir()

    added: dict[str, list[int]] = defaultdict(list)
    backup_s: dict[str, list[float]] = defaultdict(list)
    dump_s: dict[str, list[float]] = defaultdict(list)
    local: dict[str, list[int]] = defaultdict(list)
    count = rows // 100
    rng = random.Random(42)  # the clustered pattern's first id, day by day
    rng_start = [rng.randrange(1, rows - count) for _ in range(days + 1)]
    for day in range(1, days + 1):
        if day > 1:
            psql(f"SELECT setseed(0.{day:02d});" + CHANGE[pattern].format(
                start=rng_start[day], count=count, customers=CUSTOMERS))  # fmt: skip
            psql("VACUUM ANALYZE orders")
        for variant, project in BACKUPCTL.items():
            before = dir_size(repos[variant])
            started = time.perf_counter()
            ws.backupctl("run", project)
            backup_s[variant].append(time.perf_counter() - started)
            added[variant].append(dir_size(repos[variant]) - before)
            own = sorted((ws.base_dir / project).glob(f"{project}_backup_*.dump"))
            local[variant].append(own[-1].stat().st_size)
            for path in own:
                path.unlink()
        # the raw variants: dump once per format, back up into each repository
        paths, seconds = make_dumps(dumps_dir, day)
        for variant, (fmt, compression) in RAW.items():
            before = dir_size(repos[variant])
            backup_s[variant].append(restic_backup(repos[variant], paths[fmt], compression,
                                                   restic_env))  # fmt: skip
            added[variant].append(dir_size(repos[variant]) - before)
            dump_s[variant].append(seconds[fmt])
            local[variant].append(paths[fmt].stat().st_size)
        for path in paths.values():
            path.unlink()
        print(f"#   {pattern} day {day}: " + ", ".join(
            f"{v} +{human(added[v][-1])}"
            for v in VARIANTS), flush=True)  # fmt: skip
    return {"db_size": db_size, "added": added, "backup_s": backup_s, "dump_s": dump_s,
            "local": local, "total": {v: dir_size(repos[v]) for v in VARIANTS}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="orders")
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument(
        "--patterns",
        default="scattered,clustered,append",
        help="comma separated: scattered, clustered, append",
    )
    args = parser.parse_args()
    need("pg_dump", "psql", "restic", "gzip")
    print(machine_line(PG_DUMP_VERSION, RESTIC_VERSION, ("gzip", "--version")), flush=True)
    root = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    try:
        for pattern in args.patterns.split(","):
            started = time.perf_counter()
            result = one_pattern(root, pattern, args.rows, args.days)
            print(f"\n# pattern {pattern}: 1% of {args.rows} orders a day"
                  f" ({CHANGE[pattern].split()[0].lower()}), database"
                  f" {human(result['db_size'])} on day 1; {args.days} daily backups;"
                  f" {time.perf_counter() - started:.0f} s")  # fmt: skip
            rows = []
            for v in VARIANTS:
                later = result["added"][v][1:]
                mean = sum(later) / len(later) if later else 0
                rows.append([
                    v, human(result["local"][v][0]), human(result["added"][v][0]),
                    human(median(later)) if later else "-",
                    human(mean) if later else "-",
                    f"{mean / result['local'][v][-1]:.0%}" if later else "-",
                    human(result["total"][v]),
                    f"{median(result['dump_s'][v]):.1f}" if result["dump_s"][v] else "-",
                    f"{median(result['backup_s'][v]):.1f}",
                ])  # fmt: skip
            print_table(["variant", "dump file", "day 1 added", "later: median",
                         "mean", "mean/dump", f"repo after {args.days}", "dump s",
                         "backup s"], rows, "lrrrrrrrr")  # fmt: skip
            print(
                "(later: bytes added per backup on days 2..N, median and mean; dump s:"
                " pg_dump [+ gzip] of the raw variants; backup s: restic backup, for"
                " backupctl the whole `backupctl run` incl. pg_dump and verify; medians)"
            )
            shutil.rmtree(root / pattern, ignore_errors=True)
    finally:
        try:
            psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", "postgres")
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
