"""``backupctl run`` against the hand-written chain in steady state: a repository
that already holds its snapshots, a database that changes between runs.

    .venv/bin/python bench/steady.py                  # scale 20, 10 seed rounds, 8 runs
    .venv/bin/python bench/steady.py --runs 4 --seed 10 --scale 5

A pgbench database (``pgbench -i -s SCALE``) on the machine's PostgreSQL is backed
up over SFTP (a local sshd, backupctl_core/testing/sftp.py), one restic
repository per variant, all with the retention ``keep_last: 10`` (``--keep-last
10``): every run forgets the eleventh snapshot, as daily runs with ``keep_daily``
do. Before every round ``pgbench -n -t CHANGES`` changes the database (not timed),
so each dump differs and each forgotten snapshot leaves data for a prune to
reclaim. ``--seed`` unmeasured rounds first fill the repositories. Variants, in
alternating order:

  backupctl          ``backupctl run``: retention.prune_interval 7d (the default):
                     forget every run, prune once a week (in the measured rounds:
                     never; the first seed round pruned)
  backupctl prune 0  ``backupctl run`` with ``prune_interval: 0``: forget and
                     prune every run, as SPEC's four steps
  raw                bash: pg_dump -Fc, pg_restore --list, restic backup, restic
                     forget --prune (bench/overhead.py's script)

Reported: medians, the ratios to raw, and the week of daily runs: six runs
without a prune and one with, (6 x backupctl + backupctl prune 0) / 7 (a prune
after a week reclaims seven days of garbage, one here: an estimate).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
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
    spread,
    timed,
)
from overhead import DB, PGBENCH, Database, clear_dumps, raw_chain, raw_run

KEEP_LAST = 10
VARIANTS = {"backupctl": "7d", "backupctl prune 0": "0"}  # project -> prune_interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=KEEP_LAST, help="unmeasured rounds first")
    parser.add_argument("--scale", type=int, default=20, help="pgbench scale (~15 MB each)")
    parser.add_argument("--changes", type=int, default=2000, help="pgbench transactions a round")
    args = parser.parse_args()
    need("pg_dump", "pg_restore", "psql", "restic", "ssh", PGBENCH)

    print(machine_line(PG_DUMP_VERSION, RESTIC_VERSION), flush=True)
    from backupctl_core.testing.sftp import start_sftp_server

    root = Path(tempfile.mkdtemp(prefix="bench-steady-"))
    db = Database("machine")
    sftp = None
    try:
        size = db.create(args.scale)
        print(f"# pgbench -i -s {args.scale}: database {human(size)}; keep_last {KEEP_LAST};"
              f" pgbench -n -t {args.changes} before every round", flush=True)  # fmt: skip
        sftp = start_sftp_server()
        ws = Workspace(
            root / "ws", HETZNER_SSH_HOST=sftp.host, HETZNER_SSH_USER=sftp.user,
            HETZNER_SSH_PORT=str(sftp.port), HETZNER_SSH_KEY_PATH=str(sftp.key_path),
        )  # fmt: skip
        database = {"type": "postgres", "host": db.host, "port": db.port, "name": DB,
                    "user": db.user}  # fmt: skip
        ws.write_config([
            {"name": slug(name), "database": database,
             "restic": {"repository_path": sftp.new_repo_path(slug(name))},
             "retention": {"local_days": 1, "keep_last": KEEP_LAST, "keep_daily": 0,
                           "keep_weekly": 0, "keep_monthly": 0, "prune_interval": interval}}
            for name, interval in VARIANTS.items()
        ])  # fmt: skip
        ws.backupctl("db", "migrate")

        raw_dir = root / "raw"
        script, raw_env = raw_chain(ws, slug("backupctl"), db, sftp, raw_dir,
                                    f"--keep-last {KEEP_LAST}")  # fmt: skip

        variants = [*VARIANTS, "raw"]
        totals: dict[str, list[float]] = {v: [] for v in variants}
        started = time.perf_counter()
        for round_no in range(args.seed + args.runs):
            run([PGBENCH, "-n", "-t", str(args.changes)], env=db.env())
            order = variants if round_no % 2 else variants[::-1]
            for variant in order:
                if variant == "raw":
                    seconds, _ = raw_run(script, raw_env, "0", raw_dir / "times")
                    clear_dumps(raw_dir)
                else:
                    seconds = timed(ws.backupctl_argv("run", slug(variant)))
                    clear_dumps(ws.base_dir / slug(variant))
                if round_no >= args.seed:
                    totals[variant].append(seconds)
            if round_no + 1 == args.seed:
                print(f"# {args.seed} seed rounds done in {time.perf_counter() - started:.0f} s",
                      flush=True)  # fmt: skip
            elif round_no >= args.seed:
                print(f"# run {round_no - args.seed + 1}/{args.runs}: " + ", ".join(
                    f"{v} {totals[v][-1]:.2f} s" for v in variants), flush=True)  # fmt: skip
        sizes = {v: dir_size(sftp.repos_dir / slug(v)) for v in variants}
        report(args, totals, sizes)
    finally:
        if sftp is not None:
            sftp.close()
        db.drop()
        shutil.rmtree(root, ignore_errors=True)


def slug(variant: str) -> str:
    return variant.replace(" ", "-")


def report(args: argparse.Namespace, totals: dict[str, list[float]], sizes: dict[str, int]) -> None:
    m = {v: median(t) for v, t in totals.items()}
    print(f"\n# {args.runs} runs per variant after {args.seed} seed rounds, alternating;"
          " seconds; repository size at the end")  # fmt: skip
    print_table(
        ["variant", "median", "min-max", "/ raw", "repository"],
        [[v, f"{m[v]:.2f}", spread(totals[v]), f"{m[v] / m['raw']:.3f}", human(sizes[v])]
         for v in totals],
    )  # fmt: skip
    week = (6 * m["backupctl"] + m["backupctl prune 0"]) / 7
    print(f"a week of daily runs, one pruning: {week:.2f} s a run = {week / m['raw']:.3f} of raw"
          f" (target <= 0.80); every run pruning: {m['backupctl prune 0'] / m['raw']:.3f}"
          " (target <= 1.03)")  # fmt: skip


if __name__ == "__main__":
    main()
