"""Email notifier for backupctl: send each event's text over SMTP.

The message texts are built by the core (``backupctl_core.Event``);
this plugin only transports ``event.text`` as a plain-text UTF-8 body::

    notification:
      type: email
      config:
        smtp_host: smtp.example.com
        smtp_port: 587            # default: 587 when smtp_secure, else 25
        smtp_secure: true         # TLS: implicit on port 465, STARTTLS otherwise
        to: ops@example.com, oncall@example.com
        from: Backups <backups@example.com>
        user: backups@example.com # default: the address in `from`
        password: ${SMTP_PASSWORD}
        ca_file: /etc/ssl/my-ca.pem  # extension: trust only this CA (default: system CAs)

Values from .env arrive as text (``"587"``, ``"true"``) and are coerced here. With TLS
the server certificate and host name are always verified; ``smtp_secure: false`` sends
in plain text. No error message contains the password.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import frozen

from backupctl_core import (
    Event,
    NotificationSettings,
    PluginError,
    PluginType,
    ProjectSettings,
    Secret,
    hookimpl,
)
from backupctl_core.plugin_kit import structure_config

TYPE = "email"  # the notification.type this plugin answers to
TIMEOUT = 15.0  # seconds, for connecting and for each SMTP command
IMPLICIT_TLS_PORT = 465  # smtp_secure on this port: TLS from the first byte, else STARTTLS
ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")


@frozen
class SmtpConfig:
    host: str
    port: int
    secure: bool
    sender: str  # the `from` header as written, e.g. "Backups <backups@example.com>"
    recipients: tuple[str, ...]  # the `to` entries as written
    user: str
    password: str | None
    ca_file: str | None


# The .env variables of REFERENCE's .env table that fill the config when a project
# has no notification block.
ENV_KEYS = {
    "smtp_host": "SMTP_HOST",
    "smtp_port": "SMTP_PORT",
    "smtp_secure": "SMTP_SECURE",
    "user": "SMTP_USER",
    "password": "SMTP_PASSWORD",
    "from": "SMTP_FROM",
    "to": "SMTP_TO",
}


@hookimpl
def backupctl_plugin_types() -> list[PluginType]:
    # .env variables that fill the config a project leaves out; the credential keys
    return [PluginType("notification", TYPE, env=ENV_KEYS, secrets={"password"})]


@hookimpl
def backupctl_validate_config(project: ProjectSettings) -> list[str]:
    if project.notification is None or project.notification.type != TYPE:
        return []
    return read_config(project.notification.config)[1]


@hookimpl
def backupctl_notify(event: Event, notification: NotificationSettings | None) -> None:
    if notification is None or notification.type != TYPE:
        return
    config, problems = read_config(notification.config)
    if config is None:
        raise PluginError("; ".join(problems), retryable=False)
    # SMTP and TLS are imported only when an email is sent (start-up cost for every run).
    from backupctl_email.smtp import build_message, send

    send(config, build_message(event, config))


# --- configuration ------------------------------------------------------------------------


@frozen
class EmailConfig:
    """The ``config:`` block as written (or filled from .env), structured by the core's
    converter; ``read_config`` checks what types cannot and resolves the defaults."""

    smtp_host: str
    sender: str  # the key `from`
    to: tuple[str, ...]  # one address, a comma-separated list, or a YAML list
    smtp_secure: bool = True
    smtp_port: int | None = None
    user: str = ""
    password: Secret | None = None
    ca_file: str | None = None


WHERE = "notification.config"


def read_config(config: Mapping[str, Any]) -> tuple[SmtpConfig | None, list[str]]:
    """The transport settings, or None and one message per problem (never the password)."""
    given = dict(config)
    if isinstance(given.get("to"), str | Secret):
        given["to"] = list(split_addresses(given["to"]))
    raw, problems = structure_config(EmailConfig, given, WHERE, keys={"from": "sender"})
    if raw is None:
        return None, problems
    port = raw.smtp_port if raw.smtp_port is not None else 587 if raw.smtp_secure else 25
    if not 0 < port < 65536:
        problems.append(f"{WHERE}.smtp_port: must be a port number (1-65535), got {port}")
    host, sender = raw.smtp_host.strip(), raw.sender.strip()
    if not host:
        problems.append(f"{WHERE}.smtp_host: must not be empty")
    if not valid_address(sender):
        problems.append(f"{WHERE}.from: is not an email address: {sender!r}")
    recipients = split_addresses(list(raw.to))
    if not recipients:
        problems.append(f"{WHERE}.to: one address or a comma-separated list is required")
    problems += [
        f"{WHERE}.to: is not an email address: {r!r}" for r in recipients if not valid_address(r)
    ]
    ca_file = (raw.ca_file or "").strip() or None
    if ca_file is not None and not Path(ca_file).is_file():
        problems.append(f"{WHERE}.ca_file: file not found: {ca_file}")
    if problems:
        return None, problems
    password = raw.password.reveal() if raw.password else None
    user = raw.user.strip() or address(sender)
    return SmtpConfig(host, port, raw.smtp_secure, sender, recipients, user, password, ca_file), []


def split_addresses(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else _text(value).split(",")
    return tuple(item for item in (_text(i).strip() for i in items) if item)


def _text(value: Any) -> str:
    return value.reveal() if isinstance(value, Secret) else str(value)


def address(value: str) -> str:
    """The bare address in ``Name <user@host>`` (or the value itself)."""
    from email.utils import parseaddr  # the email package costs start-up time; used rarely

    return parseaddr(value)[1]


def valid_address(value: str) -> bool:
    return "\r" not in value and "\n" not in value and bool(ADDRESS.fullmatch(address(value)))
