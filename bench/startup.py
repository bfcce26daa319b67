"""Start-up time of the CLI: ``--help``, ``plugins``, ``status`` over 100,000 audit rows.

    .venv/bin/python bench/startup.py                      # SQLite and PostgreSQL
    .venv/bin/python bench/startup.py --rows 100000 --runs 30 --pg none

A workspace with ``--projects`` projects (files-only, nothing is backed up) is
migrated with ``backupctl db migrate``; ``--rows`` audit rows spread over the
projects are bulk-inserted through peewee (``BackupLog.insert_many``). Then
hyperfine (if installed; else repeated timing here) measures each command.
Targets: ``--help`` <= 0.25 s, ``status`` <= 0.3 s. A control row imports only
DESIGN.md's libraries (click, attrs, cattrs, ruamel.yaml, pluggy, peewee, ...):
what any command pays before backupctl's own code.

The PostgreSQL audit store is the machine's server on 127.0.0.1:5432 (trust
auth, user postgres; database ``backupctl_bench_audit`` is recreated), or with
``--pg cluster`` a throwaway password-protected cluster (backupctl_core/testing/pgcluster).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    BACKUPCTL,
    PATCHED_CLI,
    PYTHON,
    Workspace,
    machine_line,
    median,
    print_table,
)

# DESIGN.md's stack as a run imports it (psycopg hidden, as audit/__init__.py does):
# the floor under any backupctl command before a line of its own runs.
STACK_IMPORTS = (
    "import sys; sys.modules['psycopg'] = None\n"
    "import click, attrs, cattrs, ruamel.yaml, pluggy, peewee, importlib.metadata,"
    " portalocker, dotenv, logging.handlers"
)
MACHINE_PG = {"AUDIT_DB_HOST": "127.0.0.1", "AUDIT_DB_PORT": "5432", "AUDIT_DB_USER": "postgres"}
PG_DB = "backupctl_bench_audit"


def fill(ws: Workspace, rows: int, projects: list[str]) -> float:
    """Bulk-insert ``rows`` finished runs; seconds taken."""
    from backupctl_core.audit.models import BackupLog
    from backupctl_core.audit.store import AuditStore

    store = AuditStore.open(ws.load().settings.audit_db)
    rng = random.Random(7)
    start = datetime(2024, 1, 1)
    started = time.perf_counter()
    batch: list[dict[str, object]] = []
    store.database.connect(reuse_if_open=True)

    def flush() -> None:
        with store.database.atomic():
            BackupLog.insert_many(batch).execute()
        batch.clear()

    for i in range(rows):
        begin = start + timedelta(minutes=i)
        ok = rng.random() > 0.05
        batch.append({
            "id": uuid.UUID(int=rng.getrandbits(128)),
            "project_name": projects[i % len(projects)],
            "status": "success" if ok else "failed",
            "current_stage": "notify_result",
            "started_at": begin,
            "completed_at": begin + timedelta(seconds=90),
            "dump_size_bytes": rng.randrange(1, 10**9),
            "encrypted": False, "verified": True,
            "snapshot_id": f"{rng.getrandbits(32):08x}", "snapshot_mode": "combined",
            "files_new": 1, "files_changed": 0, "bytes_added": rng.randrange(1, 10**8),
            "prune_snapshots_removed": 1, "local_files_cleaned": 1,
            "error_stage": None if ok else "sync",
            "error_message": None if ok else "restic backup failed: exit code 1",
            "retry_count": 0, "duration_ms": 90_000, "created_at": begin,
            "dump_file": f"/data/backups/{projects[i % len(projects)]}/x_{i}.dump",
        })  # fmt: skip
        if len(batch) == 1000:
            flush()
    if batch:
        flush()
    store.close()
    return time.perf_counter() - started


def make_workspace(root: Path, projects: list[str], rows: int, **env: str) -> Workspace:
    ws = Workspace(root, **env)
    (root / "files").mkdir(exist_ok=True)
    ws.write_config([
        {"name": name, "assets": {"paths": [str(root / "files")]},
         "restic": {"repository_path": str(root / "repo")}}
        for name in projects
    ])  # fmt: skip
    ws.backupctl("db", "migrate")
    seconds = fill(ws, rows, projects)
    print(f"# {rows} audit rows inserted in {seconds:.1f} s ({root.name})", flush=True)
    return ws


def machine_pg(create: bool) -> bool:
    """(Re)create the bench database on the machine's server; False if unreachable."""
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres",
                             autocommit=True, connect_timeout=5) as conn:  # fmt: skip
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
            if create:
                conn.execute(f"CREATE DATABASE {PG_DB}")
    except Exception as error:
        print(f"# machine PostgreSQL not usable: {error}", file=sys.stderr)
        return False
    return True


