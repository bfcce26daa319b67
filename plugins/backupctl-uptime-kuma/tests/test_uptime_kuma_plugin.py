"""The Uptime Kuma monitor against a real local HTTP server (pytest-httpserver)."""

from __future__ import annotations

import time
from importlib.metadata import entry_points
from typing import Any

import pluggy
import pytest
from backupctl_uptime_kuma import plugin
from pytest_httpserver import HTTPServer

from backupctl_core import Ping, PingPhase, PluginError, PluginType
from backupctl_core.domain.settings import (
    GlobalSettings,
    MonitorSettings,
    ProjectSettings,
    ResticSettings,
    Secret,
)
from backupctl_core.testing import plugin_manager
from backupctl_core.testing.notify_servers import free_port, hung_listener, stalled_endpoint

TOKEN = "AbCdEf1234"
PUSH = f"/api/push/{TOKEN}"
RUN_ID = "6f1d2c3b-0000-4000-8000-000000000002"
SUCCESS = Ping(PingPhase.SUCCESS, RUN_ID, 192_000, "OK - 3m 12s")
FAILURE = Ping(PingPhase.FAILURE, RUN_ID, 4_250, "FAIL - Sync (6/11): connection refused")
NO_BASE = (
    "monitor.config.base_url is required: set UPTIME_KUMA_BASE_URL in .env"
    " (or base_url in the project's monitor.config)"
)


def kuma(base_url: Any, token: Any = TOKEN, **extra: Any) -> MonitorSettings:
    config = {"push_token": token, "base_url": base_url, **extra}
    return MonitorSettings(type="uptime-kuma", config={k: v for k, v in config.items() if v})


def project(monitor: MonitorSettings | None) -> ProjectSettings:
    return ProjectSettings(name="locaboo", restic=ResticSettings(repository_path="/r"),
                           monitor=monitor)  # fmt: skip


@pytest.fixture
def manager() -> pluggy.PluginManager:
    pm = plugin_manager(plugin)  # validated: a misspelled hook argument raises here
    return pm


def ping(monitor: MonitorSettings, what: Ping = SUCCESS) -> None:
    plugin.backupctl_monitor_ping(monitor=monitor, ping=what)


def refused(call: Any) -> PluginError:
    with pytest.raises(PluginError) as caught:
        call()
    error = caught.value
    assert TOKEN not in str(error)
    assert error.__cause__ is None  # no URL in a logged traceback
    assert error.__context__ is None or error.__suppress_context__
    return error


def test_registered_through_the_backupctl_entry_point_group(
    manager: pluggy.PluginManager,
) -> None:
    found = {ep.name: ep.value for ep in entry_points(group="backupctl")}
    assert found.get("uptime-kuma") == "backupctl_uptime_kuma.plugin"
    assert manager.hook.backupctl_plugin_types() == [[PluginType("monitor", "uptime-kuma")]]


@pytest.mark.parametrize(
    ("what", "query"),
    [
        (SUCCESS, {"status": "up", "msg": "OK - 3m 12s", "ping": "192000"}),
        (FAILURE, {"status": "down", "msg": "FAIL - Sync (6/11): connection refused",
                   "ping": "4250"}),
    ],
)  # fmt: skip
def test_a_result_is_one_get_to_the_push_url(
    what: Ping, query: dict[str, str], httpserver: HTTPServer, manager: pluggy.PluginManager
) -> None:
    httpserver.expect_oneshot_request(PUSH, method="GET").respond_with_json({"ok": True})
    manager.hook.backupctl_monitor_ping(
        project=project(None), settings=GlobalSettings(), monitor=kuma(httpserver.url_for("/")),
        ping=what,
    )  # fmt: skip
    httpserver.check_assertions()
    [(request, _)] = httpserver.log
    assert request.method == "GET" and request.path == PUSH
    assert request.args.to_dict(flat=False) == {k: [v] for k, v in query.items()}
    assert request.get_data() == b""


def test_the_start_of_a_run_sends_nothing(httpserver: HTTPServer) -> None:
    ping(kuma(httpserver.url_for("/")), Ping(PingPhase.START, RUN_ID, None, "started"))
    assert httpserver.log == []


