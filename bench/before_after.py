"""``backupctl run`` of this checkout against an earlier revision, alternating.

    .venv/bin/python bench/before_after.py REV [--runs 8] [--scale 1]

The earlier revision is checked out into a temporary git worktree and run with the
same virtualenv, its core and plugins put first on ``PYTHONPATH``; the variants
alternate round by round (order reversed every round) after one unmeasured round
each, on a pgbench database on the machine's PostgreSQL (127.0.0.1:5432, trust
auth) backed up to a local restic repository per variant, retention keep_last 3.
Prints the medians, their ratio and the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import BACKUPCTL, PG_DUMP_VERSION, REPO, RESTIC_VERSION, machine_line, median, run

DB = "backupctl_bench_before_after"
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
PSQL = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]


def workspace(root: Path, name: str) -> Path:
    folder = root / name
    (folder / "config").mkdir(parents=True)
    (folder / ".env").write_text(
        f"RESTIC_PASSWORD=bench-pw-123\nBACKUP_BASE_DIR={folder / 'base'}\nTIMEZONE=UTC\n"
    )
    (folder / "config" / "projects.yml").write_text(
        "projects:\n  - name: bench\n"
        f"    database: {{type: postgres, host: 127.0.0.1, port: 5432, name: {DB},"
        " user: postgres}\n"
        f"    restic: {{repository_path: {folder / 'repo'}}}\n"
        "    retention: {keep_last: 3, keep_daily: 0, keep_weekly: 0, keep_monthly: 0}\n"
    )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the earlier git revision, e.g. HEAD~3 or a commit")
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--scale", type=int, default=1, help="pgbench scale (~15 MB each)")
    args = parser.parse_args()
    print(machine_line(PG_DUMP_VERSION, RESTIC_VERSION))
    root = Path(tempfile.mkdtemp(prefix="backupctl-bench-ab-"))
    old = root / "tree"
    run(["git", "-C", REPO, "worktree", "add", "--detach", old, args.rev])
    try:
        run(
            [
                *PSQL,
                "-c",
                f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)",
                "-c",
                f"CREATE DATABASE {DB}",
            ]
        )
        run([PGBENCH, "-h", "127.0.0.1", "-U", "postgres", "-i", "-s", str(args.scale), DB])
        old_path = ":".join([str(old), *(str(p) for p in sorted((old / "plugins").iterdir()))])
        variants = {
            f"before ({args.rev})": (workspace(root, "before"), {"PYTHONPATH": old_path}),
            "after (this checkout)": (workspace(root, "after"), {}),
        }
        for folder, extra in variants.values():
            run([BACKUPCTL, "db", "migrate"], cwd=folder, env=_env(extra))
        times: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(args.runs + 1):
            order = list(variants.items())
            if round_ % 2:
                order.reverse()
            for name, (folder, extra) in order:
                started = time.perf_counter()
                run([BACKUPCTL, "run", "bench"], cwd=folder, env=_env(extra))
                if round_:  # the first round warms caches and creates the repositories
                    times[name].append(time.perf_counter() - started)
        (before, after) = times.values()
        per_round = [a / b for a, b in zip(after, before, strict=True)]
        print(f"# pgbench -i -s {args.scale}; local restic repositories; {args.runs} rounds")
        for name, values in times.items():
            print(f"{name:28} median {median(values):.2f} s  ({min(values):.2f}-{max(values):.2f})")
        print(f"after / before: {median(after) / median(before):.2f}"
              f" (median of per-round ratios {median(per_round):.2f})")  # fmt: skip
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)],
                       check=False)  # fmt: skip
        run([*PSQL, "-c", f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)"], check=False)
        shutil.rmtree(root, ignore_errors=True)


def _env(extra: dict[str, str]) -> dict[str, str]:
    import os

    return {**os.environ, **extra}


if __name__ == "__main__":
    sys.exit(main())
