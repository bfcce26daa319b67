"""More fault injection: the storage box going away, a full disk and a
read-only backup folder. A clear failure, nothing partial left, nothing synced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backupctl_core.testing.sftp import SftpServer
from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace

BACKUPCTL = str(Path(sys.executable).with_name("backupctl"))


def backupctl(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BACKUPCTL, *ws.cli_args(), *args], capture_output=True, text=True, timeout=300
    )


def last_row(ws: Workspace) -> dict[str, object]:
    rows = json.loads(backupctl(ws, "logs", "shop", "--json", "--last", "1").stdout)
    return dict(rows[0])


def storage_box_workspace(
    tmp_path: Path, ssh: SftpServer, repo: str, *, retries: int, delay_ms: int
) -> Workspace:
    """A SQLite project backed up to a fresh repository on the test storage box."""
    ws = Workspace(tmp_path)
    ws.write_env(
        RESTIC_PASSWORD="faults-pw", BACKUP_RETRY_COUNT=str(retries),
        BACKUP_RETRY_DELAY_MS=str(delay_ms), HETZNER_SSH_HOST=ssh.host,
        HETZNER_SSH_USER=ssh.user, HETZNER_SSH_PORT=str(ssh.port),
        HETZNER_SSH_KEY_PATH=str(ssh.key_path),
    )  # fmt: skip
    make_sqlite_db(tmp_path / "shop.sqlite")
    ws.write_config(
        [sqlite_project("shop", tmp_path / "shop.sqlite", Path(ssh.new_repo_path(repo)))]
    )
    return ws


def test_storage_box_down_retries_then_exit_4_and_recovers(
    tmp_path: Path, sftp_server: SftpServer
) -> None:
    ssh = sftp_server
    ws = storage_box_workspace(tmp_path, ssh, "faults", retries=2, delay_ms=300)
    assert backupctl(ws, "db", "migrate").returncode == 0
    with ssh.stopped():
        started = time.monotonic()
        result = backupctl(ws, "run", "shop")
        elapsed = time.monotonic() - started
    assert result.returncode == 4, result.stdout + result.stderr
    assert "retry 1/2" in result.stderr and "retry 2/2" in result.stderr
    assert elapsed >= 0.3 + 0.6  # backoff: 300 ms, then 600 ms
    row = last_row(ws)
    assert row["error_stage"] == "sync" and row["retry_count"] == 2
    assert "faults-pw" not in result.stdout + result.stderr + json.dumps(row)
    again = backupctl(ws, "run", "shop")
    assert again.returncode == 0, again.stdout + again.stderr
    assert last_row(ws)["status"] == "success"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs for the backup folder (root may mount; CI runs as root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    assert result.returncode == 0, f"cannot mount a tmpfs: {result.stderr!r}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def big_db(path: Path) -> None:
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
        db.executemany("INSERT INTO blobs (data) VALUES (?)", [(os.urandom(64 * 1024),)] * 80)


def test_full_disk_fails_cleanly(tmp_path: Path, small_disk: Path) -> None:
    ws = Workspace(tmp_path)
    ws.write_env(
        RESTIC_PASSWORD="disk-pw", BACKUP_BASE_DIR=str(small_disk), BACKUP_RETRY_COUNT="1",
        BACKUP_RETRY_DELAY_MS="0", AUDIT_DB_SQLITE_PATH=str(tmp_path / "audit.db"),
    )  # fmt: skip
    big_db(tmp_path / "big.sqlite")  # ~5 MB of random data: does not fit in 2 MB
    ws.write_config([sqlite_project("shop", tmp_path / "big.sqlite", tmp_path / "repo")])
    assert backupctl(ws, "db", "migrate").returncode == 0
    result = backupctl(ws, "run", "shop")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED at Dump" in result.stdout  # the result on stdout, the error on stderr
    assert "disk is full" in result.stderr and "disk is full" not in result.stdout
    assert "Traceback" not in result.stderr
    assert not list((small_disk / "shop").glob("shop_backup_*"))  # no partial dump
    assert not (tmp_path / "repo").exists()  # nothing synced
    assert last_row(ws)["error_stage"] == "dump"


def test_read_only_backup_folder_fails_cleanly(tmp_path: Path, small_disk: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    ws = Workspace(tmp_path)
    ws.write_env(
        RESTIC_PASSWORD="ro-pw", BACKUP_BASE_DIR=str(small_disk), BACKUP_RETRY_COUNT="0",
        AUDIT_DB_SQLITE_PATH=str(tmp_path / "audit.db"),
    )  # fmt: skip
    make_sqlite_db(tmp_path / "shop.sqlite")
    ws.write_config([sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo")])
    assert backupctl(ws, "db", "migrate").returncode == 0
    result = backupctl(ws, "run", "shop")
    assert result.returncode == 1
    assert "Read-only file system" in result.stderr
    assert result.stderr.count("\n") <= 3 and "Traceback" not in result.stderr
    assert not (tmp_path / "repo").exists()


class FakeClock:
    """The pipeline's clock with a recorded ``sleep``: back-off measured, not waited."""

    def __init__(self) -> None:
        from datetime import UTC, datetime

        self.start = datetime.now(UTC)
        self.slept: list[float] = []

    def now(self):  # type: ignore[no-untyped-def]
        from datetime import timedelta

        return self.start + timedelta(seconds=sum(self.slept))

    def monotonic(self) -> float:
        return sum(self.slept)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def run_with_fake_clock(ws: Workspace) -> tuple[object, FakeClock]:
    from backupctl_core.plugins import get_plugin_manager
    from backupctl_core.runtime.runner import run_project

    clock = FakeClock()
    config = ws.load()
    outcome = run_project(config, config.project("shop"), get_plugin_manager(), ws.store(),
                          clock=clock)  # type: ignore[arg-type]  # fmt: skip
    return outcome, clock


def test_a_repository_that_can_never_be_created_fails_at_once(tmp_path: Path) -> None:
    """It was retried 3 times with back-off (30 s with a 4 s base delay)."""
    ws = Workspace(tmp_path)
    ws.write_env(RESTIC_PASSWORD="faults-pw", BACKUP_RETRY_COUNT="3", BACKUP_RETRY_DELAY_MS="4000")
    make_sqlite_db(tmp_path / "shop.sqlite")
    (tmp_path / "a-file").write_text("not a folder")
    ws.write_config(
        [sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "a-file" / "repo")]
    )
    outcome, clock = run_with_fake_clock(ws)
    record = outcome.record  # type: ignore[attr-defined]
    assert record.status.value == "failed" and record.error_stage == "sync"
    assert "not a directory" in record.error_message
    assert (record.retry_count, clock.slept) == (0, [])


def test_a_storage_box_that_is_down_is_retried_with_backoff(
    tmp_path: Path, sftp_server: SftpServer
) -> None:
    ssh = sftp_server
    ws = storage_box_workspace(tmp_path, ssh, "backoff", retries=3, delay_ms=4000)
    with ssh.stopped():
        outcome, clock = run_with_fake_clock(ws)
    record = outcome.record  # type: ignore[attr-defined]
    assert record.status.value == "failed" and record.retry_count == 3
    # 4 s, 8 s, 16 s, each with up to 10% jitter
    assert len(clock.slept) == 3
    assert all(b <= s <= b * 1.1 for s, b in zip(clock.slept, [4, 8, 16], strict=True))
