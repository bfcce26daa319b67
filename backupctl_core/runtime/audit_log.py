"""The pipeline's audit port with a safety net: when the audit database is
unreachable, the backup goes on and the write goes to the JSONL fallback,
to be replayed (idempotently, by run id) when the database is back."""

from __future__ import annotations

import logging
from typing import Any

from backupctl_core.audit.store import AuditStore
from backupctl_core.domain.errors import ConnectivityError
from backupctl_core.domain.prune import PruneHistory
from backupctl_core.domain.records import RunRecord
from backupctl_core.domain.stages import Stage
from backupctl_core.runtime.fallback import FallbackLog
from backupctl_core.runtime.original_fallback import ORIGINAL_PREFIX, record_from_original

log = logging.getLogger("backupctl.audit")
KIND = "audit"


class ResilientAuditLog:
    def __init__(self, store: AuditStore, fallback: FallbackLog) -> None:
        self.store = store
        self.fallback = fallback

    def _keep(self, op: str, record: RunRecord, error: Exception) -> None:
        log.warning(
            "%s: audit %s not written (%s); kept in %s",
            record.project_name, op, error, self.fallback.path,
        )  # fmt: skip
        self.fallback.append(KIND, {"op": op, "record": record.to_json()})

    def start_run(self, record: RunRecord) -> None:
        try:
            self.store.start_run(record)
        except ConnectivityError as error:
            self._keep("start", record, error)

    def track_progress(self, run_id: str, stage: Stage) -> None:
        # Raises on an outage; the pipeline warns once per run. The finish row has it all.
        self.store.track_progress(run_id, stage)

    def finish_run(self, record: RunRecord) -> None:
        try:
            self.store.finish_run(record)
        except ConnectivityError as error:
            self._keep("finish", record, error)

    def prune_history(self, project: str) -> PruneHistory:
        # Raises on an outage; the pipeline then prunes as if it were due.
        return self.store.prune_history(project)


def replay_audit(store: AuditStore, fallback: FallbackLog) -> tuple[int, int]:
    """Write pending audit rows; replaying twice gives the same rows."""

    def deliver(entry: dict[str, Any]) -> None:
        record = RunRecord.from_json(entry["record"])
        if entry.get("op") == "finish":
            store.finish_run(record)
        else:
            store.ensure_started(record)

    ours = fallback.replay(KIND, deliver)

    def deliver_original(entry: dict[str, Any]) -> None:
        store.finish_run(record_from_original(entry["payload"]))  # an upsert by run id

    theirs = fallback.replay(ORIGINAL_PREFIX + KIND, deliver_original)
    return ours[0] + theirs[0], ours[1] + theirs[1]
