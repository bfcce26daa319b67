"""The JSONL fallback: ``{BACKUP_BASE_DIR}/.fallback-audit/fallback.jsonl``.

What could not reach its destination (an audit write, a notification) is
appended here, one JSON object a line, fsync'd, and replayed later. Appends
are atomic enough for one writer per line (O_APPEND, one write call); a torn
last line from a crash is skipped on read and dropped at the next rewrite.
Entries carry no secrets: a notification stores the event, not the channel's
URL or password, which are looked up again from the config at replay time.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import portalocker

from backupctl_core.plugin_kit import make_private_dir

log = logging.getLogger("backupctl.fallback")


def entry_kind(entry: dict[str, Any]) -> str | None:
    """Ours carry ``kind``; the original tool's lines are ``original-<type>``."""
    from backupctl_core.runtime.original_fallback import original_kind

    return entry.get("kind") or original_kind(entry)


class FallbackLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, kind: str, payload: dict[str, Any]) -> str:
        entry_id = str(uuid.uuid4())
        entry = {
            "id": entry_id,
            "kind": kind,
            "created_at": datetime.now(UTC).isoformat(),
            **payload,
        }
        line = (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode()
        make_private_dir(self.path.parent)
        with self._locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry_id

    def entries(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self._read() if kind is None or entry_kind(e) == kind]

    def _read(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    log.warning("%s:%d: unreadable line skipped (torn write?)", self.path, number)
                    continue
                if isinstance(entry, dict):
                    yield entry

    def replay(self, kind: str, deliver: Callable[[dict[str, Any]], None]) -> tuple[int, int]:
        """Hand each ``kind`` entry to ``deliver``; remove the delivered ones.

        Held under the file lock for the whole pass so two replays never
        deliver the same entry twice. Returns (delivered, still pending).
        """
        if not self.path.exists():
            return 0, 0
        delivered: set[str] = set()
        pending = 0
        with self._locked():
            for entry in self._read():
                if entry_kind(entry) != kind:
                    continue
                try:
                    deliver(entry)
                except Exception as error:
                    pending += 1
                    log.warning("fallback entry %s still undeliverable: %s", entry.get("id"), error)
                    continue
                delivered.add(str(entry.get("id")))
                self._rewrite_without(delivered)  # after each: a crash loses no progress
        return len(delivered), pending

    def _rewrite_without(self, ids: set[str]) -> None:
        keep = [e for e in self._read() if str(e.get("id")) not in ids]
        temporary = self.path.with_suffix(".jsonl.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for entry in keep:
                handle.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """A lock file beside the log serialises appends and rewrites across processes."""
        make_private_dir(self.path.parent)
        lock_path = str(self.path) + ".lock"
        os.close(os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600))
        with portalocker.Lock(lock_path, mode="a", timeout=60):
            yield
