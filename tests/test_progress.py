"""``run``'s progress and where its output goes, through the installed executable on
real plugins (SQLite dumper, restic on a local repository): progress on stderr (a
live line on a terminal, a plain line every interval elsewhere) and in the log file,
results on stdout, a run's error once on stderr."""

from __future__ import annotations

import os
import pty
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backupctl_core.plugin_kit import Progress
from backupctl_core.runtime.progress import (
    DEFAULT_INTERVAL,
    INTERVAL_ENV,
    _status_text,
    interval_from_env,
)
from tests.support.sqlite_demo import sqlite_project
from tests.support.workspace import Workspace

BACKUPCTL = str(Path(sys.executable).with_name("backupctl"))
INTERVAL = "0.05"  # seconds between plain progress lines here (30 by default)
PLAIN_LINE = re.compile(r"^\d\d:\d\d:\d\d[+-]\d\d:\d\d shop: [A-Z][a-z -]+ \(\d+/11\): ")


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """``shop``: 10 MB of random rows, so that its dump takes a moment; ``gone``: a
    database file that does not exist."""
    workspace = Workspace(tmp_path)
    workspace.write_env(RESTIC_PASSWORD="progress-pw", BACKUP_RETRY_COUNT="0")
    with sqlite3.connect(tmp_path / "shop.sqlite") as db:
        db.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
        rows = [(os.urandom(64 * 1024),) for _ in range(160)]
        db.executemany("INSERT INTO blobs (data) VALUES (?)", rows)
    workspace.write_config(
        [
            sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo"),
            sqlite_project("gone", tmp_path / "missing.sqlite", tmp_path / "repo"),
        ]
    )
    assert backupctl(workspace, "db", "migrate").returncode == 0
    return workspace


def backupctl(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BACKUPCTL, *ws.cli_args(), *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, INTERVAL_ENV: INTERVAL},
    )  # fmt: skip


def log_text(ws: Workspace) -> str:
    return "".join(path.read_text() for path in (ws.base_dir / ".logs").glob("*.log"))


def test_off_a_terminal_a_plain_progress_line_every_interval_on_stderr_and_in_the_log(
    ws: Workspace,
) -> None:
    result = backupctl(ws, "run", "shop")

    assert result.returncode == 0, result.stderr
    stdout = result.stdout.splitlines()  # the results only
    assert len(stdout) == 2
    assert stdout[0] == "shop: started" and stdout[1].startswith("shop: success — snapshot ")
    progress = result.stderr.splitlines()
    assert progress and all(PLAIN_LINE.match(line) for line in progress), result.stderr
    dumped = [line for line in progress if " shop: Dump (3/11): " in line]
    assert any(re.search(r": \d+(\.\d)? [KM]?B so far", line) for line in dumped), progress
    assert any(" shop: Sync (6/11): " in line for line in progress), progress
    assert "\x1b[K" not in result.stderr  # no terminal codes in a pipe
    log = log_text(ws)
    assert re.search(r"INFO backupctl\.progress: shop: Dump \(3/11\): .* so far", log)
    assert "INFO backupctl.progress: shop: Sync (6/11): " in log


def test_quiet_prints_no_progress_and_no_result(ws: Workspace) -> None:
    result = backupctl(ws, "run", "shop", "--quiet")

    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    assert "INFO backupctl.progress: shop: " in log_text(ws)  # the log file still has them


def test_a_failed_run_says_its_error_once_on_stderr_and_not_on_stdout(ws: Workspace) -> None:
    error = f"SQLite database not found: {ws.root / 'missing.sqlite'}"

    result = backupctl(ws, "run", "gone")

    assert result.returncode == 1
    assert result.stderr.count(error) == 1, result.stderr
    assert error not in result.stdout
    assert result.stdout.splitlines()[0] == "gone: started"
    assert re.fullmatch(r"gone: FAILED at Dump \(3/11\) after \d+s", result.stdout.splitlines()[1])

    everything = backupctl(ws, "run", "--all", "-q")
    assert everything.returncode == 5
    assert everything.stdout == ""
    assert everything.stderr.count(error) == 1, everything.stderr
    assert " shop: " not in everything.stderr  # --quiet: no progress lines


def test_a_dry_run_as_json_prints_only_its_json(ws: Workspace) -> None:
    import json

    result = backupctl(ws, "run", "shop", "--dry-run", "--json")
    assert json.loads(result.stdout)["project"] == "shop"
    assert "shop: " not in result.stderr


