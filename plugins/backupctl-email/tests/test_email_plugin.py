"""The email notifier against a real SMTP server (aiosmtpd on 127.0.0.1) in plain,
STARTTLS and implicit-TLS modes, with a throwaway CA from trustme."""

from __future__ import annotations

import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from backupctl_email import plugin

from backupctl_core import PluginError, PluginType
from backupctl_core.domain.events import EventType
from backupctl_core.domain.settings import (
    GlobalSettings,
    NotificationSettings,
    ProjectSettings,
    ResticSettings,
    Secret,
)
from backupctl_core.testing import plugin_manager
from backupctl_core.testing.notify_servers import (
    PasswordAuthenticator,
    ServerCertificate,
    SmtpServer,
    free_port,
    hung_listener,
    make_certificate,
    sample_events,
    smtp_server,
)

EVENTS = sample_events()
USER = "backups@example.com"
PASSWORD = "s3cr3t-Pässword"
WRONG = "hunter2-wrong-one"
WRONG_UTF8 = "hunter2-wröng-one"

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> ServerCertificate:
    return make_certificate(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def plain() -> Iterator[SmtpServer]:
    with smtp_server("plain") as server:
        yield server


@pytest.fixture
def starttls(certificate: ServerCertificate) -> Iterator[SmtpServer]:
    with smtp_server("starttls", certificate, PasswordAuthenticator(USER, PASSWORD)) as server:
        yield server


@pytest.fixture
def implicit_tls(
    certificate: ServerCertificate, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SmtpServer]:
    with smtp_server("tls", certificate, PasswordAuthenticator(USER, PASSWORD)) as server:
        # Implicit TLS is what smtp_secure means on port 465; the test server has its own port.
        monkeypatch.setattr(plugin, "IMPLICIT_TLS_PORT", server.port)
        yield server


def env_config(server: SmtpServer, **overrides: Any) -> dict[str, Any]:
    """A channel config as .env fills it: every value a string."""
    config: dict[str, Any] = {
        "smtp_host": server.host,
        "smtp_port": str(server.port),
        "smtp_secure": "false",
        "to": "ops@example.com, On Call <oncall@example.com>",
        "from": f"Backups <{USER}>",
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def email(config: dict[str, Any]) -> NotificationSettings:
    return NotificationSettings(type="email", config=config)


def send(config: dict[str, Any], event_type: EventType = EventType.SUCCESS) -> None:
    plugin.backupctl_notify(event=EVENTS[event_type], notification=email(config))


def refused(call: Any) -> PluginError:
    with pytest.raises(PluginError) as caught:
        call()
    error = caught.value
    assert all(secret not in str(error) for secret in (PASSWORD, WRONG, WRONG_UTF8))
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    return error


def project(config: dict[str, Any] | None) -> ProjectSettings:
    return ProjectSettings(
        name="locaboo",
        restic=ResticSettings(repository_path="/r"),
        notification=None if config is None else email(config),
    )


def test_registered_through_the_backupctl_entry_point_group() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="backupctl")}
    assert found.get("email") == "backupctl_email.plugin"
    pm = plugin_manager(plugin)  # validated: a misspelled hook argument raises here
    assert pm.hook.backupctl_plugin_types() == [[PluginType("notification", "email")]]


# --- delivery ------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", list(EventType))
def test_plain_delivers_subject_addresses_and_utf8_body(
    event_type: EventType, plain: SmtpServer
) -> None:
    pm = plugin_manager(plugin)  # validated: a misspelled hook argument raises here
    event = EVENTS[event_type]
    pm.hook.backupctl_notify(
        project=None if event_type is EventType.DAILY_SUMMARY else project(None),
        settings=GlobalSettings(),
        event=event,
        notification=email(env_config(plain)),
    )
    [envelope] = plain.handler.envelopes
    assert envelope.mail_from == USER
    assert envelope.rcpt_tos == ["ops@example.com", "oncall@example.com"]
    [message] = plain.handler.messages()
    expected_subject = (
        "[backupctl] daily_summary"
        if event_type is EventType.DAILY_SUMMARY
        else f"[backupctl] {event_type.value} — {event.project}"
    )
    assert message["Subject"] == expected_subject
    assert message["From"] == f"Backups <{USER}>"
    assert message["To"] == "ops@example.com, On Call <oncall@example.com>"
    assert message["Date"] and message["Message-ID"].endswith("@example.com>")
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content().replace("\r\n", "\n") == event.text + "\n"


def test_body_keeps_emoji(plain: SmtpServer) -> None:
    send(env_config(plain), EventType.WARNING)
    [message] = plain.handler.messages()
    body = message.get_content().replace("\r\n", "\n")
    assert body.startswith("⚠️ Backup timeout warning — locaboo\n")
    assert "Backup is still running — this is a warning, not a failure." in body


