"""``database.jobs``: pg_dump and pg_restore with N jobs against one custom-format file.

    .venv/bin/python bench/jobs.py                    # ~1.2 GB per shape, 3 rounds
    .venv/bin/python bench/jobs.py --rows 300000 --scale 20 --rounds 2   # ~300 MB

Two databases on the machine's PostgreSQL (127.0.0.1:5432, trust auth), the same
size, different shapes, since pg_dump's jobs work a table each:

  one table    pgbench -i -s SCALE (pgbench_accounts holds nearly all of it)
  four tables  four equal tables of ROWS rows (an id, a number, 224 bytes of text)

For each shape and variant, alternating, ``--rounds`` times: the dump
(``pg_dump -Fc`` for jobs 1, else ``-Fd --jobs=N``) and its restore into a fresh
database (``pg_restore --jobs=N``, as the restore guide and drills run it).
Reported: median seconds, the ratio to jobs 1, the dump's size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    PG_DUMP_VERSION,
    dir_size,
    human,
    machine_line,
    median,
    need,
    print_table,
    run,
)
from overhead import PGBENCH

HOST = {"PGHOST": "127.0.0.1", "PGPORT": "5432", "PGUSER": "postgres"}
SHAPES = ("one table", "four tables")
TABLE_SQL = (
    "CREATE TABLE {name} AS SELECT g AS id, (g::bigint * 7919) % 100000 AS n,"
    " repeat(md5(g::text), 6) || md5((g * 31)::text) AS note FROM generate_series(1, {rows}) g"
)


def env(dbname: str) -> dict[str, str]:
    return dict(os.environ, **HOST, PGDATABASE=dbname)


def psql(sql: str, dbname: str = "postgres") -> str:
    return run(["psql", "-X", "-Atq", "-c", sql], env=env(dbname)).stdout.strip()


def create(shape: str, rows: int, scale: int) -> tuple[str, int]:
    name = "backupctl_bench_jobs_" + shape.replace(" ", "_")
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(f"CREATE DATABASE {name}")
    if shape == "one table":
        run([PGBENCH, "-i", "-q", "-s", str(scale)], env=env(name))
    else:
        for number in range(4):
            psql(TABLE_SQL.format(name=f"t{number}", rows=rows), name)
    return name, int(psql(f"SELECT pg_database_size('{name}')"))


def dump(db: str, jobs: int, target: Path) -> float:
    argv = ["pg_dump", f"--file={target}", "--no-password"]
    argv += ["--format=custom"] if jobs == 1 else ["--format=directory", f"--jobs={jobs}"]
    started = time.perf_counter()
    run(argv, env=env(db))
    return time.perf_counter() - started


def restore(source: Path, jobs: int) -> float:
    scratch = "backupctl_bench_jobs_restore"
    psql(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")
    psql(f"CREATE DATABASE {scratch}")
    started = time.perf_counter()
    run(["pg_restore", "--no-owner", "--exit-on-error", f"--jobs={jobs}",
         f"--dbname={scratch}", str(source)], env=env(scratch))  # fmt: skip
    seconds = time.perf_counter() - started
    psql(f"DROP DATABASE {scratch}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_200_000, help="four tables: rows each")
    parser.add_argument("--scale", type=int, default=80, help="one table: pgbench scale")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", default="1,2,4")
    args = parser.parse_args()
    need("pg_dump", "pg_restore", "psql", PGBENCH)
    variants = [int(j) for j in args.jobs.split(",")]
    print(machine_line(PG_DUMP_VERSION), flush=True)
    root = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    databases = []
    try:
        rows = []
        for shape in SHAPES:
            started = time.perf_counter()
            db, size = create(shape, args.rows, args.scale)
            databases.append(db)
            print(f"# {shape}: {human(size)} (created in {time.perf_counter() - started:.0f} s)",
                  flush=True)  # fmt: skip
            dumps: dict[int, list[float]] = {j: [] for j in variants}
            restores: dict[int, list[float]] = {j: [] for j in variants}
            sizes: dict[int, int] = {}
            for round_no in range(args.rounds):
                for jobs in variants if round_no % 2 == 0 else variants[::-1]:
                    target = root / f"{db}-{jobs}"
                    dumps[jobs].append(dump(db, jobs, target))
                    sizes[jobs] = dir_size(target) if target.is_dir() else target.stat().st_size
                    restores[jobs].append(restore(target, jobs))
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
                print(f"# {shape}, round {round_no + 1}/{args.rounds}: " + ", ".join(
                    f"jobs {j} dump {dumps[j][-1]:.2f} s restore {restores[j][-1]:.2f} s"
                    for j in variants), flush=True)  # fmt: skip
            for jobs in variants:
                d, r = median(dumps[jobs]), median(restores[jobs])
                rows.append([shape, jobs, f"{d:.2f}", f"{d / median(dumps[1]):.2f}",
                             f"{r:.2f}", f"{r / median(restores[1]):.2f}",
                             human(sizes[jobs])])  # fmt: skip
        print(f"\n# median of {args.rounds} rounds, alternating; seconds; jobs 1 = -Fc")
        print_table(["database", "jobs", "dump", "/ jobs 1", "restore", "/ jobs 1", "size"], rows)
    finally:
        for db in databases:
            psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
