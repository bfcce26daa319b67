"""Webhook notifier for backupctl: POST each event as JSON to a URL.

The body is SPEC's webhook payload::

    {"event": "backup_success", "project": "locaboo", "text": "✅ Backup ...",
     "data": {"run_id": ..., "status": ..., "timestamp": "2026-03-18T00:03:12+01:00"}}

``text`` and ``data`` are built by the core (``backupctl_core.Event``);
this plugin only transports them::

    notification:
      type: webhook
      config:
        url: ${WEBHOOK_URL}

A webhook URL often carries a token, so no error message names it.
"""

from __future__ import annotations

from typing import Any

from backupctl_core import (
    Event,
    NotificationSettings,
    PluginError,
    PluginType,
    ProjectSettings,
    hookimpl,
)
from backupctl_core.plugin_kit.http import (
    CONNECT_TIMEOUT_SECONDS,
    READ_TIMEOUT_SECONDS,
    post_json,
    secret_text,
    url_problem,
)

TYPE = "webhook"  # the notification.type this plugin answers to
WHAT = "webhook"  # how errors name the endpoint (never by its URL)
# Connect within 5 s, then at most 10 s per read or write (tests shorten them).
CONNECT_TIMEOUT = CONNECT_TIMEOUT_SECONDS
READ_TIMEOUT = READ_TIMEOUT_SECONDS


@hookimpl
def backupctl_plugin_types() -> list[PluginType]:
    # .env variables that fill the config a project leaves out; the credential keys
    return [PluginType("notification", TYPE, env={"url": "WEBHOOK_URL"}, secrets={"url"})]


@hookimpl
def backupctl_validate_config(project: ProjectSettings) -> list[str]:
    if project.notification is None or project.notification.type != TYPE:
        return []
    problem = url_problem(project.notification.config.get("url"))
    return [f"notification.config.url {problem}"] if problem else []


@hookimpl
def backupctl_notify(event: Event, notification: NotificationSettings | None) -> None:
    if notification is None or notification.type != TYPE:
        return
    value = notification.config.get("url")
    problem = url_problem(value)
    if problem:
        raise PluginError(f"notification.config.url {problem}", retryable=False)
    post_json(
        secret_text(value),
        payload(event),
        what=WHAT,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )


def payload(event: Event) -> dict[str, Any]:
    return {
        "event": event.type.value,
        "project": event.project,
        "text": event.text,
        "data": event.data,
    }
