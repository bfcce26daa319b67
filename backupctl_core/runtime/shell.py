"""Operator pre/post hooks: run by the shell (they are the operator's own
commands) in a process group of their own, stdin closed, with a timeout that
kills the whole group.

The run waits for the hook's shell to exit, not for what it leaves running: its
output goes to a file, not a pipe, so a background child (``service start``,
``nohup … &``) holding the output open cannot stall the run until the timeout.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
from typing import IO

from backupctl_core.domain.errors import PluginError
from backupctl_core.plugin_kit import child_env

log = logging.getLogger("backupctl.hook")
OUTPUT_TAIL_BYTES = 64 * 1024  # what is logged of a hook's output


class ShellHookRunner:
    def run(self, command: str, timeout_seconds: int, env: dict[str, str]) -> None:
        with tempfile.TemporaryFile(prefix="backupctl-hook-") as output:
            process = subprocess.Popen(
                command,
                shell=True,
                env=child_env(env),  # BACKUPCTL_* and hooks.env only: no other secret
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                process.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise PluginError(
                    f"hook timed out after {timeout_seconds}s: {command}", retryable=False
                ) from None
            lines = _tail(output)
        for line in lines:
            log.info("hook: %s", line)
        if process.returncode != 0:
            last = lines[-1:] or ["no output"]
            raise PluginError(
                f"hook exited with {process.returncode}: {command}: {last[0]}", retryable=False
            )


def _tail(output: IO[bytes]) -> list[str]:
    size = output.seek(0, os.SEEK_END)
    output.seek(max(0, size - OUTPUT_TAIL_BYTES))
    text = output.read().decode(errors="replace")
    return [line for line in text.splitlines() if line.strip()]
