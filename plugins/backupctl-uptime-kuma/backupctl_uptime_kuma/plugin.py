"""Uptime Kuma push monitor for backupctl: after each run, one request::

    GET {base_url}/api/push/{push_token}?status=up|down&msg=<one line>&ping=<run ms>

``status`` is ``up`` for a successful run and ``down`` for a failed one; Uptime
Kuma alerts when it says ``down`` or when no push arrives within the monitor's
heartbeat interval. Nothing is sent as a run starts (a push monitor only knows
up and down)::

    monitor:
      type: uptime-kuma
      config:
        push_token: ${UPTIME_KUMA_TOKEN}
    # base_url: UPTIME_KUMA_BASE_URL in .env (the core fills it in), or
    # monitor.config.base_url for this project only

The token is the secret (anyone holding it can push): no error message names it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

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

TYPE = "uptime-kuma"  # the monitor.type this plugin answers to
WHAT = "uptime-kuma"  # how errors name the endpoint (never by its URL)
# A ping delays the end of a run by at most 5 s to connect plus 5 s to answer
# (tests shorten them).
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 5.0


@hookimpl
def backupctl_plugin_types() -> list[PluginType]:
    # .env variables that fill the config a project leaves out; the credential keys
    return [
        PluginType(
            "monitor", TYPE, env={"base_url": "UPTIME_KUMA_BASE_URL"}, secrets={"push_token"}
        )
    ]


@hookimpl
def backupctl_validate_config(project: ProjectSettings) -> list[str]:
    if project.monitor is None or project.monitor.type != TYPE:
        return []
    # The original tool's example leaves UPTIME_KUMA_BASE_URL commented out: accepted,
    # with a warning, as a ping never fails a backup (each run logs the missing URL).
    return [
        f"warning: {problem}; no heartbeat is sent" if problem.startswith(NO_BASE_URL)
        else problem
        for problem in config_problems(project.monitor)
    ]  # fmt: skip


@hookimpl
def backupctl_monitor_ping(monitor: MonitorSettings | None, ping: Ping) -> None:
    if monitor is None or monitor.type != TYPE or ping.phase is PingPhase.START:
        return
    problems = config_problems(monitor)
    if problems:
        raise PluginError("; ".join(problems), retryable=False)
    token = secret_text(monitor.config["push_token"]).strip()
    send(
        "GET",
        push_url(secret_text(monitor.config["base_url"]), token),
        what=WHAT,
        params=push_query(ping),
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        error_detail=lambda body: kuma_error(body).replace(token, "********"),
    )


NO_BASE_URL = "monitor.config.base_url is required"


def config_problems(monitor: MonitorSettings) -> list[str]:
    problems = []
    token = monitor.config.get("push_token")
    if token is None or secret_text(token).strip() == "":
        problems.append("monitor.config.push_token is required")
    problem = url_problem(monitor.config.get("base_url"))
    if problem == "is required":
        problems.append(
            f"{NO_BASE_URL}: set UPTIME_KUMA_BASE_URL in .env"
            " (or base_url in the project's monitor.config)"
        )
    elif problem:
        problems.append(f"monitor.config.base_url {problem}")
    return problems


def push_url(base_url: str, token: str) -> str:
    """A path in ``base_url`` (Kuma behind a proxy at ``/kuma``) is kept."""
    return f"{base_url.rstrip('/')}/api/push/{quote(token, safe='')}"


def push_query(ping: Ping) -> dict[str, str]:
    return {
        "status": "up" if ping.phase is PingPhase.SUCCESS else "down",
        "msg": ping.message,
        "ping": str(ping.duration_ms or 0),
    }


def kuma_error(body: str) -> str:
    """Uptime Kuma answers a bad push with ``{"ok": false, "msg": "..."}``."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return ""
    message = data.get("msg") if isinstance(data, dict) else None
    return " ".join(str(message).split())[:120] if message else ""
