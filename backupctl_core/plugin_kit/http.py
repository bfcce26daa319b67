"""Helpers for plugins that call an HTTP endpoint (notifiers, monitors): URL checks
and a request whose errors are one line, never show the URL (it is the secret),
and say whether retrying could help.

httpx is the calling plugin's dependency, not the core's, and is imported on the
first request: it costs 30-80 ms and ~12 MiB, which a run that notifies through
another channel should not pay (bench/README.md Finding 3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from backupctl_core.domain.errors import PluginError
from backupctl_core.domain.settings import Secret

# Connect within 5 s, then at most 10 s per read or write: a server that accepts the
# connection and never answers is given up within 15 s.
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 10.0


def secret_text(value: Any) -> str:
    """The plain text of a config value that may be a ``Secret``."""
    return value.reveal() if isinstance(value, Secret) else str(value)


def url_problem(value: Any) -> str | None:
    """Why ``value`` is not a usable http(s) URL, without echoing it; None when fine."""
    if value is None or secret_text(value).strip() == "":
        return "is required"
    try:
        parts = urlsplit(secret_text(value))
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL"
    return None


def post_json(
    url: str,
    body: dict[str, Any],
    *,
    what: str,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    read_timeout: float = READ_TIMEOUT_SECONDS,
    error_detail: Callable[[str], str] = lambda body: "",
) -> None:
    """POST ``body`` as JSON; raise ``PluginError`` naming ``what`` unless the answer is 2xx.

    ``error_detail`` turns an error response's body into text worth showing ("" for none).
    """
    send(
        "POST", url, what=what, json=body, connect_timeout=connect_timeout,
        read_timeout=read_timeout, error_detail=error_detail,
    )  # fmt: skip


def send(
    method: str,
    url: str,
    *,
    what: str,
    params: dict[str, str] | None = None,
    json: dict[str, Any] | None = None,
    text: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    read_timeout: float = READ_TIMEOUT_SECONDS,
    error_detail: Callable[[str], str] = lambda body: "",
) -> None:
    """One request (``params`` added to the URL's own query; a ``json`` or UTF-8 ``text``
    body), errors as ``post_json``'s: one line naming ``what``, never the URL; redirects
    not followed."""
    import httpx

    timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
    headers = {"Content-Type": "text/plain; charset=utf-8"} if text is not None else None
    try:
        target = httpx.URL(url).copy_merge_params(params) if params else url
        response = httpx.request(
            method, target, json=json, content=text, headers=headers, timeout=timeout
        )
    except httpx.TimeoutException as error:
        phase = "connecting" if isinstance(error, httpx.ConnectTimeout) else "waiting for answer"
        raise PluginError(f"{what}: timed out {phase}", connectivity=True) from None
    except httpx.ConnectError as error:
        raise PluginError(f"{what}: {_connect_reason(error, url)}", connectivity=True) from None
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        reason = f"request failed ({type(error).__name__})"
        raise PluginError(f"{what}: {reason}", connectivity=True) from None
    if not response.is_success:
        code = response.status_code
        detail = error_detail(response.text.strip())
        retryable = code >= 500 or code in (408, 429)
        raise PluginError(
            f"{what}: HTTP {code}{' ' + detail if detail else ''}", retryable=retryable
        )


def _connect_reason(error: Exception, url: str) -> str:
    message = str(error)
    if "refused" in message.lower():
        return "connection refused"
    parts = urlsplit(url)
    for secret in (url, parts.path, parts.query):
        if len(secret) > 1:
            message = message.replace(secret, "***")
    return f"cannot connect ({message})" if message else "cannot connect"
