"""The pipeline stages of SPEC, in order, with the labels operators see."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    NOTIFY_STARTED = "notify_started"
    PRE_HOOK = "pre_hook"
    DUMP = "dump"
    VERIFY = "verify"
    ENCRYPT = "encrypt"
    SYNC = "sync"
    PRUNE = "prune"
    CLEANUP = "cleanup"
    POST_HOOK = "post_hook"
    FINALIZE = "finalize"
    NOTIFY_RESULT = "notify_result"

    @property
    def number(self) -> int:
        return _ORDER.index(self) + 1

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def retryable(self) -> bool:
        return self in RETRYABLE_STAGES

    def progress(self) -> str:
        """``Sync (6/11)``: what ``status`` shows for a running backup."""
        return f"{self.label} ({self.number}/{len(_ORDER)})"


_ORDER = list(Stage)
_LABELS = {
    Stage.NOTIFY_STARTED: "Notify started",
    Stage.PRE_HOOK: "Pre-backup hook",
    Stage.DUMP: "Dump",
    Stage.VERIFY: "Verify",
    Stage.ENCRYPT: "Encrypt",
    Stage.SYNC: "Sync",
    Stage.PRUNE: "Prune",
    Stage.CLEANUP: "Cleanup",
    Stage.POST_HOOK: "Post-backup hook",
    Stage.FINALIZE: "Finalize audit",
    Stage.NOTIFY_RESULT: "Notify result",
}
RETRYABLE_STAGES = frozenset(
    {Stage.DUMP, Stage.VERIFY, Stage.ENCRYPT, Stage.SYNC, Stage.PRUNE, Stage.CLEANUP}
)


def describe_stage(value: str | None) -> str:
    """Human text for a stored ``current_stage``/``error_stage`` value."""
    if not value:
        return "-"
    try:
        return Stage(value).progress()
    except ValueError:
        return value
