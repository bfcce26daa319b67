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
