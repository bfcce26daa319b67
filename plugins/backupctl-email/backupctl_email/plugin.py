"""Email notifier for backupctl: send each event's text over SMTP.

The message texts are built by the core (``backupctl_core.domain.events``);
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

import base64
import re
import smtplib
import ssl
from collections.abc import Mapping
from contextlib import suppress
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any

from attrs import frozen

from backupctl_core import PluginError, PluginType, hookimpl
from backupctl_core.domain.events import Event, EventType
from backupctl_core.domain.settings import MASK, NotificationSettings, ProjectSettings, Secret

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


@hookimpl
def backupctl_plugin_types() -> list[PluginType]:
    return [PluginType("notification", TYPE)]


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
    send(config, build_message(event, config))


def subject(event: Event) -> str:
    if event.type is EventType.DAILY_SUMMARY:
        return f"[backupctl] {event.type.value}"
    return f"[backupctl] {event.type.value} — {event.project}"


def build_message(event: Event, config: SmtpConfig) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject(event)
    message["From"] = config.sender
    message["To"] = ", ".join(config.recipients)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=address(config.sender).rpartition("@")[2])
    message.set_content(event.text, charset="utf-8", cte="quoted-printable")
    return message


def deliver(config: SmtpConfig, message: EmailMessage) -> None:
    """One SMTP session: connect (TLS as configured), log in, send, quit."""
    context = ssl.create_default_context(cafile=config.ca_file) if config.secure else None
    implicit_tls = config.secure and config.port == IMPLICIT_TLS_PORT
    client: smtplib.SMTP
    if implicit_tls:
        client = smtplib.SMTP_SSL(config.host, config.port, timeout=TIMEOUT, context=context)
    else:
        client = smtplib.SMTP(config.host, config.port, timeout=TIMEOUT)
    try:
        if config.secure and not implicit_tls:
            client.starttls(context=context)  # no STARTTLS offered: an error, no downgrade
        if config.password:
            login(client, config.user, config.password)
        sender, recipients = address(config.sender), [address(r) for r in config.recipients]
        client.send_message(message, sender, recipients)
        with suppress(OSError):  # the message is accepted; a failed QUIT changes nothing
            client.quit()
    finally:
        client.close()  # after a failure: no QUIT on a connection in an unknown state


def send(config: SmtpConfig, message: EmailMessage) -> None:
    """``deliver``, with every failure a one-line ``PluginError`` without the password."""
    where = f"smtp {config.host}:{config.port}"
    try:
        deliver(config, message)
    except smtplib.SMTPAuthenticationError as error:
        reason = f"login as {config.user} refused ({answer(error)})"
        raise failure(f"{where}: {reason}", config, retryable=False) from None
    except smtplib.SMTPResponseException as error:
        reason = f"server answered {answer(error)}"
        raise failure(f"{where}: {reason}", config, retryable=transient(error.smtp_code)) from None
    except smtplib.SMTPRecipientsRefused as error:
        answers = error.recipients.items()
        refused = ", ".join(f"{to} ({answer_of(code, msg)})" for to, (code, msg) in answers)
        retryable = any(transient(code) for code, _ in error.recipients.values())
        raise failure(
            f"{where}: recipients refused: {refused}", config, retryable=retryable
        ) from None
    except ssl.SSLCertVerificationError as error:
        reason = f"TLS certificate not trusted ({error.verify_message or error.reason})"
        raise failure(f"{where}: {reason}", config, retryable=False, connectivity=True) from None
    except ssl.SSLError as error:
        reason = f"TLS error ({error.reason or error})"
        raise failure(f"{where}: {reason}", config, retryable=False, connectivity=True) from None
    except smtplib.SMTPNotSupportedError as error:  # e.g. no STARTTLS: never downgrade
        raise failure(f"{where}: {error}", config, retryable=False) from None
    except smtplib.SMTPServerDisconnected as error:
        lost = "timed out" if isinstance(error.__context__, TimeoutError) else str(error)
        raise failure(f"{where}: {lost}", config, connectivity=True) from None
    except TimeoutError:
        raise failure(f"{where}: timed out", config, connectivity=True) from None
    except ConnectionRefusedError:
        raise failure(f"{where}: connection refused", config, connectivity=True) from None
    except OSError as error:  # smtplib.SMTPException is an OSError too
        raise failure(f"{where}: {error}", config, connectivity=True) from None


def login(client: smtplib.SMTP, user: str, password: str) -> None:
    """``client.login``, which only takes ASCII; AUTH PLAIN in UTF-8 (RFC 4616) otherwise."""
    if (user + password).isascii():
        client.login(user, password)
        return
    client.ehlo_or_helo_if_needed()
    if "plain" not in client.esmtp_features.get("auth", "").lower().split():
        raise smtplib.SMTPNotSupportedError("a non-ASCII login needs AUTH PLAIN")
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")
    code, reply = client.docmd("AUTH", f"PLAIN {token}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


def failure(
    message: str, config: SmtpConfig, *, retryable: bool = True, connectivity: bool = False
) -> PluginError:
    """A ``PluginError`` whose message has the password masked."""
    if config.password:
        message = message.replace(config.password, MASK)
    return PluginError(message, retryable=retryable, connectivity=connectivity)


def transient(smtp_code: int) -> bool:
    """4xx answers are temporary failures; 5xx are permanent."""
    return 400 <= smtp_code < 500


def answer(error: smtplib.SMTPResponseException) -> str:
    return answer_of(error.smtp_code, error.smtp_error)


def answer_of(code: int, reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return f"{code} {' '.join(reply.split())}"


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
    return parseaddr(value)[1]


def valid_address(value: str) -> bool:
    return "\r" not in value and "\n" not in value and bool(ADDRESS.fullmatch(address(value)))
