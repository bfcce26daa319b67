"""Events from a real run, delivered through a notification plugin loaded by
the plugin manager; failures go to the JSONL fallback and replay once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from backupctl_core.domain.errors import PluginError
from backupctl_core.domain.events import EventType
from backupctl_core.runtime import watchdog
from backupctl_core.runtime.fallback import FallbackLog
from backupctl_core.runtime.notifier import Notifier
from backupctl_core.runtime.runner import run_project
from tests.support.recording_plugin import recorder
from tests.support.workspace import Workspace, recording_registry


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    recorder.reset()
    workspace = Workspace(tmp_path)
    workspace.write_config(
        [
            {
                "name": "app",
                "database": {"type": "recording", "name": "appdb"},
                "restic": {"repository_path": "/r", "password": "repo-pw-9"},
                "notification": {"type": "recording", "config": {"token": "tok-123"}},
            }
        ]
    )
    return workspace


def run(ws: Workspace) -> None:
    config = ws.load()
    run_project(config, config.project("app"), recording_registry(), ws.store())


def test_started_and_success_events_are_delivered(ws: Workspace) -> None:
    run(ws)
    assert [e.type for e in recorder.events] == [EventType.STARTED, EventType.SUCCESS]
    assert recorder.events[0].text.startswith("🔄 Backup started — app\nTime: ")
    assert recorder.events[1].text.splitlines()[1].startswith("DB: appdb | Dump: 14 B")
    (_, call) = next(c for c in recorder.calls if c[0] == "notify")
    assert call["notification"].config == {"token": "tok-123"}
    assert call["project"].name == "app"


def test_failed_run_sends_backup_failed(ws: Workspace) -> None:
    recorder.fail("sync", PluginError("storage box gone", retryable=False))
    run(ws)
    failed = recorder.events[-1]
    assert failed.type is EventType.FAILED
    assert "Stage: Sync (6/11) | Retry: 0/3" in failed.text
    assert "Error: storage box gone" in failed.text
    assert failed.data["status"] == "failed"


def test_delivery_failure_goes_to_fallback_and_replays_once(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    recorder.fail("notify", PluginError("HTTP 500 for tok-123"), PluginError("refused"))
    run(ws)
    row = ws.store().history("app", 1)[0]
    assert row.status.value == "success"  # a notification failure is never a backup failure
    fallback = FallbackLog(ws.load().settings.fallback_file)
    pending = fallback.entries("notification")
    assert [e["event"]["type"] for e in pending] == ["backup_started", "backup_success"]
    assert "tok-123" not in fallback.path.read_text()  # no channel secrets on disk
    assert "tok-123" not in caplog.text and "HTTP 500 for ********" in caplog.text
    assert fallback.path.stat().st_mode & 0o777 == 0o600

    recorder.events.clear()
    notifier = Notifier(ws.load(), recording_registry())
    assert notifier.replay() == (2, 0)
    assert [e.type for e in recorder.events] == [EventType.STARTED, EventType.SUCCESS]
    assert notifier.replay() == (0, 0)
    assert len(recorder.events) == 2  # nothing delivered twice


def test_a_delivery_warning_masks_the_credentials_not_the_server(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    """Every config value used to be masked: host, port and user too."""
    ws.write_config(
        [{"name": "app", "database": {"type": "recording", "name": "appdb"},
          "restic": {"repository_path": "/r", "password": "repo-pw-9"},
          "notification": {"type": "recording", "config": {
              "smtp_host": "mail.example.com", "smtp_port": 2525, "user": "backup-bot",
              "password": "smtp-pw-77"}}}]
    )  # fmt: skip
    recorder.fail("notify", PluginError("mail.example.com:2525 refused backup-bot/smtp-pw-77"))
    run(ws)
    assert "mail.example.com:2525 refused backup-bot/********" in caplog.text
    assert "smtp-pw-77" not in caplog.text


def test_replay_keeps_what_still_fails(ws: Workspace) -> None:
    notifier = Notifier(ws.load(), recording_registry())
    recorder.fail("notify", *[PluginError("down") for _ in range(3)])
    from backupctl_core.domain.events import Event

    for n in range(2):
        assert not notifier.send(ws.load().project("app"), Event(EventType.WARNING, "app", f"w{n}"))
    assert notifier.replay() == (1, 1)  # one failure left in the queue
    assert [e["event"]["text"] for e in notifier.fallback.entries()] == ["w0"]
    assert notifier.replay() == (1, 0)


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    log = FallbackLog(tmp_path / "f.jsonl")
    log.append("notification", {"event": {"n": 1}})
    with log.path.open("a") as handle:
        handle.write('{"id": "x", "kind": "notif')  # a crash mid-write
    assert [e["event"] for e in log.entries()] == [{"n": 1}]
    delivered: list[dict[str, object]] = []
    assert log.replay("notification", delivered.append) == (1, 0)
    assert log.path.read_text() == ""  # the torn line is dropped at rewrite
    assert json.loads(json.dumps(delivered[0]))["kind"] == "notification"


def test_timeout_warning_fires_once_while_a_slow_stage_runs(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watchdog, "SECONDS_PER_MINUTE", 0.2)
    config = ws.load()
    data = [{"name": "app", "database": {"type": "recording", "name": "db"}, "timeout_minutes": 1,
             "restic": {"repository_path": "/r", "password": "repo-pw-9"},
             "notification": {"type": "recording"}}]  # fmt: skip
    ws.write_config(data)
    recorder.during["sync"] = lambda **_: time.sleep(0.7)
    config = ws.load()
    run_project(config, config.project("app"), recording_registry(), ws.store())
    types = [e.type for e in recorder.events]
    assert types == [EventType.STARTED, EventType.WARNING, EventType.SUCCESS]
    warning = recorder.events[1]
    assert "Timeout threshold: 1m" in warning.text
    assert "Current stage: Sync (6/11)" in warning.text
    assert ws.store().history("app", 1)[0].status.value == "success"  # not killed


def test_no_warning_when_the_run_is_fast(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watchdog, "SECONDS_PER_MINUTE", 5)
    data = [{"name": "app", "database": {"type": "recording", "name": "db"}, "timeout_minutes": 1,
             "restic": {"repository_path": "/r", "password": "repo-pw-9"},
             "notification": {"type": "recording"}}]  # fmt: skip
    ws.write_config(data)
    config = ws.load()
    run_project(config, config.project("app"), recording_registry(), ws.store())
    assert EventType.WARNING not in [e.type for e in recorder.events]


def test_notification_none_sends_nothing(ws: Workspace) -> None:
    ws.write_config([{"name": "app", "database": {"type": "recording", "name": "db"},
                      "restic": {"repository_path": "/r", "password": "repo-pw-9"}}])  # fmt: skip
    run(ws)
    assert recorder.events == []
    assert not ws.load().settings.fallback_file.exists()


def test_global_channel_from_env(ws: Workspace) -> None:
    ws.write_env(NOTIFICATION_TYPE="recording")
    ws.write_config([{"name": "app", "database": {"type": "recording", "name": "db"},
                      "restic": {"repository_path": "/r", "password": "repo-pw-9"}}])  # fmt: skip
    run(ws)
    assert len(recorder.events) == 2
