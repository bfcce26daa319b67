"""The webhook notifier against a real local HTTP server (pytest-httpserver)."""

from __future__ import annotations

import json
import time
from importlib.metadata import entry_points
from typing import Any

import pluggy
import pytest
from backupctl_webhook import plugin
from pytest_httpserver import HTTPServer

from backupctl_core import PluginError, PluginType
from backupctl_core.domain.events import Event, EventType
from backupctl_core.domain.settings import (
    GlobalSettings,
    NotificationSettings,
    ProjectSettings,
    ResticSettings,
    Secret,
)
from backupctl_core.testing import plugin_manager
from backupctl_core.testing.notify_servers import (
    SUCCESS_TEXT,
    free_port,
    hung_listener,
    sample_events,
    stalled_endpoint,
)

TOKEN = "tok_9f8e7d6c5b4a"
PATH = f"/hooks/backupctl/{TOKEN}"
QUERY = "signature=sig_0123456789"
EVENTS = sample_events()
NOT_HTTP = "notification.config.url must be an http:// or https:// URL"


def webhook(url: Any) -> NotificationSettings:
    return NotificationSettings(type="webhook", config={"url": url})


def project(notification: NotificationSettings | None) -> ProjectSettings:
    return ProjectSettings(
        name="locaboo", restic=ResticSettings(repository_path="/r"), notification=notification
    )


@pytest.fixture
def manager() -> pluggy.PluginManager:
    pm = plugin_manager(plugin)  # validated: a misspelled hook argument raises here
    return pm


def notify(url: str, event: Event = EVENTS[EventType.SUCCESS]) -> None:
    plugin.backupctl_notify(event=event, notification=webhook(url))


def refused(call: Any) -> PluginError:
    with pytest.raises(PluginError) as caught:
        call()
    error = caught.value
    assert TOKEN not in str(error) and "sig_" not in str(error)
    assert error.__cause__ is None  # no URL in a logged traceback
    assert error.__context__ is None or error.__suppress_context__
    return error


def test_registered_through_the_backupctl_entry_point_group(
    manager: pluggy.PluginManager,
) -> None:
    found = {ep.name: ep.value for ep in entry_points(group="backupctl")}
    assert found.get("webhook") == "backupctl_webhook.plugin"
    assert manager.hook.backupctl_plugin_types() == [[PluginType("notification", "webhook")]]


@pytest.mark.parametrize("event_type", list(EventType))
def test_posts_spec_payload_for_every_event(
    event_type: EventType, httpserver: HTTPServer, manager: pluggy.PluginManager
) -> None:
    httpserver.expect_oneshot_request(PATH, method="POST", query_string=QUERY).respond_with_data(
        "", status=204
    )
    event = EVENTS[event_type]
    manager.hook.backupctl_notify(
        project=None if event_type is EventType.DAILY_SUMMARY else project(None),
        settings=GlobalSettings(),
        event=event,
        notification=webhook(httpserver.url_for(PATH) + "?" + QUERY),
    )
    httpserver.check_assertions()
    [(request, _)] = httpserver.log
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.get_data())
    assert list(body) == ["event", "project", "text", "data"]
    assert body == {
        "event": event_type.value,
        "project": event.project,
        "text": event.text,
        "data": event.data,
    }


def test_success_payload_is_spec_s_example(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(PATH, method="POST").respond_with_data("ok")
    notify(httpserver.url_for(PATH))
    [(request, _)] = httpserver.log
    assert json.loads(request.get_data()) == {
        "event": "backup_success",
        "project": "locaboo",
        "text": SUCCESS_TEXT,
        "data": {
            "run_id": "6f1d2c3b-0000-4000-8000-000000000002",
            "project_name": "locaboo",
            "status": "success",
            "snapshot_id": "a1b2c3d4",
            "dump_size_bytes": 256901120,
            "encrypted": True,
            "verified": True,
            "duration_ms": 192000,
            "timestamp": "2026-03-18T00:03:12+01:00",
        },
    }
    assert "✅".encode() in request.get_data()  # UTF-8 JSON, not \\u escapes


def test_secret_url_works(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(PATH, method="POST").respond_with_data("ok")
    notify(Secret(httpserver.url_for(PATH)))  # type: ignore[arg-type]
    httpserver.check_assertions()


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (404, False), (401, False)]
)
def test_http_errors_without_the_url(status: int, retryable: bool, httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH).respond_with_data(f"no such hook {PATH}", status=status)
    error = refused(lambda: notify(httpserver.url_for(PATH) + "?" + QUERY))
    assert str(error) == f"webhook: HTTP {status}"
    assert error.retryable is retryable and not error.connectivity


