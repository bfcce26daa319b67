"""Overhead of ``backupctl run`` against the same steps in a plain shell script.

    .venv/bin/python bench/overhead.py                     # scale 35 (~530 MB), 5 runs
    .venv/bin/python bench/overhead.py --runs 3 --scale 10

A pgbench database (``pgbench -i -s SCALE``, ~15 MB per scale unit) on the
machine's PostgreSQL (127.0.0.1:5432, trust auth; ``--pg cluster`` for a
throwaway password-protected cluster from backupctl_core/testing/pgcluster.py) is backed
up to restic repositories on a local sshd/SFTP server (backupctl_core/testing/sftp.py),
one repository per variant. Variants, in alternating order, ``--runs`` each
after one unmeasured warm-up round (which also creates the repositories):

  backupctl  ``backupctl run bench``: lock, audit rows (SQLite), pg_dump -Fc,
             verify (pg_restore --list, then ``pg_restore --use-list=<the last
             data entry> --file=/dev/null``: restores only the last data block,
             which ends the file, so a truncated dump fails), restic backup,
             restic forget --prune, local cleanup
  raw        bash: pg_dump -Fc, pg_restore --list, restic backup,
             restic forget --prune (the issue's four steps)
  raw+full   raw plus ``pg_restore --file=/dev/null``: the full read of the
             dump that backupctl's verify used to do, i.e. what the old verify
             cost on top of raw
  raw+full|| raw+full with the full read running alongside restic backup
             (``pg_restore --file=/dev/null & restic backup; wait``): what
             overlapping a full-read verify and sync on 2 cores would save

restic gets the same arguments in both (``backup --json --tag ...``,
``forget --json --quiet --prune --group-by tags --tag ... --keep-daily 7
--keep-weekly 4 --keep-monthly 6``, the same ssh command). The shell script
times each of its steps. backupctl runs through bench/_patched_cli.py, which
runs the console script's entry point in-process and times every child
process and the process's own CPU, splitting backupctl's time into tools and
Python; its last-data-block restore shows as the step "pg_restore (last data
block)". Target: backupctl / raw <= 1.03 (median of the runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    PATCHED_CLI,
    PG_DUMP_VERSION,
    PYTHON,
    RESTIC_VERSION,
    Workspace,
    human,
    machine_line,
    median,
    need,
    print_table,
    run,
    spread,
)

DB = "backupctl_bench_pgbench"
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
PROJECT = "bench"
# backupctl's child processes under the names of the shell script's steps.
CHILD_NAMES = {
    "pg_dump --format": "pg_dump",
    "restic forget": "restic forget --prune",
    # verify, step 2: pg_restore --use-list=<tmp>.list --file=/dev/null DUMP
    "pg_restore --use-list": "pg_restore (last data block)",
}
RETENTION = ["--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "6"]

RAW_SCRIPT = r"""#!/bin/bash
# The same steps as backupctl, by hand. Environment: PG* (connection), RESTIC_*
# (repository, password, cache), SFTP_COMMAND, DUMP_DIR, FULL_VERIFY, TIMES_FILE,
# RETENTION (forget's keep options).
set -euo pipefail
now() { date +%s.%N; }
step() {  # step NAME COMMAND...: run it, append "NAME start end" to TIMES_FILE
    local name=$1; shift
    local t0; t0=$(now)
    "$@"
    echo "$name $t0 $(now)" >> "$TIMES_FILE"
}
dump="$DUMP_DIR/raw_backup_$(date +%Y%m%d_%H%M%S_%N).dump"
restic_() { restic -o "sftp.command=$SFTP_COMMAND" "$@"; }
step pg_dump pg_dump --format=custom --file="$dump" --no-password
step "pg_restore --list" pg_restore --list "$dump" > /dev/null
if [ "$FULL_VERIFY" = 1 ]; then
    step "pg_restore --file=/dev/null" pg_restore --file=/dev/null "$dump"
fi
if [ "$FULL_VERIFY" = parallel ]; then  # the full read alongside restic backup
    pg_restore --file=/dev/null "$dump" &
    verify=$!
fi
step "restic backup" restic_ backup --json --tag project:raw --tag backupctl:combined \
    -- "$dump" > /dev/null
if [ "$FULL_VERIFY" = parallel ]; then
    step "wait for pg_restore --file=/dev/null" wait "$verify"
fi
step "restic forget --prune" restic_ forget --json --quiet --prune --group-by tags \
    --tag project:raw ${RETENTION:---keep-daily 7 --keep-weekly 4 --keep-monthly 6} > /dev/null
