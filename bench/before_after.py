"""``backupctl run`` of this checkout against an earlier revision, alternating.

    .venv/bin/python bench/before_after.py REV [--runs 8] [--scale 1] [--fixed-cost]

The earlier revision is checked out into a temporary git worktree and run with the
same virtualenv, its core and plugins put first on ``PYTHONPATH``; the variants
alternate round by round (order reversed every round) after one unmeasured round
each, on a pgbench database on the machine's PostgreSQL (127.0.0.1:5432, trust
auth) backed up to a local restic repository per variant, retention keep_last 3.
Prints the medians, their ratio and the median of the per-round ratios.

``--fixed-cost`` runs each under ``strace -f --seccomp-bpf -e trace=execve,exit_group``
(only those two system calls stop the process: the rest runs at full speed) and
also prints the medians of backupctl's own time before its first tool starts
(its exec to the first child's exec) and after its last tool ends (the last
child's exit to its own).
"""

from __future__ import annotations

import argparse
import re
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
    parser.add_argument("--fixed-cost", action="store_true", help="time around the tools")
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
        around: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        trace = root / "trace"
        strace = ["strace", "-f", "--seccomp-bpf", "-ttt", "-e", "trace=execve,exit_group",
                  "-o", str(trace)] if args.fixed_cost else []  # fmt: skip
        for round_ in range(args.runs + 1):
            order = list(variants.items())
            if round_ % 2:
                order.reverse()
            for name, (folder, extra) in order:
                started = time.perf_counter()
                run([*strace, BACKUPCTL, "run", "bench"], cwd=folder, env=_env(extra))
                if round_:  # the first round warms caches and creates the repositories
                    times[name].append(time.perf_counter() - started)
                    if strace:
                        around[name].append(before_and_after_tools(trace))
        (before, after) = times.values()
        per_round = [a / b for a, b in zip(after, before, strict=True)]
        print(f"# pgbench -i -s {args.scale}; local restic repositories; {args.runs} rounds")
        for name, values in times.items():
            print(f"{name:28} median {median(values):.2f} s  ({min(values):.2f}-{max(values):.2f})")
        print(f"after / before: {median(after) / median(before):.2f}"
              f" (median of per-round ratios {median(per_round):.2f})")  # fmt: skip
        for name, pairs in around.items():
            if pairs:
                first, last = median([p[0] for p in pairs]), median([p[1] for p in pairs])
                print(f"{name:28} before the first tool {first:.3f} s,"
                      f" after the last {last:.3f} s (medians)")  # fmt: skip
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)],
                       check=False)  # fmt: skip
        run([*PSQL, "-c", f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)"], check=False)
        shutil.rmtree(root, ignore_errors=True)


TRACE_LINE = re.compile(r"(\d+)\s+([\d.]+)\s+(execve\(|exit_group\(|\+\+\+ exited)")


def before_and_after_tools(trace: Path) -> tuple[float, float]:
    """From an ``strace -f -ttt`` log: (first child's exec - own exec, own exit - last
    child's exit). Failed execs (a PATH search's ENOENT) do not count."""
    events = []
    for line in trace.read_text().splitlines():
        found = TRACE_LINE.match(line)
        if found and "ENOENT" not in line:
            events.append((int(found[1]), float(found[2]), found[3]))
    main_pid, start = events[0][0], events[0][1]
    children = [e for e in events if e[0] != main_pid]
    first_exec = min(t for _, t, kind in children if kind == "execve(")
    last_exit = max(t for _, t, kind in children if kind != "execve(")
    own_exit = max(t for pid, t, _ in events if pid == main_pid)
    return first_exec - start, own_exit - last_exit


def _env(extra: dict[str, str]) -> dict[str, str]:
    import os

    return {**os.environ, **extra}


if __name__ == "__main__":
    sys.exit(main())