def test_redirect_is_not_followed(httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH).respond_with_data(
        "", status=302, headers={"Location": "http://127.0.0.1:1/elsewhere"}
    )
    error = refused(lambda: notify(httpserver.url_for(PATH)))
    assert str(error) == "webhook: HTTP 302"


def test_connection_refused() -> None:
    error = refused(lambda: notify(f"http://127.0.0.1:{free_port()}{PATH}?{QUERY}"))
    assert str(error) == "webhook: connection refused"
    assert error.connectivity and error.retryable


def test_slow_endpoint_times_out(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "CONNECT_TIMEOUT", 0.3)
    monkeypatch.setattr(plugin, "READ_TIMEOUT", 0.3)
    with stalled_endpoint(httpserver, PATH):
        began = time.monotonic()
        error = refused(lambda: notify(httpserver.url_for(PATH) + "?" + QUERY))
        assert time.monotonic() - began < 1.2
    assert str(error) == "webhook: timed out waiting for answer"
    assert error.connectivity


def test_endpoint_that_never_answers_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "CONNECT_TIMEOUT", 0.3)
    monkeypatch.setattr(plugin, "READ_TIMEOUT", 0.3)
    with hung_listener() as port:
        began = time.monotonic()
        error = refused(lambda: notify(f"http://127.0.0.1:{port}{PATH}"))
    assert time.monotonic() - began < 1.2
    assert "timed out" in str(error)


def test_default_timeouts_are_bounded() -> None:
    assert plugin.CONNECT_TIMEOUT == 5.0
    assert plugin.CONNECT_TIMEOUT + plugin.READ_TIMEOUT <= 15.0


def test_ignores_other_channels(httpserver: HTTPServer) -> None:
    other = NotificationSettings(type="slack", config={"url": httpserver.url_for(PATH)})
    plugin.backupctl_notify(event=EVENTS[EventType.STARTED], notification=other)
    plugin.backupctl_notify(event=EVENTS[EventType.STARTED], notification=None)
    assert httpserver.log == []


def test_missing_url_at_send_time_is_not_retried() -> None:
    event = EVENTS[EventType.STARTED]
    error = refused(lambda: plugin.backupctl_notify(event=event, notification=webhook(None)))
    assert str(error) == "notification.config.url is required"
    assert not error.retryable


@pytest.mark.parametrize(
    ("url", "problems"),
    [
        ("https://example.com/hooks/x?token=y", []),
        ("http://127.0.0.1:8080/hook", []),
        (Secret("https://example.com/hook"), []),
        (None, ["notification.config.url is required"]),
        ("", ["notification.config.url is required"]),
        ("example.com/hook", [NOT_HTTP]),
        ("mailto:ops@example.com", [NOT_HTTP]),
        ("https://example.com:99999/x", ["notification.config.url is not a valid URL"]),
    ],
)
def test_validate_config(url: Any, problems: list[str]) -> None:
    assert plugin.backupctl_validate_config(project=project(webhook(url))) == problems


def test_validate_config_never_echoes_the_url() -> None:
    found = plugin.backupctl_validate_config(project=project(webhook(f"ftp://x{PATH}")))
    assert found and TOKEN not in found[0]


def test_validate_config_ignores_other_channels() -> None:
    assert plugin.backupctl_validate_config(project=project(None)) == []
    slack = NotificationSettings(type="slack", config={})
    assert plugin.backupctl_validate_config(project=project(slack)) == []
