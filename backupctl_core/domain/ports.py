"""What the pipeline needs from the outside world, as Protocols.

The runtime layer implements these with real locks, the audit store, shell
hooks, local files and the project's plugins; tests may pass their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Protocol

from backupctl_core.domain.artifacts import (
    DumpArtifact,
    PruneResult,
    Reclaim,
    SyncResult,
    VerifyResult,
)
from backupctl_core.domain.drill import DumpManifest
from backupctl_core.domain.prune import PruneHistory
from backupctl_core.domain.records import RunRecord
from backupctl_core.domain.stages import Stage


class AuditLog(Protocol):
    def start_run(self, record: RunRecord) -> None: ...

    def track_progress(self, run_id: str, stage: Stage) -> None: ...

    def finish_run(self, record: RunRecord) -> None: ...

    def prune_history(self, project: str) -> PruneHistory:
        """The project's last prune, from its runs (``domain.prune``)."""


class ProjectPlugins(Protocol):
    """The hooks of the plugins one project enables, already narrowed to them."""

    def dump(self, target_stem: Path) -> DumpArtifact: ...

    def verify(self, artifact: DumpArtifact) -> VerifyResult: ...

    def encrypt(self, artifact: DumpArtifact) -> DumpArtifact: ...

    def sync(self, paths: Sequence[Path], tags: Sequence[str]) -> SyncResult: ...

    def prune(self, reclaim: Reclaim) -> PruneResult: ...

    def manifest(self, artifact: DumpArtifact) -> DumpManifest | None: ...

    def run_session(self) -> AbstractContextManager[object]:
        """What the plugins keep open for one run (e.g. a shared SSH connection)."""


class Watchdog(Protocol):
    def watch(self, record: RunRecord) -> AbstractContextManager[object]:
        """Look after a running backup (e.g. warn once when it runs too long)."""


class ShellHooks(Protocol):
    def run(self, command: str, timeout_seconds: int, env: dict[str, str]) -> None:
        """Run an operator hook; raise ``PluginError`` on non-zero exit or timeout."""


class LocalFiles(Protocol):
    def new_dump_stem(self, started_at: datetime) -> Path: ...

    def split_existing(self, paths: Sequence[str]) -> tuple[list[Path], list[str]]:
        """Asset paths that exist, and the ones that do not."""

    def cleanup(self, older_than_days: int, now: datetime) -> int: ...

    def write_private(self, path: Path, text: str) -> None:
        """Write a small 0600 file (a dump's manifest)."""


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


LockFactory = AbstractContextManager[object]
