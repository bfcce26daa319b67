"""The per-project lock, with real flock between real processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backupctl_core.domain.errors import LockHeldError
from backupctl_core.runtime.lock import ProjectLock, describe_holder, is_stale


def hold_in_child(folder: Path, seconds: float) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from pathlib import Path;"
         "from backupctl_core.runtime.lock import ProjectLock;"
         f"lock = ProjectLock(Path({str(folder)!r}), 'p'); lock.acquire();"
         f"print('held', flush=True); time.sleep({seconds}); lock.release()"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_second_holder_is_refused_with_pid_and_time(tmp_path: Path) -> None:
    child = hold_in_child(tmp_path, 30)
    try:
        with pytest.raises(LockHeldError) as caught:
            ProjectLock(tmp_path, "p").acquire()
        assert f"PID {child.pid} since 20" in caught.value.message
        assert caught.value.exit_code == 2
        assert not is_stale(tmp_path / ".lock")
    finally:
        child.kill()
        child.wait()
    assert is_stale(tmp_path / ".lock")  # the dead child's file, nobody holds it
    with ProjectLock(tmp_path, "p"):
        assert (tmp_path / ".lock").read_text().split()[0] == str(__import__("os").getpid())
    assert not (tmp_path / ".lock").exists()


def test_waiting_acquire_runs_after_the_holder_finishes(tmp_path: Path) -> None:
    child = hold_in_child(tmp_path, 1.0)
    started = time.monotonic()
    with ProjectLock(tmp_path, "p", wait=True):
        waited = time.monotonic() - started
    child.wait()
    assert waited > 0.5  # it queued behind the holder instead of failing


def test_waiters_never_share_the_lock(tmp_path: Path) -> None:
    """Release removes the file; a waiter that locked the removed file must retry."""
    inside = 0
    overlaps = 0
    guard = threading.Lock()

    def worker() -> None:
        nonlocal inside, overlaps
        for _ in range(20):
            with ProjectLock(tmp_path, "p", wait=True):
                with guard:
                    inside += 1
                    overlaps += inside > 1
                time.sleep(0.001)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == 0


def test_describe_holder_of_missing_or_empty_file(tmp_path: Path) -> None:
    assert describe_holder(tmp_path / "nope") == "another process"
    (tmp_path / ".lock").write_text("")
    assert describe_holder(tmp_path / ".lock") == "another process"
    assert not is_stale(tmp_path / "missing")
    lock = ProjectLock(tmp_path, "p")
    lock.release()  # releasing an unheld lock is a no-op
