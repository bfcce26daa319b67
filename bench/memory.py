"""Peak RSS of the ``backupctl run`` process for dumps of 100 MiB and 1 GiB.

    .venv/bin/python bench/memory.py                        # 1, 100, 1024 MiB; plain and GPG
    .venv/bin/python bench/memory.py --sizes 100,1024 --no-gpg

For each size a SQLite database of random blobs (incompressible, so the
``.sqlite.gz`` dump is as big as the database) is backed up by ``backupctl run``
with the SQLite dumper to a local restic repository, without and with GPG
encryption (the built-in plugin, a throwaway ed25519/cv25519 key made like
bench/gpg_memory.py does, ``GPG_KEYS_DIR`` + ``encryption.recipient``).

The SQLite dumper does its work inside the backupctl process (online backup
API copy, gzip through Python's zlib, gunzip + ``PRAGMA integrity_check`` to
verify), so this is the dumper where the Python process could grow with the
dump. The run goes through bench/_patched_cli.py (the console script's entry
point, in-process), which writes ``getrusage(RUSAGE_SELF).ru_maxrss`` at exit:
the peak RSS of the backupctl process alone, not of restic or gpg.
Targets: <= 64 MiB, and the 1 GiB run <= 1.1x the 100 MiB run.

Needs about 4x the largest size free under --dir (database, dump, restic
repository, .gpg).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    MIB,
    PATCHED_CLI,
    PYTHON,
    RESTIC_VERSION,
    Workspace,
    human,
    machine_line,
    print_table,
)
from gpg_memory import RECIPIENT, make_keys

BLOB = 8000  # bytes per row


def make_database(path: Path, size_mib: int) -> None:
    rows = max(1, size_mib * MIB // BLOB)
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO blobs (data) SELECT randomblob(?) FROM n",
            (rows, BLOB),
        )
        db.commit()
    finally:
        db.close()


def backupctl_run(ws: Workspace, project: str, stats: Path) -> tuple[float, dict]:
    prefix = [PYTHON, PATCHED_CLI, "--stats", str(stats), "--"]
    started = time.perf_counter()
    ws.backupctl("run", project, prefix=prefix)
    return time.perf_counter() - started, json.loads(stats.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1024", help="MiB, comma separated")
    parser.add_argument("--no-gpg", dest="gpg", action="store_false")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the files")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    gpg_version = ("gpg", "--version")
    print(machine_line(RESTIC_VERSION, gpg_version), flush=True)
    root = Path(tempfile.mkdtemp(prefix="bench-memory-", dir=args.dir))
    owner = None
    try:
        owner, keys = make_keys(root) if args.gpg else (None, None)
        ws = Workspace(root / "ws", **({"GPG_KEYS_DIR": str(keys)} if keys else {}))
        ws.write_config([])
        cases = [(size, gpg) for gpg in ([False, True] if args.gpg else [False])
                 for size in sizes]  # fmt: skip
        projects = []
        for size, gpg in cases:
            project = {
                "name": f"m{size}{'-gpg' if gpg else ''}",
                "database": {"type": "sqlite", "name": str(root / f"db{size}.sqlite")},
                "restic": {"repository_path": str(root / "repos" / f"m{size}{gpg}")},
            }
            if gpg:
                project["encryption"] = {"enabled": True, "type": "gpg", "recipient": RECIPIENT}
            projects.append(project)
        ws.write_config(projects)
        ws.backupctl("db", "migrate")

        results = []
        for size in sizes:
            db_path = root / f"db{size}.sqlite"
            make_database(db_path, size)
            for gpg in [False, True] if args.gpg else [False]:
                name = f"m{size}{'-gpg' if gpg else ''}"
                seconds, stats = backupctl_run(ws, name, root / "stats.json")
                folder = ws.base_dir / name
                dumps = sorted(folder.glob(f"{name}_backup_*"))
                dump_size = max((p.stat().st_size for p in dumps), default=0)
                results.append((size, gpg, dump_size, seconds, stats))
                print(f"# {name}: {seconds:.1f} s, peak RSS"
                      f" {stats['rss_peak_kib'] / 1024:.1f} MiB", flush=True)  # fmt: skip
                shutil.rmtree(folder, ignore_errors=True)  # dumps
                shutil.rmtree(root / "repos", ignore_errors=True)
            db_path.unlink()

        print("\n# backupctl run, SQLite dumper, local restic repository; peak RSS of the"
              " backupctl process (getrusage RUSAGE_SELF ru_maxrss)")  # fmt: skip
        base = {gpg: stats["rss_peak_kib"] for size, gpg, _, _, stats in results if size == 100}
        rows = []
        for size, gpg, dump_size, seconds, stats in results:
            peak = stats["rss_peak_kib"]
            ratio = f"{peak / base[gpg]:.2f}" if gpg in base else "-"
            verdict = "pass" if peak <= 64 * 1024 else "FAIL"
            if size == 1024 and gpg in base:
                verdict += ", pass" if peak <= 1.1 * base[gpg] else ", FAIL"
            rows.append([
                f"{size} MiB", "gpg" if gpg else "-", human(dump_size),
                f"{seconds:.1f}", f"{peak / 1024:.1f} MiB", ratio, verdict,
            ])  # fmt: skip
        print_table(["database", "encryption", "dump", "seconds", "peak RSS",
                     "vs 100 MiB", "<= 64 MiB, <= 1.1x"], rows, "llrrrrl")  # fmt: skip
    finally:
        for home in (owner, root / "ws" / "backups" / ".gnupg"):
            if home is not None and Path(home).exists():
                subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                               check=False, capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
