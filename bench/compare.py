"""backupctl against the raw tool chains and borgmatic, the nearest peer, on the
same database, in steady state, alternating.

    .venv/bin/python bench/compare.py                    # scale 20, 10 seed rounds, 6 runs
    .venv/bin/python bench/compare.py --runs 3 --seed 3 --scale 5

A pgbench database (``pgbench -i -s SCALE``) on the machine's PostgreSQL, changed
before every round (``pgbench -n -t CHANGES``, not timed), backed up by five
variants, each to its own repository on local sshd servers (restic over SFTP;
borg over ``borg serve``, as a storage box offers both), all keeping the last 10
archives (``keep_last: 10``; borgmatic ``keep_secondly: 10``, the same thing
for runs seconds apart):

  backupctl restic   ``backupctl run``, restic over SFTP (defaults: prune weekly)
  raw restic         bash: pg_dump -Fc, pg_restore --list, restic backup, restic
                     forget --prune (bench/overhead.py's script)
  backupctl borg     ``backupctl run`` with ``storage: {type: borg}``
  raw borg           bash: pg_dump -Fc, pg_restore --list, borg create, borg
                     prune, borg compact
  borgmatic          ``borgmatic`` (its default actions: create, prune, compact,
                     check at most monthly) with ``postgresql_databases``
                     (pg_dump -Fc streamed into borg)

borgmatic runs from its own virtualenv (``.venv-borgmatic``, created on first use
with ``pip install borgmatic``). ``--seed`` unmeasured rounds fill the repositories
first (and run borgmatic's monthly check and backupctl's weekly prune).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    PG_DUMP_VERSION,
    REPO,
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
BORGMATIC_VENV = REPO / ".venv-borgmatic"
PASSPHRASE = "bench-borg-passphrase"

RAW_BORG = r"""#!/bin/bash
# pg_dump, its check, then borg by hand. Environment: PG*, BORG_REPO,
# BORG_PASSPHRASE, BORG_RSH, DUMP_DIR.
set -euo pipefail
dump="$DUMP_DIR/raw_backup_$(date +%Y%m%d_%H%M%S_%N).dump"
pg_dump --format=custom --file="$dump" --no-password
pg_restore --list "$dump" > /dev/null
borg create "::raw-{now:%Y-%m-%dT%H:%M:%S.%f}" "$dump"
borg prune --glob-archives 'raw-*' --keep-last 10
borg compact
"""


def borgmatic() -> str:
    program = BORGMATIC_VENV / "bin" / "borgmatic"
    if not program.exists():
        print("# installing borgmatic into .venv-borgmatic", flush=True)
        run([sys.executable, "-m", "venv", BORGMATIC_VENV])
        run([BORGMATIC_VENV / "bin" / "pip", "install", "--quiet", "borgmatic"])
    return str(program)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=KEEP_LAST, help="unmeasured rounds first")
    parser.add_argument("--scale", type=int, default=20, help="pgbench scale (~15 MB each)")
    parser.add_argument("--changes", type=int, default=2000, help="pgbench transactions a round")
    args = parser.parse_args()
    need("pg_dump", "pg_restore", "psql", "restic", "borg", "ssh", PGBENCH)
    bm = borgmatic()
    bm_version = run([bm, "--version"]).stdout.strip()
    print(machine_line(PG_DUMP_VERSION, RESTIC_VERSION, ("borg", "--version"))
          + f"; borgmatic {bm_version}", flush=True)  # fmt: skip
    from backupctl_core.testing.sftp import start_sftp_server

    root = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    db = Database("machine")
    servers = []
    try:
        size = db.create(args.scale)
        print(f"# pgbench -i -s {args.scale}: database {human(size)}; keep the last {KEEP_LAST};"
              f" pgbench -n -t {args.changes} before every round", flush=True)  # fmt: skip
        sftp = start_sftp_server()
        servers.append(sftp)
        borg_server = start_sftp_server(borg=True)
        servers.append(borg_server)
        database = {"type": "postgres", "host": db.host, "port": db.port, "name": DB,
                    "user": db.user}  # fmt: skip
        retention = {"local_days": 1, "keep_last": KEEP_LAST, "keep_daily": 0,
                     "keep_weekly": 0, "keep_monthly": 0}  # fmt: skip

        def workspace(name: str, server: object, storage: dict[str, object]) -> Workspace:
            ws = Workspace(
                root / name, HETZNER_SSH_HOST=server.host, HETZNER_SSH_USER=server.user,  # type: ignore[attr-defined]
                HETZNER_SSH_PORT=str(server.port), HETZNER_SSH_KEY_PATH=str(server.key_path),  # type: ignore[attr-defined]
                RESTIC_PASSWORD=PASSPHRASE,
            )  # fmt: skip
            ws.write_config([{"name": name, "database": database, "retention": retention,
                              **storage}])  # fmt: skip
            ws.backupctl("db", "migrate")
            return ws

        ws_restic = workspace("restic", sftp, {
            "restic": {"repository_path": sftp.new_repo_path("backupctl")}})  # fmt: skip
        borg_repo = borg_server.new_repo_path("backupctl-borg")
        ws_borg = workspace("borg", borg_server, {
            "storage": {"type": "borg", "config": {"repository_path": borg_repo}}})  # fmt: skip

        raw_dir = root / "raw"  # the raw restic chain, as in overhead.py
        script, raw_env = raw_chain(ws_restic, "restic", db, sftp, raw_dir,
                                    f"--keep-last {KEEP_LAST}")  # fmt: skip

        # raw borg and borgmatic: the same server, key and known_hosts
        known = borg_server.key_path.parent / "known_hosts"
        rsh = (f"ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -i {borg_server.key_path}"
               f" -o IdentitiesOnly=yes -o UserKnownHostsFile={known}")  # fmt: skip
        login = f"ssh://{borg_server.user}@{borg_server.host}:{borg_server.port}"
        borg_dir = root / "raw-borg"
        borg_dir.mkdir()
        (borg_dir / "raw.sh").write_text(RAW_BORG)
        borg_env = dict(
            db.env(), BORG_REPO=login + borg_server.new_repo_path("raw-borg"),
            BORG_PASSPHRASE=PASSPHRASE, BORG_RSH=rsh, DUMP_DIR=str(borg_dir),
            BORG_BASE_DIR=str(borg_dir / "home"),
        )  # fmt: skip
        run(["borg", "init", "--encryption=repokey"], env=borg_env)
        bm_dir = root / "borgmatic"
        bm_dir.mkdir()
        bm_config = bm_dir / "config.yaml"
        bm_config.write_text(
            f"repositories:\n  - path: {login}{borg_server.new_repo_path('borgmatic')}\n"
            f"encryption_passphrase: {PASSPHRASE}\nssh_command: {rsh}\n"
            f"keep_secondly: {KEEP_LAST}\n"
            f"postgresql_databases:\n  - name: {DB}\n    hostname: {db.host}\n"
            f"    port: {db.port}\n    username: {db.user}\n    format: custom\n"
        )
        bm_env = {**db.env(), "BORG_BASE_DIR": str(bm_dir / "home"), "HOME": str(bm_dir / "home")}
        run([bm, "--config", bm_config, "repo-create", "--encryption", "repokey"], env=bm_env)

        variants = ["backupctl restic", "raw restic", "backupctl borg", "raw borg", "borgmatic"]
        totals: dict[str, list[float]] = {v: [] for v in variants}
        started = time.perf_counter()
        for round_no in range(args.seed + args.runs):
            run([PGBENCH, "-n", "-t", str(args.changes)], env=db.env())
            order = variants if round_no % 2 else variants[::-1]
            for variant in order:
                if variant == "backupctl restic":
                    seconds = timed(ws_restic.backupctl_argv("run", "restic"))
                    clear_dumps(ws_restic.base_dir / "restic")
                elif variant == "backupctl borg":
                    seconds = timed(ws_borg.backupctl_argv("run", "borg"))
                    clear_dumps(ws_borg.base_dir / "borg")
                elif variant == "raw restic":
                    seconds, _ = raw_run(script, raw_env, "0", raw_dir / "times")
                    clear_dumps(raw_dir)
                elif variant == "raw borg":
                    seconds = timed(["bash", borg_dir / "raw.sh"], env=borg_env)
                    clear_dumps(borg_dir)
                else:
                    seconds = timed([bm, "--config", bm_config], env=bm_env)
                if round_no >= args.seed:
                    totals[variant].append(seconds)
            if round_no + 1 == args.seed:
                print(f"# {args.seed} seed rounds done in {time.perf_counter() - started:.0f} s",
                      flush=True)  # fmt: skip
            elif round_no >= args.seed:
                print(f"# run {round_no - args.seed + 1}/{args.runs}: " + ", ".join(
                    f"{v} {totals[v][-1]:.2f} s" for v in variants), flush=True)  # fmt: skip
        sizes = {
            "backupctl restic": dir_size(sftp.repos_dir / "backupctl"),
            "raw restic": dir_size(sftp.repos_dir / "raw"),
            "backupctl borg": dir_size(borg_server.repos_dir / "backupctl-borg"),
            "raw borg": dir_size(borg_server.repos_dir / "raw-borg"),
            "borgmatic": dir_size(borg_server.repos_dir / "borgmatic"),
        }
        report(args, totals, sizes)
    finally:
        for server in servers:
            server.close()
        db.drop()
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["pkill", "-f", str(root)], check=False)  # a stray ssh master, if any


def report(args: argparse.Namespace, totals: dict[str, list[float]], sizes: dict[str, int]) -> None:
    m = {v: median(t) for v, t in totals.items()}
    print(f"\n# {args.runs} runs per variant after {args.seed} seed rounds, alternating;"
          " seconds; repository size at the end")  # fmt: skip
    print_table(
        ["variant", "median", "min-max", "/ raw restic", "/ raw borg", "repository"],
        [[v, f"{m[v]:.2f}", spread(totals[v]), f"{m[v] / m['raw restic']:.2f}",
          f"{m[v] / m['raw borg']:.2f}", human(sizes[v])] for v in totals],
    )  # fmt: skip
    print(f"backupctl / its raw chain: restic {m['backupctl restic'] / m['raw restic']:.2f},"
          f" borg {m['backupctl borg'] / m['raw borg']:.2f};"
          f" borgmatic / raw borg {m['borgmatic'] / m['raw borg']:.2f};"
          f" borgmatic / backupctl borg {m['borgmatic'] / m['backupctl borg']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