def on_a_terminal(ws: Workspace, *args: str) -> str:
    """What a terminal shows of ``backupctl ARGS`` (stdout and stderr both on it)."""
    pid, terminal = pty.fork()
    if pid == 0:  # the child: backupctl on the new terminal
        try:
            env = {**os.environ, INTERVAL_ENV: INTERVAL}
            os.execve(BACKUPCTL, [BACKUPCTL, *ws.cli_args(), *args], env)
        finally:
            os._exit(127)
    shown = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(terminal, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.waitpid(pid, 0)
    os.close(terminal)
    return shown.decode(errors="replace")


def test_on_a_terminal_one_live_line_is_redrawn_and_wiped_before_the_result(
    ws: Workspace,
) -> None:
    shown = on_a_terminal(ws, "run", "shop")

    assert re.search(r"\r\x1b\[Kshop: Dump \(3/11\): [\d.]+ [KM]?B so far", shown), shown
    assert "\r\x1b[Kshop: Sync (6/11): " in shown
    assert not PLAIN_LINE.search(shown.replace("\r", "\n"))  # no plain lines on a terminal
    assert "\r\x1b[Kshop: success — snapshot " in shown  # the live line wiped first
    assert "\x1b[K" not in on_a_terminal(ws, "run", "shop", "--quiet")


def test_sync_line_from_restics_status() -> None:
    status = Progress(fraction=0.25, files_done=3, total_files=12, bytes_done=50 * 1024**2,
                      total_bytes=200 * 1024**2)  # fmt: skip
    # restic 0.14 gives no ETA: from the time so far (10 s for a quarter: 30 s to go)
    assert _status_text(status, elapsed=10) == "25%, 3/12 files, 50 MB of 200 MB, ETA 30s"
    newer = Progress(fraction=0.5, bytes_done=1024, total_bytes=2048, seconds_remaining=65)
    assert _status_text(newer, elapsed=5) == "50%, 1.0 KB of 2.0 KB, ETA 1m 5s"
    assert _status_text(Progress(), elapsed=3) == "3s"


def test_the_interval_is_30_seconds_unless_the_tests_set_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    assert interval_from_env() == DEFAULT_INTERVAL == 30
    for wrong in ("", "soon", "0", "-1"):
        monkeypatch.setenv(INTERVAL_ENV, wrong)
        assert interval_from_env() == 30
    monkeypatch.setenv(INTERVAL_ENV, "0.5")
    assert interval_from_env() == 0.5


def test_line_of_each_stage_from_the_growing_file(tmp_path: Path) -> None:
    """Dump: the file being written; Encrypt: gpg's (``.gpg.partial`` until done);
    Sync: restic's status; anything else: the time so far."""
    from backupctl_core.domain.stages import Stage
    from backupctl_core.runtime.progress import ProgressOptions, RunProgress

    now = [100.0]
    stem = tmp_path / "shop_backup_20260101_020000_abcd"
    progress = RunProgress("shop", ProgressOptions(), dump_stem=lambda: stem,
                           timezone="Europe/Berlin", clock=lambda: now[0])  # fmt: skip
    assert progress.line() is None  # before the first stage
    progress.stage(Stage.DUMP)
    now[0] += 0.5
    assert progress.line() == "shop: Dump (3/11): 0s"  # no file yet
    Path(f"{stem}.dump").write_bytes(b"x" * 3 * 1024 * 1024)
    assert progress.line() == "shop: Dump (3/11): 3.0 MB so far"  # no rate before 1 s
    now[0] += 1.5
    assert progress.line() == "shop: Dump (3/11): 3.0 MB so far at 1.5 MB/s"
    progress.stage(Stage.ENCRYPT)
    now[0] += 2
    Path(f"{stem}.dump.gpg.partial").write_bytes(b"x" * 1024 * 1024)
    assert progress.line() == "shop: Encrypt (5/11): 1.0 MB so far at 512 KB/s"
    progress.stage(Stage.SYNC)
    now[0] += 4
    assert progress.line() == "shop: Sync (6/11): 4s"
    progress.report(Progress(fraction=0.5, total_bytes=2048, bytes_done=1024))
    assert progress.line() == "shop: Sync (6/11): 50%, 1.0 KB of 2.0 KB, ETA 4s"
    progress.stage(Stage.PRUNE)  # a new stage forgets restic's status
    now[0] += 61
    assert progress.line() == "shop: Prune (7/11): 1m 1s"
