"""SIGTERM and SIGINT during a CLI run: stop cleanly, never half-done.

The handler terminates every process the run started (tools, their ssh, hooks,
whatever process group they are in), then raises ``Interrupted`` in the main
thread. The pipeline turns that into a failed run (partial dump removed by the
plugin's cleanup, post-hook run, failure notified, audit row ``failed``), and the
CLI exits 130 or 143. ``serve`` has its own handlers: it lets runs finish.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from backupctl_core.domain.errors import Interrupted

log = logging.getLogger("backupctl.interrupt")
GRACE_SECONDS = 5.0  # for children to exit after SIGTERM, before SIGKILL


def terminate_children(grace: float = GRACE_SECONDS) -> int:
    """SIGTERM every descendant of this process, SIGKILL those still alive after
    ``grace``; return how many there were."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            continue
    _gone, alive = psutil.wait_procs(children, timeout=grace)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            continue
    return len(children)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs, SIGTERM/SIGINT stop it as described above."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    received: list[str] = []

    def handler(number: int, _frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if received:  # a second signal while the run winds down: already stopping
            log.warning("%s received again: still stopping", name)
            return
        received.append(name)
        log.warning("%s received: stopping the run", name)
        terminate_children()
        raise Interrupted(name, number)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