def test_a_path_in_the_base_url_is_kept_and_the_token_quoted(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/kuma/api/push/a/b c").respond_with_json({"ok": True})
    ping(kuma(httpserver.url_for("/kuma/"), token=" a/b c "))
    httpserver.check_assertions()
    [(request, _)] = httpserver.log
    assert request.environ["RAW_URI"].startswith("/kuma/api/push/a%2Fb%20c?status=up&")


def test_secret_values_work(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(PUSH).respond_with_json({"ok": True})
    ping(kuma(Secret(httpserver.url_for("")), token=Secret(TOKEN)))
    httpserver.check_assertions()


def test_a_wrong_token_says_what_kuma_said_without_the_token(httpserver: HTTPServer) -> None:
    httpserver.expect_request(PUSH).respond_with_json(
        {"ok": False, "msg": "Monitor not found or not active."}, status=404
    )
    error = refused(lambda: ping(kuma(httpserver.url_for("/"))))
    assert str(error) == "uptime-kuma: HTTP 404 Monitor not found or not active."
    assert not error.retryable


def test_a_server_error_echoing_the_token_is_masked(httpserver: HTTPServer) -> None:
    httpserver.expect_request(PUSH).respond_with_json(
        {"ok": False, "msg": f"no push monitor {TOKEN}"}, status=500
    )
    error = refused(lambda: ping(kuma(httpserver.url_for("/"))))
    assert str(error) == "uptime-kuma: HTTP 500 no push monitor ********"


def test_connection_refused() -> None:
    error = refused(lambda: ping(kuma(f"http://127.0.0.1:{free_port()}")))
    assert str(error) == "uptime-kuma: connection refused"
    assert error.connectivity


def test_a_slow_server_is_given_up_after_the_timeout(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plugin, "CONNECT_TIMEOUT", 0.3)
    monkeypatch.setattr(plugin, "READ_TIMEOUT", 0.3)
    with stalled_endpoint(httpserver, PUSH):
        began = time.monotonic()
        error = refused(lambda: ping(kuma(httpserver.url_for("/"))))
        assert time.monotonic() - began < 1.2
    assert str(error) == "uptime-kuma: timed out waiting for answer"


def test_a_server_that_never_answers_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "READ_TIMEOUT", 0.3)
    with hung_listener() as port:
        began = time.monotonic()
        error = refused(lambda: ping(kuma(f"http://127.0.0.1:{port}")))
    assert time.monotonic() - began < 1.2
    assert "timed out" in str(error)


def test_default_timeouts_are_bounded() -> None:
    assert plugin.CONNECT_TIMEOUT + plugin.READ_TIMEOUT <= 10.0


def test_a_ping_without_its_settings_is_refused_not_sent() -> None:
    error = refused(lambda: ping(kuma(None)))
    assert str(error) == NO_BASE and not error.retryable


def test_ignores_other_monitors(httpserver: HTTPServer) -> None:
    other = MonitorSettings(type="healthchecks", config={"ping_url": httpserver.url_for("/")})
    ping(other)
    plugin.backupctl_monitor_ping(monitor=None, ping=SUCCESS)
    assert httpserver.log == []


@pytest.mark.parametrize(
    ("monitor", "problems"),
    [
        (kuma("https://status.example.com"), []),
        (kuma(Secret("http://127.0.0.1:3001/")), []),
        (kuma("https://status.example.com", token=None),
         ["monitor.config.push_token is required"]),
        (kuma("https://status.example.com", token="  "),
         ["monitor.config.push_token is required"]),
        # the original tool's example has no base URL: a warning, not an error
        (kuma(None), [f"warning: {NO_BASE}; no heartbeat is sent"]),
        (kuma(None, token=None),
         ["monitor.config.push_token is required", f"warning: {NO_BASE}; no heartbeat is sent"]),
        (kuma("status.example.com"),
         ["monitor.config.base_url must be an http:// or https:// URL"]),
    ],
)  # fmt: skip
def test_validate_config(monitor: MonitorSettings, problems: list[str]) -> None:
    assert plugin.backupctl_validate_config(project=project(monitor)) == problems


def test_validate_config_ignores_other_monitors() -> None:
    assert plugin.backupctl_validate_config(project=project(None)) == []
    other = MonitorSettings(type="healthchecks", config={})
    assert plugin.backupctl_validate_config(project=project(other)) == []
