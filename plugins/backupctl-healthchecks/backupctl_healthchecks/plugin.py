"""healthchecks.io-style pings for backupctl (the hosted service or a self-hosted
Healthchecks): three requests per run, each a POST with ``?rid=<run id>`` and the
run's one-line message as a plain-text body::

    {ping_url}/start    as the run starts (Healthchecks then measures its duration)
    {ping_url}          when it succeeded
    {ping_url}/fail     when it failed

The check alerts on ``/fail``, and when no success arrives within its period and
grace time::

    monitor:
      type: healthchecks
      config:
        ping_url: ${HC_PING_URL}    # https://hc-ping.com/<uuid>

The ping URL is the secret (anyone holding it can ping): no error message names it.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from backupctl_core import (
    MonitorSettings,
    Ping,
    PingPhase,
    PluginError,
    PluginType,
    ProjectSettings,
    hookimpl,
)
from backupctl_core.plugin_kit.http import secret_text, send, url_problem

TYPE = "healthchecks"  # the monitor.type this plugin answers to
WHAT = "healthchecks"  # how errors name the endpoint (never by its URL)
# A ping delays a run by at most 5 s to connect plus 5 s to answer (tests shorten them).
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 5.0
SUFFIXES = {PingPhase.START: "/start", PingPhase.SUCCESS: "", PingPhase.FAILURE: "/fail"}


@hookimpl
def backupctl_plugin_types() -> list[PluginType]:
    return [PluginType("monitor", TYPE, secrets={"ping_url"})]


@hookimpl
def backupctl_validate_config(project: ProjectSettings) -> list[str]:
    if project.monitor is None or project.monitor.type != TYPE:
        return []
    problem = url_problem(project.monitor.config.get("ping_url"))
    return [f"monitor.config.ping_url {problem}"] if problem else []


@hookimpl
def backupctl_monitor_ping(monitor: MonitorSettings | None, ping: Ping) -> None:
    if monitor is None or monitor.type != TYPE:
        return
    value = monitor.config.get("ping_url")
    problem = url_problem(value)
    if problem:
        raise PluginError(f"monitor.config.ping_url {problem}", retryable=False)
    send(
        "POST",
        phase_url(secret_text(value).strip(), ping.phase),
        what=WHAT,
        params={"rid": ping.run_id},
        text=ping.message,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )


def phase_url(ping_url: str, phase: PingPhase) -> str:
    """``{ping_url}/start`` etc.; a query in ``ping_url`` (``?create=1``) stays a query."""
    parts = urlsplit(ping_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + SUFFIXES[phase]))
