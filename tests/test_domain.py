"""Pure domain pieces: message texts (SPEC formats), retry policy, stages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from backupctl_core.domain.artifacts import Reclaim
from backupctl_core.domain.errors import EXIT_CONNECTIVITY, EXIT_FAILURE, PluginError
from backupctl_core.domain.events import (
    EventType,
    daily_summary_event,
    failed_event,
    human_duration,
    human_size,
    started_event,
    success_event,
    timeout_warning_event,
)
from backupctl_core.domain.prune import PruneHistory, PrunePlan, plan_prune
from backupctl_core.domain.records import RunRecord, RunStatus
from backupctl_core.domain.retry import RetryPolicy
from backupctl_core.domain.settings import Secret
from backupctl_core.domain.stages import Stage, describe_stage

BERLIN = ZoneInfo("Europe/Berlin")


def record(**values: object) -> RunRecord:
    base = RunRecord(
        project_name="locaboo",
        started_at=datetime(2026, 3, 17, 23, 0, tzinfo=UTC),
        snapshot_mode="combined",
    )
    for key, value in values.items():
        setattr(base, key, value)
    return base


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KB"), (257949696, "246 MB"),
     (52 * 1024**2, "52 MB"), (3 * 1024**3 // 2, "1.5 GB"), (None, "-")],
)  # fmt: skip
def test_human_size(size: int | None, text: str) -> None:
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("ms", "text"), [(192000, "3m 12s"), (342000, "5m 42s"), (4000, "4s"), (3723000, "1h 2m 3s")]
)
def test_human_duration(ms: int, text: str) -> None:
    assert human_duration(ms) == text


def test_started_message() -> None:
    event = started_event(record(), datetime(2026, 3, 18, 0, 0, tzinfo=BERLIN))
    assert event.type is EventType.STARTED
    assert event.text == "🔄 Backup started — locaboo\nTime: 2026-03-18 00:00:00 CET"


def test_success_message_matches_spec_layout() -> None:
    done = record(
        status=RunStatus.SUCCESS, dump_size_bytes=245 * 1024**2, encrypted=True, verified=True,
        snapshot_id="a1b2c3d4", files_new=12, files_changed=3, bytes_added=52 * 1024**2,
        prune_snapshots_removed=2, local_files_cleaned=1, duration_ms=192000,
    )  # fmt: skip
    event = success_event(done, "locaboo_db", datetime(2026, 3, 18, 0, 3, 12, tzinfo=BERLIN))
    assert event.text == (
        "✅ Backup completed — locaboo\n"
        "DB: locaboo_db | Dump: 245 MB | Encrypted: Yes | Verified: Yes\n"
        "Snapshot: a1b2c3d4 | Mode: combined\n"
        "New files: 12 | Changed: 3 | Added: 52 MB\n"
        "Pruned: 2 snapshots | Local cleaned: 1 file\n"
        "Duration: 3m 12s"
    )
    assert event.data["timestamp"] == "2026-03-18T00:03:12+01:00"
    assert event.data["dump_size_bytes"] == 245 * 1024**2


@pytest.mark.parametrize(
    ("values", "line"),
    [
        ({"prune_snapshots_removed": 3, "pruned_at": datetime(2026, 3, 17, 23, 3, tzinfo=UTC)},
         "Pruned: 3 snapshots forgotten, space reclaimed | Local cleaned: 0 files"),
        ({"prune_snapshots_removed": 1,
          "prune_deferred_until": datetime(2026, 3, 20, 23, 0, tzinfo=UTC)},
         "Pruned: 1 snapshot forgotten, prune deferred until 2026-03-21 00:00:00 CET"
         " | Local cleaned: 0 files"),
        ({"prune_snapshots_removed": 0}, "Pruned: 0 snapshots | Local cleaned: 0 files"),
    ],
)  # fmt: skip
def test_the_success_message_says_whether_space_was_reclaimed(
    values: dict[str, object], line: str
) -> None:
    done = record(status=RunStatus.SUCCESS, **values)
    event = success_event(done, None, datetime(2026, 3, 18, 0, 3, 12, tzinfo=BERLIN))
    assert event.text.splitlines()[4] == line


NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
IN_5_DAYS = NOW + timedelta(days=5)


@pytest.mark.parametrize(
    ("interval", "history", "plan"),
    [
        # never pruned, or the history is unknown (audit store down): as before
        (WEEK, PruneHistory(None), PrunePlan(Reclaim.IF_FORGOTTEN)),
        (WEEK, None, PrunePlan(Reclaim.IF_FORGOTTEN)),
        # pruned 2 days ago: not due, say until when
        (WEEK, PruneHistory(NOW - timedelta(days=2)), PrunePlan(Reclaim.NO, IN_5_DAYS)),
        (WEEK, PruneHistory(NOW - timedelta(days=2), unreclaimed=True),
         PrunePlan(Reclaim.NO, IN_5_DAYS)),
        # due: prune if forget removes something, or anyway if earlier forgets wait
        (WEEK, PruneHistory(NOW - WEEK), PrunePlan(Reclaim.IF_FORGOTTEN)),
        (WEEK, PruneHistory(NOW - WEEK, unreclaimed=True), PrunePlan(Reclaim.YES)),
        # 0: every run that forgets prunes (and one whose forgets wait from before)
        (timedelta(0), PruneHistory(NOW - timedelta(minutes=1)), PrunePlan(Reclaim.IF_FORGOTTEN)),
        (timedelta(0), PruneHistory(NOW, unreclaimed=True), PrunePlan(Reclaim.YES)),
    ],
)  # fmt: skip
def test_plan_prune(interval: timedelta, history: PruneHistory | None, plan: PrunePlan) -> None:
    assert plan_prune(interval, history, NOW) == plan


def test_failed_message_matches_spec_layout() -> None:
    failed = record(
        status=RunStatus.FAILED, error_stage="sync", retry_count=3,
        error_message="connection timeout to storage box",
        dump_path=Path("/data/backups/locaboo/backup.sql.gz"), duration_ms=342000,
    )  # fmt: skip
    event = failed_event(failed, 3, datetime(2026, 3, 18, 0, 5, 42, tzinfo=BERLIN))
    assert event.text == (
        "❌ Backup failed — locaboo\n"
        "Stage: Sync (6/11) | Retry: 3/3\n"
        "Error: connection timeout to storage box\n"
        "Dump file: /data/backups/locaboo/backup.sql.gz\n"
        "Duration: 5m 42s"
    )


def test_timeout_warning_and_daily_summary() -> None:
    running = record(current_stage="sync")
    warning = timeout_warning_event(running, 35 * 60000, 30, datetime(2026, 3, 18, tzinfo=BERLIN))
    assert warning.text.splitlines()[1:3] == [
        "Elapsed: 35m | Timeout threshold: 30m",
        "Current stage: Sync (6/11)",
    ]
    ok = record(status=RunStatus.SUCCESS, dump_size_bytes=245 * 1024**2, duration_ms=192000,
                snapshot_id="a1b2c3d4")  # fmt: skip
    bad = record(project_name="project-y", status=RunStatus.FAILED,
                 error_message="restic sync timeout")  # fmt: skip
    summary = daily_summary_event([ok, bad], datetime(2026, 3, 18, tzinfo=BERLIN))
    assert summary.text == (
        "📊 Daily Backup Summary — 2026-03-18\n"
        "✅ locaboo — 245 MB — 3m 12s — a1b2c3d4\n"
        "❌ project-y — FAILED — restic sync timeout\n"
        "Total: 1/2 successful | Next run: per project schedule"
    )
    from backupctl_core.domain.drill import DrillSummary

    drilled = DrillSummary(datetime(2026, 3, 17, 5, tzinfo=BERLIN), True)
    broken = DrillSummary(datetime(2026, 3, 17, 6, tzinfo=BERLIN), False, error_message="rows: x")
    with_drills = daily_summary_event(
        [ok], datetime(2026, 3, 18, tzinfo=BERLIN), {"project-y": broken, "locaboo": drilled}
    )
    assert with_drills.text.splitlines()[-2:] == [
        "🔎 Last verified restore — locaboo: 2026-03-17 05:00 CET, passed",
        "🔎 Last verified restore — project-y: 2026-03-17 06:00 CET, failed: rows: x",
    ]


def test_retry_delays_grow_exponentially_with_a_cap() -> None:
    policy = RetryPolicy(retries=5, delay_ms=1000, max_delay_ms=5000, jitter=0.1)
    assert [policy.delay_seconds(n, rand=lambda: 0.0) for n in range(4)] == [1, 2, 4, 5]
    assert policy.delay_seconds(0, rand=lambda: 1.0) == pytest.approx(1.1)


def test_retry_sleeps_between_attempts_and_stops_on_permanent_errors() -> None:
    slept: list[float] = []
    attempts = iter([PluginError("a"), PluginError("b", retryable=False)])

    def action() -> str:
        raise next(attempts)

    policy = RetryPolicy(retries=3, delay_ms=100, jitter=0)
    with pytest.raises(PluginError, match="b") as caught:
        policy.call(action, sleep=slept.append)
    assert slept == [0.1]
    assert caught.value.retries_used == 1  # type: ignore[attr-defined]


def test_stage_progress_labels() -> None:
    assert Stage.SYNC.progress() == "Sync (6/11)"
    assert Stage.NOTIFY_RESULT.progress() == "Notify result (11/11)"
    assert describe_stage("crash_recovery") == "crash_recovery"
    assert describe_stage(None) == "-"
    assert Stage.DUMP.retryable and not Stage.PRE_HOOK.retryable


def test_secrets_never_print() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in f"{secret} {secret!r} {[secret]}"
    assert secret.reveal() == "hunter2"


def test_plugin_error_exit_codes() -> None:
    assert PluginError("x").exit_code == EXIT_FAILURE
    assert PluginError("x", connectivity=True).exit_code == EXIT_CONNECTIVITY


def test_tags_carry_any_path_and_ordinary_ones_unchanged() -> None:
    from backupctl_core.domain.pipeline import decode_tag, encode_tag, snapshot_tags

    assert snapshot_tags("p", "assets:/srv/uploads") == [
        "project:p",
        "backupctl:assets:/srv/uploads",
    ]
    for path in ("/srv/with,comma", "/srv/50%off", "/srv/new\nline", "/srv/%2C literal", "/ü ß"):
        tag = encode_tag(path)
        assert "," not in tag and "\n" not in tag and decode_tag(tag) == path
