"""The SMTP side of the email notifier: build the message, deliver it, and turn every
failure into a one-line ``PluginError`` without the password.

Imported by ``plugin.backupctl_notify`` when an email is sent, so that loading the
plugin (every run does) does not import smtplib, ssl and the email package.
"""

from __future__ import annotations

import base64
import smtplib
import ssl
from contextlib import suppress
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from backupctl_core import MASK, Event, EventType, PluginError
from backupctl_email import plugin  # its TIMEOUT and IMPLICIT_TLS_PORT, read at each send
from backupctl_email.plugin import SmtpConfig, address


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
    implicit_tls = config.secure and config.port == plugin.IMPLICIT_TLS_PORT
    client: smtplib.SMTP
    if implicit_tls:
        client = smtplib.SMTP_SSL(config.host, config.port, timeout=plugin.TIMEOUT, context=context)
    else:
        client = smtplib.SMTP(config.host, config.port, timeout=plugin.TIMEOUT)
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
