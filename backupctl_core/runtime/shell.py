"""Operator pre/post hooks: run by the shell (they are the operator's own
commands), with a timeout that kills the whole process group."""

from __future__ import annotations

import os
import signal
import subprocess

from backupctl_core.domain.errors import PluginError


class ShellHookRunner:
    def run(self, command: str, timeout_seconds: int, env: dict[str, str]) -> None:
        process = subprocess.Popen(
            command,
            shell=True,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise PluginError(
                f"hook timed out after {timeout_seconds}s: {command}", retryable=False
            ) from None
        if process.returncode != 0:
            last = (output or "").strip().splitlines()[-1:] or ["no output"]
            raise PluginError(
                f"hook exited with {process.returncode}: {command}: {last[0]}", retryable=False
            )