@pytest.mark.parametrize("password", [PASSWORD, "plain-ascii-pass"])
def test_plain_login_when_a_password_is_given(password: str) -> None:
    auth = PasswordAuthenticator(USER, password)
    with smtp_server("plain", authenticator=auth) as server:
        send(env_config(server, password=password))
        assert auth.logins == [USER]
        assert len(server.handler.envelopes) == 1


def test_starttls_verifies_the_certificate_and_logs_in(
    starttls: SmtpServer, certificate: ServerCertificate
) -> None:
    config = env_config(
        starttls, smtp_secure="true", password=PASSWORD, ca_file=str(certificate.ca_file)
    )
    send(config)
    assert starttls.authenticator is not None and starttls.authenticator.logins == [USER]
    [message] = starttls.handler.messages()
    assert message["Subject"] == "[backupctl] backup_success — locaboo"


def test_implicit_tls_verifies_the_certificate_and_logs_in(
    implicit_tls: SmtpServer, certificate: ServerCertificate
) -> None:
    config = {
        "smtp_host": implicit_tls.host,
        "smtp_port": implicit_tls.port,  # YAML types: int and bool
        "smtp_secure": True,
        "to": ["ops@example.com"],
        "from": USER,
        "user": USER,
        "password": Secret(PASSWORD),
        "ca_file": str(certificate.ca_file),
    }
    send(config, EventType.FAILED)
    assert implicit_tls.authenticator is not None and implicit_tls.authenticator.logins == [USER]
    [message] = implicit_tls.handler.messages()
    assert message["Subject"] == "[backupctl] backup_failed — project-y"
    assert message.get_content().replace("\r\n", "\n") == EVENTS[EventType.FAILED].text + "\n"


def test_user_defaults_to_the_from_address(
    starttls: SmtpServer, certificate: ServerCertificate
) -> None:
    config = env_config(
        starttls, smtp_secure="yes", password=PASSWORD, ca_file=str(certificate.ca_file)
    )
    assert "user" not in config
    send(config)
    assert starttls.authenticator is not None and starttls.authenticator.logins == [USER]


# --- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize("wrong", [WRONG, WRONG_UTF8])
def test_wrong_password_is_refused_without_the_password(
    wrong: str, starttls: SmtpServer, certificate: ServerCertificate
) -> None:
    config = env_config(
        starttls, smtp_secure="true", password=wrong, ca_file=str(certificate.ca_file)
    )
    error = refused(lambda: send(config))
    assert str(error).startswith(f"smtp 127.0.0.1:{starttls.port}: login as {USER} refused (535")
    assert not error.retryable
    assert starttls.handler.envelopes == []


def test_wrong_password_over_implicit_tls(
    implicit_tls: SmtpServer, certificate: ServerCertificate
) -> None:
    config = env_config(
        implicit_tls, smtp_secure="true", password=WRONG, ca_file=str(certificate.ca_file)
    )
    error = refused(lambda: send(config))
    assert "login as backups@example.com refused" in str(error)


@pytest.mark.parametrize("mode", ["starttls", "implicit_tls"])
def test_untrusted_certificate_is_refused(mode: str, request: pytest.FixtureRequest) -> None:
    server: SmtpServer = request.getfixturevalue(mode)
    config = env_config(server, smtp_secure="true", password=PASSWORD)  # system CAs only
    error = refused(lambda: send(config))
    assert "TLS certificate not trusted (unable to get local issuer certificate)" in str(error)
    assert not error.retryable
    assert server.handler.envelopes == []
    assert server.authenticator is not None and server.authenticator.logins == []


def test_secure_never_downgrades_to_plain(plain: SmtpServer) -> None:
    error = refused(lambda: send(env_config(plain, smtp_secure="true", password=PASSWORD)))
    assert "STARTTLS extension not supported by server" in str(error)
    assert plain.handler.envelopes == []


def test_server_down() -> None:
    config = {
        "smtp_host": "127.0.0.1",
        "smtp_port": free_port(),
        "smtp_secure": False,
        "to": "ops@example.com",
        "from": USER,
        "password": PASSWORD,
    }
    error = refused(lambda: send(config))
    assert str(error) == f"smtp 127.0.0.1:{config['smtp_port']}: connection refused"
    assert error.connectivity and error.retryable


def test_server_that_never_answers_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "TIMEOUT", 0.3)
    with hung_listener() as port:
        config = {
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_secure": False,
            "to": "ops@example.com",
            "from": USER,
        }
        began = time.monotonic()
        error = refused(lambda: send(config))
    assert time.monotonic() - began < 1.2
    assert str(error) == f"smtp 127.0.0.1:{port}: timed out"


