"""``backupctl run --all`` over 50 small projects: time per project beyond the tools.

    .venv/bin/python bench/scale.py                        # 50 projects, 2 rounds
    .venv/bin/python bench/scale.py --projects 20 --rounds 1

Each project is a small SQLite database (SQLite dumper) plus an asset folder
of a few files, backed up to a local restic repository of its own. The same
work is done by a bash loop with the tools themselves, per project:

    sqlite3 DB ".backup TMP"; gzip -6 TMP          (the dumper: online backup, gzip)
    gzip -dc DUMP > CHECK; sqlite3 CHECK "PRAGMA integrity_check; ..."   (verify)
    restic backup --json --tag ... -- DUMP ASSETS
    restic forget --json --quiet --prune --group-by tags --tag ... --keep-daily 7 ...

After one unmeasured warm-up of each (which creates the repositories), the two
alternate for ``--rounds`` rounds. The per-project overhead is
(backupctl - raw) / projects. backupctl runs through bench/_patched_cli.py,
which also times its child processes (restic) and the SQLite dumper's
in-process hooks, so its time splits into tools and the rest.
Target: <= 0.05 s per project beyond the tools (issue 17; 0.2 before).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    PATCHED_CLI,
    PYTHON,
    RESTIC_VERSION,
    Workspace,
    machine_line,
    median,
    need,
    print_table,
    run,
    spread,
)

RAW_SCRIPT = r"""#!/bin/bash
# One project's backup with the tools alone. Args: NAME DB ASSETS REPO WORKDIR.
# Environment: RESTIC_PASSWORD, RESTIC_CACHE_DIR.
set -euo pipefail
name=$1 db=$2 assets=$3 repo=$4 work=$5
dump="$work/${name}_backup_$(date +%Y%m%d_%H%M%S_%N).sqlite.gz"
tmp="$dump.tmp"
sqlite3 "$db" ".backup '$tmp'"
gzip -6 -c "$tmp" > "$dump"
rm -f "$tmp"
check="$work/check.sqlite"
gzip -dc "$dump" > "$check"
sqlite3 "$check" "PRAGMA integrity_check;
    SELECT count(*) FROM sqlite_master WHERE type = 'table';" > /dev/null
rm -f "$check"
export RESTIC_REPOSITORY="$repo"
restic backup --json --tag "project:$name" --tag backupctl:combined -- "$dump" "$assets" > /dev/null
restic forget --json --quiet --prune --group-by tags --tag "project:$name" \
    --keep-daily 7 --keep-weekly 4 --keep-monthly 6 > /dev/null
"""

LOOP_SCRIPT = r"""#!/bin/bash
# All projects in order, like run --all. Reads "NAME DB ASSETS REPO" lines on stdin.
set -euo pipefail
while read -r name db assets repo; do
    bash "$(dirname "$0")/raw_project.sh" "$name" "$db" "$assets" "$repo" "$WORK/$name" < /dev/null
