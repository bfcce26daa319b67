"""Errors that carry the CLI exit code documented in SPEC."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_LOCKED = 2
EXIT_CONFIG = 3
EXIT_CONNECTIVITY = 4
EXIT_PARTIAL = 5


class BackupctlError(Exception):
    """An error the CLI reports as one line and the exit code below."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(BackupctlError):
    exit_code = EXIT_CONFIG


class LockHeldError(BackupctlError):
    exit_code = EXIT_LOCKED


class ConnectivityError(BackupctlError):
    exit_code = EXIT_CONNECTIVITY


class PluginError(BackupctlError):
    """Raised by a plugin when its tool fails.

    ``retryable`` says whether trying again could help (a dropped connection
    can heal, a wrong password cannot); ``connectivity`` marks failures to reach
    a server, which end a CLI run with exit code 4.
    """

    def __init__(self, message: str, *, retryable: bool = True, connectivity: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.connectivity = connectivity

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return EXIT_CONNECTIVITY if self.connectivity else EXIT_FAILURE


class UsageError(BackupctlError):
    """Wrong arguments on the command line."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived during a CLI run.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception``
    in a plugin swallows it and no retry policy retries it. The pipeline records
    the run as failed, runs the post-hook and notifies; the CLI then exits
    ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signal_name: str, signal_number: int) -> None:
        super().__init__(f"interrupted by {signal_name}")
        self.signal_name = signal_name
        self.exit_code = 128 + signal_number