def test_bad_config_at_send_time_is_not_retried() -> None:
    error = refused(lambda: send({"smtp_port": "x", "password": PASSWORD}))
    assert "notification.config.smtp_host: required key missing" in str(error)
    assert not error.retryable


def test_ignores_other_channels(plain: SmtpServer) -> None:
    other = NotificationSettings(type="slack", config=env_config(plain))
    plugin.backupctl_notify(event=EVENTS[EventType.STARTED], notification=other)
    plugin.backupctl_notify(event=EVENTS[EventType.STARTED], notification=None)
    assert plain.handler.envelopes == []


# --- configuration --------------------------------------------------------------------------

KEY = "notification.config"
VALID = {
    "smtp_host": "smtp.example.com",
    "smtp_port": "587",
    "smtp_secure": "true",
    "to": "ops@example.com,oncall@example.com",
    "from": "Backups <backups@example.com>",
    "password": "x",
}


@pytest.mark.parametrize(
    ("changes", "problems"),
    [
        ({}, []),
        ({"smtp_port": 465, "smtp_secure": True, "to": ["a@example.com"]}, []),
        ({"smtp_port": None, "smtp_secure": None, "password": None}, []),
        ({"user": "someone-else", "password": Secret("x")}, []),
        ({"smtp_secure": "OFF", "smtp_port": " 25 "}, []),
        ({"smtp_host": None}, [f"{KEY}.smtp_host: required key missing"]),
        ({"smtp_port": "abc"}, [f"{KEY}.smtp_port: expected an integer, got 'abc'"]),
        ({"smtp_port": 70000}, [f"{KEY}.smtp_port: must be a port number (1-65535), got 70000"]),
        ({"smtp_port": True}, [f"{KEY}.smtp_port: expected an integer, got True"]),
        ({"smtp_secure": "maybe"}, [f"{KEY}.smtp_secure: expected true or false, got 'maybe'"]),
        ({"from": None}, [f"{KEY}.from: required key missing"]),
        ({"from": "backups"}, [f"{KEY}.from: is not an email address: 'backups'"]),
        ({"to": "ops@example.com, nobody"}, [f"{KEY}.to: is not an email address: 'nobody'"]),
        ({"to": " , "}, [f"{KEY}.to: one address or a comma-separated list is required"]),
        (
            {"to": "ops@example.com\r\nBcc: evil@example.com"},
            [f"{KEY}.to: is not an email address: 'ops@example.com\\r\\nBcc: evil@example.com'"],
        ),
        ({"ca_file": "/no/such/ca.pem"}, [f"{KEY}.ca_file: file not found: /no/such/ca.pem"]),
        ({"smtp_prot": "25"}, [f"{KEY}: unknown key(s): smtp_prot (did you mean smtp_port?)"]),
        ({"sender": "a@b.c"}, [f"{KEY}: unknown key(s): sender"]),
        ({"to": ["a@example.com", {"n": 1}]}, [f"{KEY}.to: expected a string, got {{'n': 1}}"]),
        ({"smtp_port": "", "smtp_secure": ""}, []),
    ],
)
def test_validate_config(changes: dict[str, Any], problems: list[str]) -> None:
    config = {k: v for k, v in {**VALID, **changes}.items() if v is not None}
    assert plugin.backupctl_validate_config(project=project(config)) == problems


def test_validate_config_reports_every_problem_and_never_the_password() -> None:
    found = plugin.backupctl_validate_config(project=project({"password": PASSWORD}))
    assert [p.split()[0] for p in found] == [
        "notification.config.smtp_host:",
        "notification.config.from:",
        "notification.config.to:",
    ]
    assert all(PASSWORD not in p for p in found)


def test_validate_config_ignores_other_channels() -> None:
    assert plugin.backupctl_validate_config(project=project(None)) == []
    slack = ProjectSettings(
        name="p",
        restic=ResticSettings(repository_path="/r"),
        notification=NotificationSettings(type="slack", config={}),
    )
    assert plugin.backupctl_validate_config(project=slack) == []


def test_defaults_and_coercion(tmp_path: Path) -> None:
    secure, _ = plugin.read_config({"smtp_host": "h", "to": "a@b.c", "from": "Me <me@b.c>"})
    assert secure is not None
    assert (secure.port, secure.secure, secure.user, secure.password) == (587, True, "me@b.c", None)
    clear, _ = plugin.read_config({**VALID, "smtp_secure": "false", "smtp_port": None})
    assert clear is not None and (clear.port, clear.secure) == (25, False)
    typed, _ = plugin.read_config({**VALID, "smtp_port": "465", "password": 12345})
    assert typed is not None and (typed.port, typed.password) == (465, "12345")