"""


class Database:
    """The pgbench database: on the machine's server or a throwaway cluster."""

    def __init__(self, kind: str) -> None:
        self.cluster = None
        if kind == "cluster":
            from backupctl_core.testing.pgcluster import PgCluster

            self.cluster = PgCluster().start()
            self.host, self.port = self.cluster.host, self.cluster.port
            self.user, self.password = self.cluster.superuser, self.cluster.superuser_password
        else:
            self.host, self.port, self.user, self.password = "127.0.0.1", 5432, "postgres", None

    def env(self) -> dict[str, str]:
        env = dict(os.environ, PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user,
                   PGDATABASE=DB)  # fmt: skip
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        env = dict(self.env(), PGDATABASE=dbname)
        return run(["psql", "-X", "-Atq", "-c", sql], env=env).stdout.strip()

    def create(self, scale: int) -> int:
        self.psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        self.psql(f"CREATE DATABASE {DB}")
        run([PGBENCH, "-i", "-q", "-s", str(scale)], env=self.env())
        return int(self.psql(f"SELECT pg_database_size('{DB}')"))

    def drop(self) -> None:
        try:
            self.psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        finally:
            if self.cluster is not None:
                self.cluster.stop()


def raw_chain(
    ws: Workspace, project: str, db: Database, sftp: Any, folder: Path, retention: str = ""
) -> tuple[Path, dict[str, str]]:
    """RAW_SCRIPT in ``folder`` and its environment, with a new repository of its own
    on ``sftp``, reached exactly the way backupctl reaches ``project``'s; ``retention``
    overrides forget's keep options."""
    restic_env, restic_argv = ws.restic_env(project)
    sftp_command = restic_argv[restic_argv.index("-o") + 1].removeprefix("sftp.command=")
    folder.mkdir()
    script = folder / "raw_backup.sh"
    script.write_text(RAW_SCRIPT)
    env = dict(
        restic_env, **db.env(), SFTP_COMMAND=sftp_command, DUMP_DIR=str(folder),
        RESTIC_REPOSITORY=f"sftp:{sftp.user}@{sftp.host}:{sftp.new_repo_path(folder.name)}",
        RESTIC_CACHE_DIR=str(folder / "cache"),
        **({"RETENTION": retention} if retention else {}),
    )  # fmt: skip
    run(["restic", "-o", f"sftp.command={sftp_command}", "init"], env=env)
    return script, env


def backupctl_run(ws: Workspace, stats_file: Path) -> tuple[float, dict]:
    """``backupctl run`` through bench/_patched_cli.py: wall seconds and its stats."""
    prefix = [PYTHON, PATCHED_CLI, "--stats", str(stats_file), "--"]
    started = time.perf_counter()
    ws.backupctl("run", PROJECT, prefix=prefix)
    return time.perf_counter() - started, json.loads(stats_file.read_text())


def child_name(program: str, label: str) -> str:
    """A backupctl child process's row in the step table."""
    name = f"{program} {label}".strip()
    return CHILD_NAMES.get(name, name)


def raw_run(script: Path, env: dict[str, str], full: str, times_file: Path) -> tuple[float, dict]:
    times_file.write_text("")
    started = time.perf_counter()
    run(["bash", str(script)], env=dict(env, FULL_VERIFY=full, TIMES_FILE=str(times_file)))
    total = time.perf_counter() - started
    steps = {}
    for line in times_file.read_text().splitlines():
        name, t0, t1 = line.rsplit(" ", 2)
        steps[name] = float(t1) - float(t0)
    return total, steps


