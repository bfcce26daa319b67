"""Heartbeat monitors in the core: the pings a real run sends through a monitor
plugin loaded by the plugin manager (a recording one here; the uptime-kuma and
healthchecks plugins test their HTTP side against a real receiver), what a failing
monitor does to a run (nothing), and the ``monitor`` block's config."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from backupctl_core.config.render import project_view
from backupctl_core.domain.errors import ConfigError, PluginError
from backupctl_core.domain.events import EventType
from backupctl_core.domain.monitor import MAX_MESSAGE_LENGTH, PingPhase, result_ping
from backupctl_core.domain.records import RunStatus
from backupctl_core.domain.settings import MASK
from backupctl_core.runtime.checks import project_checks
from backupctl_core.runtime.runner import RunOutcome, run_project
from tests.support.recording_plugin import recorder
from tests.support.workspace import Workspace, recording_registry

TOKEN = "push-tok-4711"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    recorder.reset()
    workspace = Workspace(tmp_path)
    workspace.write_config([project()])
    return workspace


def project(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "app",
        "database": {"type": "recording", "name": "appdb"},
        "restic": {"repository_path": "/r", "password": "repo-pw-9"},
        "notification": {"type": "recording"},
        "monitor": {"type": "recording", "config": {"push_token": TOKEN}},
    }
    data.update(overrides)
    return data


def run(ws: Workspace) -> RunOutcome:
    config = ws.load()
    return run_project(config, config.project("app"), recording_registry(), ws.store())


def test_a_run_pings_at_start_and_at_success(ws: Workspace) -> None:
    outcome = run(ws)
    assert outcome.ok
    start, end = recorder.pings
    assert start.phase is PingPhase.START and end.phase is PingPhase.SUCCESS
    assert start.run_id == end.run_id == outcome.record.id
    assert start.duration_ms is None and start.message == "started"
    assert end.duration_ms == outcome.record.duration_ms
    assert end.message.startswith("OK - ") and end.message.endswith("s")
    # after the started notification, and after the result notification
    order = [(name, kw.get("ping", kw.get("event"))) for name, kw in recorder.calls
             if name in ("notify", "monitor_ping")]  # fmt: skip
    assert [name for name, _ in order] == ["notify", "monitor_ping", "notify", "monitor_ping"]
    assert order[2][1].type is EventType.SUCCESS
    (_, call) = next(c for c in recorder.calls if c[0] == "monitor_ping")
    assert call["monitor"].config == {"push_token": TOKEN}
    assert call["project"].name == "app"


def test_a_failed_run_pings_failure_with_stage_and_redacted_error(ws: Workspace) -> None:
    recorder.fail("sync", PluginError("storage box said no to repo-pw-9", retryable=False))
    outcome = run(ws)
    assert outcome.record.status is RunStatus.FAILED
    start, end = recorder.pings
    assert start.phase is PingPhase.START
    assert end.phase is PingPhase.FAILURE and end.run_id == outcome.record.id
    assert end.message == "FAIL - Sync (6/11): storage box said no to ********"
    assert end.duration_ms == outcome.record.duration_ms


def test_a_failing_monitor_never_fails_the_backup(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    recorder.fail(
        "monitor_ping",
        PluginError(f"refused for token {TOKEN}"),
        PluginError(f"HTTP 500 for {TOKEN}"),
    )
    with caplog.at_level(logging.WARNING):
        outcome = run(ws)
    assert outcome.ok and not outcome.connectivity_failure
    row = ws.store().history("app", 1)[0]
    assert row.status is RunStatus.SUCCESS and row.error_message is None
    assert [e.type for e in recorder.events] == [EventType.STARTED, EventType.SUCCESS]
    assert "app: monitor start ping not delivered: refused for token ********" in caplog.text
    assert "app: monitor success ping not delivered: HTTP 500 for ********" in caplog.text
    assert TOKEN not in caplog.text
    # a heartbeat is not kept for later: a stale "up" would lie
    fallback = ws.load().settings.fallback_file
    assert not fallback.exists() or TOKEN not in fallback.read_text()


def test_no_monitor_block_sends_no_ping(ws: Workspace) -> None:
    data = project()
    del data["monitor"]
    ws.write_config([data])
    assert run(ws).ok
    assert recorder.pings == []
    assert "monitor_ping" not in recorder.hooks_called


def test_a_monitor_type_nobody_provides_names_the_distribution(ws: Workspace) -> None:
    ws.write_config([project(monitor={"type": "uptime-kuma", "config": {"push_token": "x"}})])
    config = ws.load()
    with pytest.raises(ConfigError) as caught:
        recording_registry().project_plugins(config.project("app"))
    message = caught.value.message
    assert "projects[app].monitor.type: no installed plugin provides monitor type" in message
    assert "pip install backupctl-uptime-kuma" in message
    checks = project_checks(config, config.project("app"), recording_registry())
    assert checks[-1].name == "plugins" and checks[-1].status == "fail"


def test_dry_run_lists_the_monitor_plugin(ws: Workspace) -> None:
    config = ws.load()
    checks = project_checks(config, config.project("app"), recording_registry())
    details = [c.detail for c in checks if c.name == "plugins"]
    assert any(d.startswith("monitor: recording-monitor (") for d in details), details


def test_env_fills_the_monitor_config_the_project_leaves_out(ws: Workspace) -> None:
    ws.write_env(UPTIME_KUMA_BASE_URL="https://kuma.example.com")
    kuma = {"type": "uptime-kuma", "config": {"push_token": TOKEN}}
    own = {"type": "uptime-kuma", "config": {"push_token": TOKEN, "base_url": "https://k2.ex"}}
    other = {"type": "healthchecks", "config": {"ping_url": "https://hc-ping.com/u"}}
    ws.write_config(
        [project(name="a", monitor=kuma), project(name="b", monitor=own),
         project(name="c", monitor=other)]
    )  # fmt: skip
    config = ws.load()
    assert config.project("a").monitor.config == {  # type: ignore[union-attr]
        "push_token": TOKEN,
        "base_url": "https://kuma.example.com",
    }
    assert config.project("b").monitor.config["base_url"] == "https://k2.ex"  # type: ignore[union-attr]
    assert config.project("c").monitor.config == other["config"]  # type: ignore[union-attr]


def test_config_show_masks_the_push_token_and_ping_url(ws: Workspace) -> None:
    ws.write_env(UPTIME_KUMA_BASE_URL="https://kuma.example.com")
    ws.write_config([project(monitor={"type": "uptime-kuma", "config": {"push_token": TOKEN}})])
    view = project_view(ws.load().project("app"))
    assert view["monitor"] == {
        "type": "uptime-kuma",
        "config": {"push_token": MASK, "base_url": "https://kuma.example.com"},
    }
    url = "https://hc-ping.com/0f1e2d3c-secret-uuid"
    ws.write_config([project(monitor={"type": "healthchecks", "config": {"ping_url": url}})])
    view = project_view(ws.load().project("app"))
    assert view["monitor"]["config"] == {"ping_url": MASK}
    assert "secret-uuid" not in repr(view)


def test_the_result_message_is_one_short_line() -> None:
    from datetime import UTC, datetime

    from backupctl_core.domain.records import RunRecord

    record = RunRecord(
        project_name="app",
        started_at=datetime(2026, 3, 18, tzinfo=UTC),
        snapshot_mode="combined",
        status=RunStatus.FAILED,
        error_stage="dump",
        error_message="pg_dump: error:\n" + "x" * 500,
        duration_ms=1500,
    )
    ping = result_ping(record)
    assert len(ping.message) == MAX_MESSAGE_LENGTH and ping.message.endswith("…")
    assert ping.message.startswith("FAIL - Dump (3/11): pg_dump: error: xxx")
    assert "\n" not in ping.message
    ok = RunRecord(
        project_name="app",
        started_at=record.started_at,
        snapshot_mode="combined",
        status=RunStatus.SUCCESS,
        duration_ms=192_000,
        warning_message="1 asset path missing: /srv/x",
    )
    assert result_ping(ok).message == "OK - 3m 12s - warning: 1 asset path missing: /srv/x"
    assert result_ping(ok).phase is PingPhase.SUCCESS
