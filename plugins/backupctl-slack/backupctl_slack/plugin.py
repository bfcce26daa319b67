"""Slack notifier for backupctl: POST the event's text to an incoming webhook.

The message texts are built by the core (``backupctl_core.domain.events``);
this plugin only transports ``event.text``::

    notification:
      type: slack
      config:
        webhook_url: ${SLACK_WEBHOOK_URL}

The webhook URL's path is its secret token, so no error message names it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx

from backupctl_core import PluginError, PluginType, hookimpl
from backupctl_core.domain.events import Event
from backupctl_core.domain.settings import NotificationSettings, ProjectSettings, Secret

TYPE = "slack"  # the notification.type this plugin answers to
WHAT = "slack webhook"  # how errors name the endpoint (never by its URL)
# Connect within 5 s, then at most 10 s per read or write: a server that accepts the
# connection and never answers is given up within 15 s.
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# Slack answers errors with a short token (invalid_token, no_service, ...): worth showing.
SLACK_ERROR = re.compile(r"[a-z_]{1,64}")


@hookimpl
def backupctl_plugin_types() -> list[PluginType]:
    return [PluginType("notification", TYPE)]


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
    post_json(text(value), {"text": event.text})


def text(value: Any) -> str:
    return value.reveal() if isinstance(value, Secret) else str(value)


def url_problem(value: Any) -> str | None:
    """Why ``value`` is not a usable webhook URL, without echoing it; None when fine."""
    if value is None or text(value).strip() == "":
        return "is required"
    try:
        parts = urlsplit(text(value))
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL"
    return None


def post_json(url: str, payload: dict[str, Any]) -> None:
    """POST ``payload``; raise ``PluginError`` (without the URL) unless the answer is 2xx."""
    try:
        response = httpx.post(url, json=payload, timeout=TIMEOUT)
    except httpx.TimeoutException as error:
        phase = "connecting" if isinstance(error, httpx.ConnectTimeout) else "waiting for answer"
        raise PluginError(f"{WHAT}: timed out {phase}", connectivity=True) from None
    except httpx.ConnectError as error:
        raise PluginError(f"{WHAT}: {connect_reason(error, url)}", connectivity=True) from None
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        reason = f"request failed ({type(error).__name__})"
        raise PluginError(f"{WHAT}: {reason}", connectivity=True) from None
    if not response.is_success:
        code = response.status_code
        body = response.text.strip()
        detail = f" {body}" if SLACK_ERROR.fullmatch(body) else ""
        retryable = code >= 500 or code in (408, 429)
        raise PluginError(f"{WHAT}: HTTP {code}{detail}", retryable=retryable)


def connect_reason(error: Exception, url: str) -> str:
    message = str(error)
    if "refused" in message.lower():
        return "connection refused"
    parts = urlsplit(url)
    for secret in (url, parts.path, parts.query):
        if len(secret) > 1:
            message = message.replace(secret, "***")
    return f"cannot connect ({message})" if message else "cannot connect"