done
"""


def make_project(root: Path, name: str, rng: random.Random) -> tuple[Path, Path]:
    """A ~300 KB SQLite database and an asset folder of 5 small files."""
    db_path = root / "data" / f"{name}.sqlite"
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, note TEXT)")
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER, total REAL)")
    db.executemany(
        "INSERT INTO customers (name, note) VALUES (?, ?)",
        [(f"customer {i}", f"{rng.random():.12f}" * 4) for i in range(2000)],
    )
    db.executemany("INSERT INTO orders (customer, total) VALUES (?, ?)",
                   [(rng.randrange(2000), rng.random() * 100) for _ in range(4000)])  # fmt: skip
    db.commit()
    db.close()
    assets = root / "assets" / name
    assets.mkdir(parents=True)
    for i in range(5):
        (assets / f"file{i}.txt").write_text(f"{name} asset {i} {rng.random()}\n" * 200)
    return db_path, assets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    need("restic", "sqlite3", "gzip")
    print(machine_line(RESTIC_VERSION, ("sqlite3", "--version")), flush=True)

    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        rng = random.Random(1)
        ws = Workspace(root / "ws")
        names = [f"p{i:02d}" for i in range(args.projects)]
        lines = []
        projects = []
        for name in names:
            db_path, assets = make_project(root, name, rng)
            projects.append({
                "name": name,
                "database": {"type": "sqlite", "name": str(db_path)},
                "assets": {"paths": [str(assets)]},
                "restic": {"repository_path": str(root / "repos" / name)},
            })  # fmt: skip
            lines.append(f"{name} {db_path} {assets} {root / 'raw-repos' / name}")
            (root / "raw-work" / name).mkdir(parents=True)
        ws.write_config(projects)
        ws.backupctl("db", "migrate")

        raw_dir = root / "raw"
        raw_dir.mkdir()
        (raw_dir / "raw_project.sh").write_text(RAW_SCRIPT)
        (raw_dir / "loop.sh").write_text(LOOP_SCRIPT)
        (raw_dir / "projects.txt").write_text("\n".join(lines) + "\n")
        raw_env = dict(ws.restic_env(names[0])[0], WORK=str(root / "raw-work"),
                       RESTIC_CACHE_DIR=str(raw_dir / "cache"))  # fmt: skip
        raw_env.pop("RESTIC_REPOSITORY")
        for line in lines:
            run(["restic", "init", "--repo", line.split()[3]], env=raw_env)

        def backupctl_all() -> tuple[float, dict]:
            stats_file = root / "stats.json"
            started = time.perf_counter()
            ws.backupctl(
                "run", "--all", prefix=[PYTHON, PATCHED_CLI, "--stats", str(stats_file), "--"]
            )
            seconds = time.perf_counter() - started
            for name in names:  # dumps are kept locally (local_days): keep the disk tidy
                for dump in (ws.base_dir / name).glob("*.sqlite.gz"):
                    dump.unlink()
            return seconds, json.loads(stats_file.read_text())

        def raw_all() -> float:
            started = time.perf_counter()
            with (raw_dir / "projects.txt").open() as stdin:
                import subprocess

                subprocess.run(["bash", str(raw_dir / "loop.sh")], stdin=stdin, env=raw_env,
                               check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            seconds = time.perf_counter() - started
            for name in names:
                for dump in (root / "raw-work" / name).glob("*.sqlite.gz"):
                    dump.unlink()
            return seconds

        started = time.perf_counter()
        backupctl_all()  # warm-up: creates the repositories
        raw_all()
        print(f"# warm-up (repositories created): {time.perf_counter() - started:.0f} s",
              flush=True)  # fmt: skip
        b_times, r_times, all_stats = [], [], []
        for round_no in range(1, args.rounds + 1):
            order = ["backupctl", "raw"] if round_no % 2 else ["raw", "backupctl"]
            for variant in order:
                if variant == "backupctl":
                    seconds, stats = backupctl_all()
                    b_times.append(seconds)
                    all_stats.append((seconds, stats))
                else:
                    r_times.append(raw_all())
            print(f"# round {round_no}/{args.rounds}: backupctl {b_times[-1]:.1f} s,"
                  f" raw {r_times[-1]:.1f} s", flush=True)  # fmt: skip

        n = args.projects
        b, r = median(b_times), median(r_times)
        print(f"\n# run --all over {n} projects (SQLite dumper, local repositories);"
              f" {args.rounds} rounds, alternating; seconds")  # fmt: skip
        print_table(["variant", "median", "min-max", "per project"], [
            ["backupctl run --all", f"{b:.1f}", spread(b_times), f"{b / n:.3f}"],
            ["raw bash loop", f"{r:.1f}", spread(r_times), f"{r / n:.3f}"],
        ])  # fmt: skip
        extra = (b - r) / n
        paired = median([(bt - rt) / n for bt, rt in zip(b_times, r_times, strict=True)])
        print(f"beyond the tools: ({b:.1f} - {r:.1f}) / {n} = {extra:.3f} s per project"
              f" (target <= 0.05: {'pass' if extra <= 0.05 else 'FAIL'}); median of the"
              f" per-round differences: {paired:.3f} s")  # fmt: skip

        # Inside backupctl: children (restic), the dumper's hooks, the rest.
        rows = []
        for seconds, stats in all_stats:
            children = sum(c[2] for c in stats["children"])
            hooks = sum(stats["hooks"].values())
            rows.append((seconds, children, stats["hooks"], hooks, stats["cpu_self"],
                         len(stats["children"])))  # fmt: skip
        seconds, children, hook_map, hooks, cpu, count = min(rows)  # the fastest round
        rest = seconds - children - hooks
        print(f"\n# inside the fastest backupctl round ({seconds:.1f} s, via"
              " bench/_patched_cli.py), per project")  # fmt: skip
        table = [[f"child processes ({count / n:.0f} per project: restic backup, forget)",
                  f"{children / n:.3f}"]]  # fmt: skip
        labels = {"sqlite.dump": "online backup API copy + gzip -6",
                  "sqlite.verify": "gunzip + PRAGMA integrity_check"}  # fmt: skip
        for hook, value in sorted(hook_map.items()):
            table.append([f"{hook} hook, in-process ({labels.get(hook, '?')})",
                          f"{value / n:.3f}"])  # fmt: skip
        table.append(["everything else (wall - children - hooks)", f"{rest / n:.3f}"])
        table.append(["backupctl process CPU (includes the hooks)", f"{cpu / n:.3f}"])
        print_table(["", "seconds"], table)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
