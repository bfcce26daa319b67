"""Repository growth per daily backup of a SQLite database changing 1% a day, by how
the SQLite dumper compresses the dump.

    .venv/bin/python bench/storage_sqlite.py                 # 600,000 rows, 5 days, both patterns
    .venv/bin/python bench/storage_sqlite.py --rows 100000 --days 3 --patterns append

A SQLite database of ``--rows`` orders (ids, status, amount, two md5 strings, a date:
about 55 MiB at the default). Each "day" changes 1% of the orders (``clustered``: one
contiguous id range updated; ``append``: 1% new orders), then the dumper's online
copy is compressed once per variant and backed up into a restic repository of its
own (local, format 2, ``--compression auto``; all repositories share one chunker
polynomial). "per day" is the mean growth over days 2.., day 1 being the full backup.

Variants:

  gzip                   what the dumper did before: one gzip stream (level 6)
  backupctl              the dumper's ``_compress``: level 6, full flush every 64 KiB
  gzip --rsyncable       the gzip tool's ``-6 -n --rsyncable`` (what the MySQL dumper uses)
  uncompressed           the copy as it is (``compression.enabled: false``)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MIB, RESTIC_VERSION, dir_size, machine_line, need
from backupctl_sqlite.plugin import _compress


def plain_gzip(source: Path, target: Path) -> None:
    with source.open("rb") as raw, gzip.open(target, "wb", compresslevel=6) as packed:
        shutil.copyfileobj(raw, packed, MIB)


def gzip_rsyncable(source: Path, target: Path) -> None:
    with source.open("rb") as raw, target.open("wb") as out:
        subprocess.run(["gzip", "-6", "-n", "--rsyncable", "-c"], stdin=raw, stdout=out, check=True)


VARIANTS: dict[str, Callable[[Path, Path], None]] = {
    "gzip": plain_gzip,
    "backupctl": _compress,
    "gzip --rsyncable": gzip_rsyncable,
    "uncompressed": shutil.copyfile,
}
ENV = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_FROM_PASSWORD": "bench"}


def restic(repo: Path, *args: str) -> None:
    argv = ["restic", "-r", str(repo), "--no-cache", "--quiet", *args]
    subprocess.run(argv, env=ENV, check=True, stdout=subprocess.DEVNULL)


def order(rnd: random.Random, i: int) -> tuple[object, ...]:
    def md5() -> str:
        return hashlib.md5(str(rnd.random()).encode()).hexdigest()

    return (i, rnd.choice(["new", "paid", "sent"]), rnd.randint(1, 10**6), md5(), md5(),
            f"2026-01-{rnd.randint(1, 28):02d}")  # fmt: skip


def one_pattern(root: Path, pattern: str, rows: int, days: int) -> None:
    rnd = random.Random(1)
    database = sqlite3.connect(root / "app.sqlite")
    database.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT, amount INTEGER,"
                     " a TEXT, b TEXT, day TEXT)")  # fmt: skip
    database.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?)",
                         (order(rnd, i) for i in range(rows)))  # fmt: skip
    database.commit()
    repos: dict[str, Path] = {}
    for name in VARIANTS:
        repos[name] = root / f"repo-{len(repos)}"
        if len(repos) == 1:
            restic(repos[name], "init")
        else:
            first = str(next(iter(repos.values())))
            restic(repos[name], "init", "--copy-chunker-params", "--from-repo", first)
    growth: dict[str, list[int]] = {name: [] for name in VARIANTS}
    sizes: dict[str, int] = {}
    seconds: dict[str, float] = dict.fromkeys(VARIANTS, 0.0)
    copy = root / "copy.sqlite"
    for day in range(days):
        if day:
            n = rows // 100
            if pattern == "clustered":
                start = rnd.randrange(rows - n)
                database.executemany(
                    "UPDATE orders SET status = ?, a = ? WHERE id = ?",
                    [(rnd.choice(["paid", "sent"]), hashlib.md5(str(i).encode()).hexdigest(), i)
                     for i in range(start, start + n)],
                )  # fmt: skip
            else:
                first_new = rows + (day - 1) * n
                new = (order(rnd, i) for i in range(first_new, first_new + n))
                database.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?)", new)
            database.commit()
        copy.unlink(missing_ok=True)
        target = sqlite3.connect(copy)
        database.backup(target)  # the dumper's online copy
        target.close()
        for name, compress in VARIANTS.items():
            folder = root / "dumps" / name
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            dump = folder / f"app_backup_day{day}.sqlite.gz"
            started = time.perf_counter()
            compress(copy, dump)
            seconds[name] += time.perf_counter() - started
            sizes[name] = dump.stat().st_size
            before = dir_size(repos[name])
            restic(repos[name], "backup", str(folder))
            growth[name].append(dir_size(repos[name]) - before)
    database.close()
    print(f"# {pattern}: database {(root / 'app.sqlite').stat().st_size / MIB:.1f} MiB,"
          f" 1% a day, {days} days")  # fmt: skip
    print("| dump | local dump | day 1 | per day | compress, s |")
    print("|---|---:|---:|---:|---:|")
    for name in VARIANTS:
        later = growth[name][1:]
        print(f"| {name} | {sizes[name] / MIB:.1f} MiB | {growth[name][0] / MIB:.1f} MiB"
              f" | {sum(later) / len(later) / MIB:.2f} MiB"
              f" | {seconds[name] / days:.2f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600_000)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--patterns", nargs="+", default=["clustered", "append"],
                        choices=["clustered", "append"])  # fmt: skip
    args = parser.parse_args()
    need("restic", "gzip")
    print(machine_line(RESTIC_VERSION, ("gzip", "--version")))
    for pattern in args.patterns:
        with tempfile.TemporaryDirectory(prefix="backupctl-bench-") as folder:
            one_pattern(Path(folder), pattern, args.rows, max(args.days, 2))


if __name__ == "__main__":
    main()