def hyperfine(
    commands: dict[str, list[str]], runs: int, rounds: int, export: Path
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """``runs`` per command in ``rounds`` hyperfine calls, so that a slow spell of
    the machine hits every command rather than whichever ran then."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    per_round = max(1, runs // rounds)
    for _ in range(rounds):
        argv = ["hyperfine", "--style", "none", "--warmup", "3", "--runs", str(per_round),
                "-N", "--export-json", str(export)]  # fmt: skip
        for name, command in commands.items():
            argv += ["--command-name", name, subprocess.list2cmdline(command)]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        for result in json.loads(export.read_text())["results"]:
            times[result["command"]] += result["times"]
            cpu[result["command"]].append(result["user"] + result["system"])
    return times, {name: sum(v) / len(v) for name, v in cpu.items()}


def repeat(commands: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """Fallback without hyperfine: interleaved runs after 3 warm-ups each."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():
        for _ in range(3):
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    for _ in range(runs):
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--runs", type=int, default=30, help="per command, over all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="hyperfine calls over all commands")
    parser.add_argument("--pg", choices=("machine", "cluster", "none"), default="machine")
    args = parser.parse_args()

    use_hyperfine = shutil.which("hyperfine") is not None
    print(machine_line(("hyperfine", "--version")), flush=True)
    root = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    projects = [f"proj{i:02d}" for i in range(args.projects)]
    cluster = None
    try:
        sqlite_ws = make_workspace(root / "sqlite", projects, args.rows)
        pg_ws = None
        if args.pg == "machine" and machine_pg(create=True):
            pg_ws = make_workspace(root / "pg", projects, args.rows,
                                   AUDIT_DB_NAME=PG_DB, **MACHINE_PG)  # fmt: skip
        elif args.pg != "none":
            from backupctl_core.testing.pgcluster import PgCluster

            cluster = PgCluster().start()
            cluster.create_database(PG_DB)
            pg_ws = make_workspace(
                root / "pg", projects, args.rows, AUDIT_DB_HOST=cluster.host,
                AUDIT_DB_PORT=str(cluster.port), AUDIT_DB_USER=cluster.superuser,
                AUDIT_DB_PASSWORD=cluster.superuser_password, AUDIT_DB_NAME=PG_DB,
            )  # fmt: skip

        sq, pg = sqlite_ws.args(), (pg_ws.args() if pg_ws is not None else None)
        no_pyc = ["env", "-u", "PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE=1"]
        commands: dict[str, list[str]] = {
            "python -c pass (interpreter only)": [PYTHON, "-c", "pass"],
            "  python importing the stack (control)": [PYTHON, "-c", STACK_IMPORTS],
            "backupctl --help": [BACKUPCTL, *sq, "--help"],
            "backupctl --help, no .pyc (see README)": [*no_pyc, BACKUPCTL, *sq, "--help"],
            "backupctl plugins": [BACKUPCTL, *sq, "plugins"],
            "backupctl status (SQLite)": [BACKUPCTL, *sq, "status"],
            "backupctl status proj00 (SQLite)": [BACKUPCTL, *sq, "status", "proj00"],
        }
        if pg is not None:
            commands["backupctl status (PostgreSQL)"] = [BACKUPCTL, *pg, "status"]
            commands["backupctl status proj00 (PostgreSQL)"] = [BACKUPCTL, *pg, "status", "proj00"]
        # Control: the other bench scripts run backupctl through bench/_patched_cli.py;
        # this row shows that it starts like the console script.
        commands["  shim (control): status (SQLite)"] = [PYTHON, PATCHED_CLI, "--", *sq, "status"]
        for command in commands.values():  # each must work before it is timed
            subprocess.run(command, check=True, capture_output=True)
        if use_hyperfine:
            times, cpu = hyperfine(commands, args.runs, args.rounds, root / "hyperfine.json")
        else:
            times, cpu = repeat(commands, args.runs), {}
        print(f"# {args.rows} audit rows over {args.projects} projects;"
              f" {'hyperfine -N' if use_hyperfine else 'repeated timing'}, {args.runs} runs"
              f" each in {args.rounds} rounds after 3 warm-ups; wall seconds (median, min)"
              " and mean CPU seconds (user+sys)")  # fmt: skip
        rows = []
        for name, values in times.items():
            target = 0.25 if name.startswith("backupctl --help") else None
            if "status" in name:
                target = 0.3
            if name.startswith(" ") or "no .pyc" in name:
                verdict = ""
            else:
                verdict = (
                    "-" if target is None else ("pass" if median(values) <= target else "FAIL")
                )
            rows.append([
                name, f"{median(values):.3f}", f"{min(values):.3f}",
                f"{cpu[name]:.3f}" if name in cpu else "-",
                f"<= {target}" if target and verdict else "", verdict,
            ])  # fmt: skip
        print_table(["command", "median", "min", "CPU", "target", ""], rows, "lrrrrl")
    finally:
        if args.pg == "machine":
            machine_pg(create=False)
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
