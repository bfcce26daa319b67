"""The healthchecks monitor against a real local HTTP server (pytest-httpserver)."""

from __future__ import annotations

import time
from importlib.metadata import entry_points
from typing import Any

import pluggy
import pytest
from backupctl_healthchecks import plugin
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

UUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
CHECK = f"/ping/{UUID}"
RUN_ID = "6f1d2c3b-0000-4000-8000-000000000002"
START = Ping(PingPhase.START, RUN_ID, None, "started")
SUCCESS = Ping(PingPhase.SUCCESS, RUN_ID, 192_000, "OK - 3m 12s")
FAILURE = Ping(PingPhase.FAILURE, RUN_ID, 4_250, "FAIL - Sync (6/11): connection refused ✗")
NOT_HTTP = "monitor.config.ping_url must be an http:// or https:// URL"


def checks(ping_url: Any) -> MonitorSettings:
    return MonitorSettings(type="healthchecks", config={"ping_url": ping_url})


def project(monitor: MonitorSettings | None) -> ProjectSettings:
    return ProjectSettings(name="locaboo", restic=ResticSettings(repository_path="/r"),
                           monitor=monitor)  # fmt: skip


@pytest.fixture
def manager() -> pluggy.PluginManager:
    pm = plugin_manager(plugin)  # validated: a misspelled hook argument raises here
    return pm


def ping(ping_url: Any, what: Ping = SUCCESS) -> None:
    plugin.backupctl_monitor_ping(monitor=checks(ping_url), ping=what)


def refused(call: Any) -> PluginError:
    with pytest.raises(PluginError) as caught:
        call()
    error = caught.value
    assert UUID not in str(error)
    assert error.__cause__ is None  # no URL in a logged traceback
    assert error.__context__ is None or error.__suppress_context__
    return error


def test_registered_through_the_backupctl_entry_point_group(
    manager: pluggy.PluginManager,
) -> None:
    found = {ep.name: ep.value for ep in entry_points(group="backupctl")}
    assert found.get("healthchecks") == "backupctl_healthchecks.plugin"
    assert manager.hook.backupctl_plugin_types() == [[PluginType("monitor", "healthchecks")]]


@pytest.mark.parametrize(
    ("what", "path"),
    [(START, f"{CHECK}/start"), (SUCCESS, CHECK), (FAILURE, f"{CHECK}/fail")],
)
def test_each_phase_posts_to_its_url_with_the_run_id(
    what: Ping, path: str, httpserver: HTTPServer, manager: pluggy.PluginManager
) -> None:
    httpserver.expect_oneshot_request(path, method="POST").respond_with_data("OK")
    manager.hook.backupctl_monitor_ping(
        project=project(None), settings=GlobalSettings(),
        monitor=checks(httpserver.url_for(CHECK)), ping=what,
    )  # fmt: skip
    httpserver.check_assertions()
    [(request, _)] = httpserver.log
    assert request.path == path
    assert request.args.to_dict(flat=False) == {"rid": [RUN_ID]}
    assert request.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert request.get_data().decode() == what.message


def test_a_trailing_slash_and_a_query_in_the_ping_url(httpserver: HTTPServer) -> None:
    httpserver.expect_request(f"{CHECK}/fail").respond_with_data("OK")
    ping(httpserver.url_for(CHECK) + "/?create=1", FAILURE)
    httpserver.check_assertions()
    [(request, _)] = httpserver.log
    assert request.args.to_dict(flat=False) == {"create": ["1"], "rid": [RUN_ID]}


def test_a_secret_url_works(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(CHECK).respond_with_data("OK")
    ping(Secret(httpserver.url_for(CHECK)))
    httpserver.check_assertions()


@pytest.mark.parametrize(("status", "retryable"), [(404, False), (429, True), (503, True)])
def test_http_errors_without_the_url(status: int, retryable: bool, httpserver: HTTPServer) -> None:
    httpserver.expect_request(CHECK).respond_with_data(f"not found: {UUID}", status=status)
    error = refused(lambda: ping(httpserver.url_for(CHECK)))
    assert str(error) == f"healthchecks: HTTP {status}"
    assert error.retryable is retryable


def test_connection_refused() -> None:
    error = refused(lambda: ping(f"http://127.0.0.1:{free_port()}{CHECK}"))
    assert str(error) == "healthchecks: connection refused"
    assert error.connectivity


def test_a_slow_server_is_given_up_after_the_timeout(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plugin, "CONNECT_TIMEOUT", 0.3)
    monkeypatch.setattr(plugin, "READ_TIMEOUT", 0.3)
    with stalled_endpoint(httpserver, f"{CHECK}/start"):
        began = time.monotonic()
        error = refused(lambda: ping(httpserver.url_for(CHECK), START))
        assert time.monotonic() - began < 1.2
    assert str(error) == "healthchecks: timed out waiting for answer"


def test_a_server_that_never_answers_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "READ_TIMEOUT", 0.3)
    with hung_listener() as port:
        began = time.monotonic()
        error = refused(lambda: ping(f"http://127.0.0.1:{port}{CHECK}"))
    assert time.monotonic() - began < 1.2
    assert "timed out" in str(error)


def test_default_timeouts_are_bounded() -> None:
    assert plugin.CONNECT_TIMEOUT + plugin.READ_TIMEOUT <= 10.0


def test_a_ping_without_a_url_is_refused_not_sent() -> None:
    error = refused(lambda: ping(None))
    assert str(error) == "monitor.config.ping_url is required" and not error.retryable


def test_ignores_other_monitors(httpserver: HTTPServer) -> None:
    other = MonitorSettings(type="uptime-kuma", config={"ping_url": httpserver.url_for(CHECK)})
    plugin.backupctl_monitor_ping(monitor=other, ping=SUCCESS)
    plugin.backupctl_monitor_ping(monitor=None, ping=SUCCESS)
    assert httpserver.log == []


@pytest.mark.parametrize(
    ("url", "problems"),
    [
        (f"https://hc-ping.com/{UUID}", []),
        (Secret("http://127.0.0.1:8000/ping/x"), []),
        (None, ["monitor.config.ping_url is required"]),
        ("", ["monitor.config.ping_url is required"]),
        (f"hc-ping.com/{UUID}", [NOT_HTTP]),
        ("https://hc-ping.com:99999/x", ["monitor.config.ping_url is not a valid URL"]),
    ],
)
def test_validate_config(url: Any, problems: list[str]) -> None:
    found = plugin.backupctl_validate_config(project=project(checks(url)))
    assert found == problems
    assert not any(UUID in line for line in found)


def test_validate_config_ignores_other_monitors() -> None:
    assert plugin.backupctl_validate_config(project=project(None)) == []
    other = MonitorSettings(type="uptime-kuma", config={})
    assert plugin.backupctl_validate_config(project=project(other)) == []
