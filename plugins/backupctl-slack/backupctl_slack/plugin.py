"""Slack notifier for backupctl: POST the event's text to an incoming webhook.

The message texts are built by the core (``backupctl_core.Event``);
this plugin only transports ``event.text``::

    notification:
      type: slack
      config:
        webhook_url: ${SLACK_WEBHOOK_URL}

The webhook URL's path is its secret token, so no error message names it.
"""

from __future__ import annotations

import re

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

TYPE = "slack"  # the notification.type this plugin answers to
WHAT = "slack webhook"  # how errors name the endpoint (never by its URL)
# Connect within 5 s, then at most 10 s per read or write (tests shorten them).
CONNECT_TIMEOUT = CONNECT_TIMEOUT_SECONDS
READ_TIMEOUT = READ_TIMEOUT_SECONDS
# Slack answers errors with a short token (invalid_token, no_service, ...): worth showing.
SLACK_ERROR = re.compile(r"[a-z_]{1,64}")


@hookimpl
def backupctl_plugin_types() -> list[PluginType]:
    # .env variables that fill the config a project leaves out; the credential keys
    return [
        PluginType(
            "notification", TYPE, env={"webhook_url": "SLACK_WEBHOOK_URL"}, secrets={"webhook_url"}
        )
    ]


@hookimpl
def backupctl_validate_config(project: ProjectSettings) -> list[str]:
    if project.notification is None or project.notification.type != TYPE:
        return []
    problem = url_problem(project.notification.config.get("webhook_url"))
    return [f"notification.config.webhook_url {problem}"] if problem else []


@hookimpl
def backupctl_notify(event: Event, notification: NotificationSettings | None) -> None:
    if notification is None or notification.type != TYPE:
        return
    value = notification.config.get("webhook_url")
    problem = url_problem(value)
    if problem:
        raise PluginError(f"notification.config.webhook_url {problem}", retryable=False)
    post_json(
        secret_text(value),
        {"text": event.text},
        what=WHAT,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        error_detail=slack_error,
    )


def slack_error(body: str) -> str:
    """Slack's error token from an error response's body; "" for anything else."""
    return body if SLACK_ERROR.fullmatch(body) else ""
