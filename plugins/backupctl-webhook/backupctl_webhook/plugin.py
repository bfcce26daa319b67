"""Webhook notifier for backupctl: POST each event as JSON to a URL.

The body is SPEC's webhook payload::

    {"event": "backup_success", "project": "locaboo", "text": "✅ Backup ...",
     "data": {"run_id": ..., "status": ..., "timestamp": "2026-03-18T00:03:12+01:00"}}

``text`` and ``data`` are built by the core (``backupctl_core.domain.events``);
this plugin only transports them::

    notification:
      type: webhook
      config:
        url: ${WEBHOOK_URL}

A webhook URL often carries a token, so no error message names it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from backupctl_core import PluginError, PluginType, hookimpl
from backupctl_core.domain.events import Event
from backupctl_core.domain.settings import NotificationSettings, ProjectSettings, Secret

TYPE = "webhook"  # the notification.type this plugin answers to
WHAT = "webhook"  # how errors name the endpoint (never by its URL)
# Connect within 5 s, then at most 10 s per read or write: a server that accepts the
# connection and never answers is given up within 15 s.
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@hookimpl
def backupctl_plugin_types() -> list[PluginType]:
    return [PluginType("notification", TYPE)]


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
    post_json(text(value), payload(event))


def payload(event: Event) -> dict[str, Any]:
    return {
        "event": event.type.value,
        "project": event.project,
        "text": event.text,
        "data": event.data,
    }


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


def post_json(url: str, body: dict[str, Any]) -> None:
    """POST ``body``; raise ``PluginError`` (without the URL) unless the answer is 2xx."""
    try:
        response = httpx.post(url, json=body, timeout=TIMEOUT)
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
        retryable = code >= 500 or code in (408, 429)
        raise PluginError(f"{WHAT}: HTTP {code}", retryable=retryable)


def connect_reason(error: Exception, url: str) -> str:
    message = str(error)
    if "refused" in message.lower():
        return "connection refused"
    parts = urlsplit(url)
    for secret in (url, parts.path, parts.query):
        if len(secret) > 1:
            message = message.replace(secret, "***")
    return f"cannot connect ({message})" if message else "cannot connect"
