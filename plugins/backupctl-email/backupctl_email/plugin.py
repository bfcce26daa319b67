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

TYPE = "email"  # the notification.type this plugin answers to
TIMEOUT = 15.0  # seconds, for connecting and for each SMTP command
IMPLICIT_TLS_PORT = 465  # smtp_secure on this port: TLS from the first byte, else STARTTLS
TRUE = frozenset({"true", "yes", "on", "1"})
FALSE = frozenset({"false", "no", "off", "0"})
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


def read_config(config: Mapping[str, Any]) -> tuple[SmtpConfig | None, list[str]]:
    """The typed config, or None and one message per problem (never echoing the password)."""
    problems: list[str] = []

    def problem(key: str, message: str) -> None:
        problems.append(f"notification.config.{key} {message}")

    host = text(config.get("smtp_host")).strip()
    if not host:
        problem("smtp_host", "is required")

    secure = flag(given(config, "smtp_secure", True))
    if secure is None:
        problem("smtp_secure", "must be true or false")

    port = number(given(config, "smtp_port", 587 if secure in (True, None) else 25))
    if port is None or not 0 < port < 65536:
        problem("smtp_port", "must be a port number (1-65535)")

    sender = text(config.get("from")).strip()
    if not sender:
        problem("from", "is required")
    elif not valid_address(sender):
        problem("from", f"is not an email address: {sender!r}")

    recipients = split_addresses(config.get("to"))
    if not recipients:
        problem("to", "is required (one address or a comma-separated list)")
    for recipient in recipients:
        if not valid_address(recipient):
            problem("to", f"is not an email address: {recipient!r}")

    user = text(config.get("user")).strip() or address(sender)
    password = text(config.get("password")) or None

    ca_file = text(config.get("ca_file")).strip() or None
    if ca_file is not None and not Path(ca_file).is_file():
        problem("ca_file", f"file not found: {ca_file}")

    if problems or port is None or secure is None:
        return None, problems
    smtp = SmtpConfig(host, port, secure, sender, recipients, user, password, ca_file)
    return smtp, []


def given(config: Mapping[str, Any], key: str, default: Any) -> Any:
    """``config[key]``, or ``default`` when it is absent or empty (``SMTP_PORT=``)."""
    value = config.get(key)
    return default if value is None or text(value).strip() == "" else value


def text(value: Any) -> str:
    if value is None:
        return ""
    return value.reveal() if isinstance(value, Secret) else str(value)


def flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    lowered = text(value).strip().lower()
    return True if lowered in TRUE else False if lowered in FALSE else None


def number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    digits = text(value).strip()
    return int(digits) if re.fullmatch(r"[0-9]{1,5}", digits) else None


def split_addresses(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else text(value).split(",")
    return tuple(item for item in (text(i).strip() for i in items) if item)


def address(value: str) -> str:
    """The bare address in ``Name <user@host>`` (or the value itself)."""
    from email.utils import parseaddr  # the email package costs start-up time; used rarely

    return parseaddr(value)[1]


def valid_address(value: str) -> bool:
    return "\r" not in value and "\n" not in value and bool(ADDRESS.fullmatch(address(value)))