def clear_dumps(folder: Path) -> None:
    for path in folder.glob("*.dump"):
        path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scale", type=int, default=35, help="pgbench scale (~15 MB each)")
    parser.add_argument("--pg", choices=("machine", "cluster"), default="machine")
    args = parser.parse_args()
    need("pg_dump", "pg_restore", "psql", "restic", "ssh", PGBENCH)

    print(machine_line(PG_DUMP_VERSION, RESTIC_VERSION), flush=True)
    from backupctl_core.testing.sftp import start_sftp_server

    root = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    db = Database(args.pg)
    sftp = None
    try:
        started = time.perf_counter()
        size = db.create(args.scale)
        print(f"# pgbench -i -s {args.scale}: database {human(size)}"
              f" (created in {time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
        sftp = start_sftp_server()  # its own temp dir: the SFTP user must reach it

        ws = Workspace(
            root / "ws", HETZNER_SSH_HOST=sftp.host, HETZNER_SSH_USER=sftp.user,
            HETZNER_SSH_PORT=str(sftp.port), HETZNER_SSH_KEY_PATH=str(sftp.key_path),
            **({"DB_PASSWORD": db.password} if db.password else {}),
        )  # fmt: skip
        database = {"type": "postgres", "host": db.host, "port": db.port, "name": DB,
                    "user": db.user}  # fmt: skip
        if db.password:
            database["password"] = "${DB_PASSWORD}"
        ws.write_config([{
            "name": PROJECT, "database": database,
            "restic": {"repository_path": sftp.new_repo_path("backupctl")},
            "retention": {"local_days": 7, "keep_daily": 7, "keep_weekly": 4,
                          "keep_monthly": 6},
        }])  # fmt: skip
        ws.backupctl("db", "migrate")

        raw_dir = root / "raw"
        script, raw_env = raw_chain(ws, PROJECT, db, sftp, raw_dir)
        times_file = raw_dir / "times"
        dump_dir = ws.base_dir / PROJECT

        variants = ["backupctl", "raw", "raw+full", "raw+full||"]
        totals: dict[str, list[float]] = defaultdict(list)
        steps: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        stats_file = root / "stats.json"
        for round_no in range(args.runs + 1):  # round 0: warm-up, not counted
            order = variants if round_no % 2 else variants[::-1]
            for variant in order:
                if variant == "backupctl":
                    seconds, stats = backupctl_run(ws, stats_file)
                    dump_size = sum(p.stat().st_size for p in dump_dir.glob("*.dump"))
                    clear_dumps(dump_dir)
                    step_times = {"backupctl process CPU": stats["cpu_self"]}
                    for program, label, child_seconds in stats["children"]:
                        name = child_name(program, label)
                        step_times[name] = step_times.get(name, 0.0) + child_seconds
                    step_times["all children"] = sum(c[2] for c in stats["children"])
                    step_times["wall - children"] = seconds - step_times["all children"]
                else:
                    full = {"raw": "0", "raw+full": "1", "raw+full||": "parallel"}[variant]
                    seconds, step_times = raw_run(script, raw_env, full, times_file)
                    clear_dumps(raw_dir)
                if round_no:
                    totals[variant].append(seconds)
                    for name, value in step_times.items():
                        steps[variant][name].append(value)
            if round_no == 0:
                print("# warm-up round done (not counted)", flush=True)
                continue
            print(f"# run {round_no}/{args.runs}: " + ", ".join(
                f"{v} {totals[v][-1]:.2f} s" for v in variants
            ), flush=True)  # fmt: skip
        report(args, totals, steps, dump_size)
    finally:
        if sftp is not None:
            sftp.close()
        db.drop()
        shutil.rmtree(root, ignore_errors=True)


def report(args: argparse.Namespace, totals: dict[str, list[float]],
           steps: dict[str, dict[str, list[float]]], dump_size: int) -> None:  # fmt: skip
    m = {v: median(t) for v, t in totals.items()}
    print(f"\n# dump (pg_dump -Fc) {human(dump_size)}; SFTP repository on 127.0.0.1;"
          f" {args.runs} runs per variant, alternating; seconds")  # fmt: skip
    print_table(
        ["variant", "median", "min-max", "backupctl / this"],
        [[v, f"{m[v]:.2f}", spread(totals[v]), f"{m['backupctl'] / m[v]:.3f}"]
         for v in totals],
    )  # fmt: skip
    paired = {v: median([b / t for b, t in zip(totals["backupctl"], totals[v], strict=True)])
              for v in totals}  # fmt: skip
    print("median of the per-round ratios backupctl / variant: " + ", ".join(
        f"{v} {paired[v]:.3f}" for v in totals if v != "backupctl"))  # fmt: skip
    ratio = m["backupctl"] / m["raw"]
    verdict = "pass" if ratio <= 1.03 else "FAIL"
    print(f"backupctl / raw = {ratio:.3f} (target <= 1.03: {verdict});"
          f" backupctl / raw+full = {m['backupctl'] / m['raw+full']:.3f}"
          " (against the old full-read verify)")  # fmt: skip
    full = steps["raw+full"].get("pg_restore --file=/dev/null", [])
    if full:
        print(f"pg_restore --file=/dev/null (the old verify's full read) alone:"
              f" {median(full):.2f} s median = {median(full) / m['raw']:.1%}"
              " of the raw run")  # fmt: skip
    block = steps["backupctl"].get("pg_restore (last data block)", [])
    if block:
        print(f"pg_restore (last data block) in backupctl's verify: {median(block):.2f} s"
              f" median = {median(block) / m['raw']:.1%} of the raw run")  # fmt: skip

    print("\n# where the time goes (median seconds per run; backupctl: its child processes"
          " from Popen to reaping, and its own CPU)")  # fmt: skip
    names: list[str] = []
    for variant in totals:
        names += [n for n in steps[variant] if n not in names]
    names.sort(key=lambda n: (n in ("all children", "wall - children",
                                    "backupctl process CPU"), n))  # fmt: skip
    rows = [[name] + [f"{median(steps[v][name]):.2f}" if steps[v].get(name) else "-"
                      for v in totals] for name in names]  # fmt: skip
    rows.append(["wall"] + [f"{m[v]:.2f}" for v in totals])
    print_table(["step", *totals], rows)


if __name__ == "__main__":
    main()
