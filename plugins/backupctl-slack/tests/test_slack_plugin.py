"""The Slack notifier against a real local HTTP server (pytest-httpserver)."""

from __future__ import annotations

import json
import time
from importlib.metadata import entry_points
from typing import Any

import pluggy
import pytest
from backupctl_slack import plugin
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

TOKEN = "T0000000/B0000000/XXXXsecretXXXXtoken"
PATH = f"/services/{TOKEN}"
EVENTS = sample_events()
NOT_HTTP = "notification.config.webhook_url must be an http:// or https:// URL"


def slack(url: Any) -> NotificationSettings:
    return NotificationSettings(type="slack", config={"webhook_url": url})


def project(notification: NotificationSettings | None) -> ProjectSettings:
    return ProjectSettings(
        name="locaboo", restic=ResticSettings(repository_path="/r"), notification=notification
    )


@pytest.fixture
def manager() -> pluggy.PluginManager:
    pm = plugin_manager(plugin)  # validated: a misspelled hook argument raises here
    return pm


def notify(url: str, event: Event = EVENTS[EventType.SUCCESS]) -> None:
    plugin.backupctl_notify(event=event, notification=slack(url))


def refused(call: Any) -> PluginError:
    with pytest.raises(PluginError) as caught:
        call()
    error = caught.value
    assert TOKEN not in str(error) and "secret" not in str(error)
    assert error.__cause__ is None  # no URL in a logged traceback
    assert error.__context__ is None or error.__suppress_context__
    return error


def test_registered_through_the_backupctl_entry_point_group(
    manager: pluggy.PluginManager,
) -> None:
    found = {ep.name: ep.value for ep in entry_points(group="backupctl")}
    assert found.get("slack") == "backupctl_slack.plugin"
    assert manager.hook.backupctl_plugin_types() == [[PluginType("notification", "slack")]]


@pytest.mark.parametrize("event_type", list(EventType))
def test_posts_exactly_the_event_text(
    event_type: EventType, httpserver: HTTPServer, manager: pluggy.PluginManager
) -> None:
    httpserver.expect_oneshot_request(PATH, method="POST").respond_with_data("ok")
    event = EVENTS[event_type]
    manager.hook.backupctl_notify(
        project=None if event_type is EventType.DAILY_SUMMARY else project(None),
        settings=GlobalSettings(),
        event=event,
        notification=slack(httpserver.url_for(PATH)),
    )
    httpserver.check_assertions()
    [(request, _)] = httpserver.log
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.get_data()) == {"text": event.text}
    assert request.get_data().decode("utf-8").count("\n") == 0  # JSON-escaped newlines


def test_success_text_is_spec_s_example(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(PATH, method="POST").respond_with_data("ok")
    notify(httpserver.url_for(PATH))
    [(request, _)] = httpserver.log
    assert json.loads(request.get_data())["text"] == SUCCESS_TEXT


def test_secret_webhook_url_works(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(PATH, method="POST").respond_with_data("ok")
    notify(Secret(httpserver.url_for(PATH)))  # type: ignore[arg-type]
    httpserver.check_assertions()


def test_http_500_is_an_error_without_the_url(httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH).respond_with_data("", status=500)
    error = refused(lambda: notify(httpserver.url_for(PATH)))
    assert str(error) == "slack webhook: HTTP 500"
    assert error.retryable and not error.connectivity


def test_slack_error_token_is_shown(httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH).respond_with_data("invalid_token", status=403)
    error = refused(lambda: notify(httpserver.url_for(PATH)))
    assert str(error) == "slack webhook: HTTP 403 invalid_token"
    assert not error.retryable


def test_response_body_is_not_echoed_when_not_a_slack_token(httpserver: HTTPServer) -> None:
    body = f"<html>Not found: {PATH}</html>"
    httpserver.expect_request(PATH).respond_with_data(body, status=404)
    error = refused(lambda: notify(httpserver.url_for(PATH)))
    assert str(error) == "slack webhook: HTTP 404"


def test_connection_refused() -> None:
    error = refused(lambda: notify(f"http://127.0.0.1:{free_port()}{PATH}"))
    assert str(error) == "slack webhook: connection refused"
    assert error.connectivity and error.retryable


def test_unresolvable_host_names_no_path() -> None:
    error = refused(lambda: notify(f"https://no-such-host.invalid{PATH}"))
    assert str(error).startswith("slack webhook: cannot connect")


def test_slow_endpoint_times_out(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "CONNECT_TIMEOUT", 0.3)
    monkeypatch.setattr(plugin, "READ_TIMEOUT", 0.3)
    with stalled_endpoint(httpserver, PATH):
        began = time.monotonic()
        error = refused(lambda: notify(httpserver.url_for(PATH)))
        assert time.monotonic() - began < 1.2
    assert str(error) == "slack webhook: timed out waiting for answer"
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
    other = NotificationSettings(type="email", config={})
    plugin.backupctl_notify(event=EVENTS[EventType.STARTED], notification=other)
    plugin.backupctl_notify(event=EVENTS[EventType.STARTED], notification=None)
    assert httpserver.log == []


def test_missing_url_at_send_time_is_not_retried() -> None:
    event = EVENTS[EventType.STARTED]
    error = refused(lambda: plugin.backupctl_notify(event=event, notification=slack(None)))
    assert str(error) == "notification.config.webhook_url is required"
    assert not error.retryable


@pytest.mark.parametrize(
    ("url", "problems"),
    [
        ("https://hooks.slack.com/services/T/B/x", []),
        ("http://127.0.0.1:8080/hook", []),
        (Secret("https://hooks.slack.com/services/T/B/x"), []),
        (None, ["notification.config.webhook_url is required"]),
        ("  ", ["notification.config.webhook_url is required"]),
        ("hooks.slack.com/services/x", [NOT_HTTP]),
        ("ftp://hooks.slack.com/x", [NOT_HTTP]),
        ("https://hooks.slack.com:port/x", ["notification.config.webhook_url is not a valid URL"]),
    ],
)
def test_validate_config(url: Any, problems: list[str]) -> None:
    assert plugin.backupctl_validate_config(project=project(slack(url))) == problems


def test_validate_config_never_echoes_the_url() -> None:
    found = plugin.backupctl_validate_config(project=project(slack(f"ftp://x{PATH}")))
    assert found and TOKEN not in found[0]


def test_validate_config_ignores_other_channels() -> None:
    assert plugin.backupctl_validate_config(project=project(None)) == []
    email = NotificationSettings(type="email", config={})
    assert plugin.backupctl_validate_config(project=project(email)) == []
