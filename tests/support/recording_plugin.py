"""Test plugins: a database and a storage plugin that record what they are
asked and can be told to fail. Loaded through a real entry point, like any
third-party plugin."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backupctl_core import (
    DumpArtifact,
    PluginError,
    PluginType,
    PruneResult,
    Snapshot,
    SyncResult,
    VerifyResult,
    hookimpl,
)


class Recorder:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failures: dict[str, list[PluginError]] = {}
        self.during: dict[str, Callable[..., None]] = {}
        self.verify_ok = True
        self.snapshots: list[SyncResult] = []
        self.events: list[Any] = []
        self.pings: list[Any] = []
        self.session_log: list[str] = []  # "open", "close", in order, beside ``calls``
        self.session_error: Exception | None = None  # raised when the session opens

    def fail(self, hook: str, *errors: PluginError) -> None:
        self.failures[hook] = list(errors)

    def _enter(self, hook: str, **kwargs: Any) -> None:
        self.calls.append((hook, kwargs))
        if hook in self.during:
            self.during[hook](**kwargs)
        pending = self.failures.get(hook)
        if pending:
            raise pending.pop(0)

    @property
    def hooks_called(self) -> list[str]:
        return [name for name, _ in self.calls]


recorder = Recorder()


class DatabasePlugin:
    @hookimpl
    def backupctl_plugin_types(self) -> list[PluginType]:
        return [PluginType("database", "recording")]

    @hookimpl
    def backupctl_validate_config(self, project: Any) -> list[str]:
        return [] if project.database.name else ["database.name is required"]

    @hookimpl
    def backupctl_dump(self, project: Any, target_stem: Path) -> DumpArtifact:
        recorder._enter("dump", project=project.name, target_stem=target_stem)
        path = target_stem.with_name(target_stem.name + ".txt")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"dump of {project.database.name}\n")
        return DumpArtifact(path, path.stat().st_size, "text")

    @hookimpl
    def backupctl_verify(self, artifact: DumpArtifact) -> VerifyResult:
        recorder._enter("verify", artifact=artifact)
        return VerifyResult(recorder.verify_ok, "checked" if recorder.verify_ok else "corrupt")


class StoragePlugin:
    @hookimpl
    def backupctl_plugin_types(self) -> list[PluginType]:
        return [PluginType("storage", "restic")]

    @hookimpl
    def backupctl_run_session(self) -> Any:
        @contextmanager
        def session() -> Iterator[None]:
            if recorder.session_error is not None:
                raise recorder.session_error
            recorder.session_log.append(f"open before {len(recorder.calls)} calls")
            yield
            recorder.session_log.append(f"close after {recorder.hooks_called}")

        return session()

    @hookimpl
    def backupctl_sync(self, paths: Sequence[Path], tags: Sequence[str]) -> SyncResult:
        recorder._enter("sync", paths=list(paths), tags=list(tags))
        digest = hashlib.sha1(repr((list(paths), list(tags))).encode()).hexdigest()[:8]
        result = SyncResult(digest, files_new=len(paths), files_changed=0, bytes_added=100)
        recorder.snapshots.append(result)
        return result

    @hookimpl
    def backupctl_prune(self) -> PruneResult:
        recorder._enter("prune")
        return PruneResult(snapshots_removed=1)

    @hookimpl
    def backupctl_snapshots(self) -> list[Snapshot]:
        return []


class NotifierPlugin:
    """notification type "recording": keeps every event; ``recorder.fail("notify", ...)``."""

    @hookimpl
    def backupctl_plugin_types(self) -> list[PluginType]:
        return [PluginType("notification", "recording")]

    @hookimpl
    def backupctl_notify(self, project: Any, event: Any, notification: Any) -> None:
        recorder._enter("notify", project=project, event=event, notification=notification)
        recorder.events.append(event)


class MonitorPlugin:
    """monitor type "recording": keeps every ``Ping`` in ``recorder.pings``;
    ``recorder.fail("monitor_ping", ...)`` makes the next pings fail."""

    @hookimpl
    def backupctl_plugin_types(self) -> list[PluginType]:
        return [PluginType("monitor", "recording")]

    @hookimpl
    def backupctl_monitor_ping(self, project: Any, monitor: Any, ping: Any) -> None:
        recorder.pings.append(ping)
        recorder._enter("monitor_ping", project=project, monitor=monitor, ping=ping)


class BrokenHookPlugin:
    """Misspells a hook argument: registration must fail, by name."""

    @hookimpl
    def backupctl_dump(self, projekt: Any) -> None:  # deliberately wrong
        return None


database = DatabasePlugin()
storage = StoragePlugin()
notifier = NotifierPlugin()
monitor = MonitorPlugin()
broken = BrokenHookPlugin()
