"""Loading projects.yml + .env: every error names the file and key path."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from backupctl_core.config.loader import load_config
from backupctl_core.config.render import project_view
from backupctl_core.domain.errors import ConfigError
from backupctl_core.domain.settings import MASK, RetentionSettings, Secret
from tests.support.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def minimal(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "app",
        "database": {"type": "postgres", "name": "db", "password": "${DB_PASSWORD}"},
        "restic": {"repository_path": "/r"},
    }
    data.update(overrides)
    return data


def error_of(ws: Workspace) -> str:
    with pytest.raises(ConfigError) as caught:
        ws.load()
    assert caught.value.exit_code == 3
    return caught.value.message


def test_variables_resolve_from_env_file_then_process_env(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.write_env(DB_PASSWORD="from-file")
    monkeypatch.setenv("DB_PASSWORD", "from-process")
    monkeypatch.setenv("OTHER", "x")
    ws.write_config([minimal(cron="0 2 * * *", hooks={"pre_backup": "echo ${OTHER}"})])
    project = ws.load().project("app")
    assert project.database is not None
    assert project.database.password == Secret("from-file")
    assert project.hooks.pre_backup == "echo x"


def test_missing_variable_names_variable_key_and_file(ws: Workspace) -> None:
    ws.write_config([minimal()])
    message = error_of(ws)
    assert message == (
        f"{ws.config_path}: projects[app].database.password: ${{DB_PASSWORD}}"
        f" is not set in {ws.env_path} or the environment"
    )


def test_unknown_key_is_an_error_with_its_path(ws: Workspace) -> None:
    ws.write_env(DB_PASSWORD="pw")
    ws.write_config([minimal(), minimal(name="b", database={"type": "postgres", "pasword": "x"})])
    assert error_of(ws) == (
        f"{ws.config_path}: projects[b].database: unknown key(s): pasword (did you mean password?)"
    )


def test_unknown_keys_get_a_suggestion_only_when_one_is_close(ws: Workspace) -> None:
    ws.write_config([minimal(database=None, retension={"keep_daily": 3}, zzz=1)])
    assert error_of(ws) == (
        f"{ws.config_path}: projects[app]: unknown key(s): retension (did you mean retention?), zzz"
    )


def test_wrong_type_names_the_key_and_value(ws: Workspace) -> None:
    ws.write_env(DB_PASSWORD="pw")
    ws.write_config([minimal(retention={"keep_daily": "lots"}, enabled="perhaps")])
    message = error_of(ws)
    assert (
        f"{ws.config_path}: projects[app].retention.keep_daily: expected an integer, got 'lots'"
        in message
    )
    assert (
        f"{ws.config_path}: projects[app].enabled: expected true or false, got 'perhaps'" in message
    )


def test_required_keys_and_literals(ws: Workspace) -> None:
    ws.write_config(
        [{"name": "a", "restic": {"repository_path": "/r", "snapshot_mode": "both"}}, {"name": "b"}]
    )
    message = error_of(ws)
    assert "projects[a].restic.snapshot_mode: both is not one of 'combined', 'separate'" in message
    # no restic block with the default storage (restic): its repository is required
    assert "projects[b].restic.repository_path: required (storage type restic)" in message


def test_include_roles_belongs_to_postgres_only(ws: Workspace) -> None:
    mysql = {"type": "mysql", "name": "db", "include_roles": True}
    ws.write_config([minimal(database=mysql)])
    assert error_of(ws) == (
        f"{ws.config_path}: projects[app].database.include_roles: only for type postgres"
    )
    ws.write_config([minimal(database={"type": "postgres", "name": "db", "include_roles": "yes"})])
    database = ws.load().project("app").database
    assert database is not None and database.include_roles is True


def test_pg_dump_path_belongs_to_postgres_only(ws: Workspace) -> None:
    ws.write_env(DB_PASSWORD="pw")
    mysql = {"type": "mysql", "name": "db", "pg_dump_path": "/usr/bin/pg_dump"}
    ws.write_config([minimal(database=mysql)])
    assert error_of(ws) == (
        f"{ws.config_path}: projects[app].database.pg_dump_path: only for type postgres"
    )
    postgres = {"type": "Postgres", "name": "db", "pg_dump_path": "/usr/bin/pg_dump"}
    ws.write_config([minimal(database=postgres)])
    database = ws.load().project("app").database
    assert database is not None and database.pg_dump_path == "/usr/bin/pg_dump"


def test_checks_beyond_types(ws: Workspace) -> None:
    ws.write_env(DB_PASSWORD="pw")
    ws.write_config(
        [
            minimal(name="Bad Name", cron="61 * * * *"),
            minimal(name="dup", retention={"keep_daily": -1}),
            minimal(name="dup", encryption={"enabled": True}),
        ]
    )
    message = error_of(ws)
    # named by the project, by its index only when the name is unusable
    assert "projects[0].name: 'Bad Name' must match" in message
    assert "projects[0].cron: '61 * * * *' is not a valid cron expression" in message
    assert "projects[dup].retention.keep_daily: must be between 0 and 1000000, got -1" in message
    assert "projects[dup].name: duplicate project name 'dup'" in message
    assert "projects[dup].encryption.recipient: required when encryption is enabled" in message


def test_every_problem_of_every_project_is_reported_at_once(ws: Workspace) -> None:
    """A bad snapshot_mode hid a bad project name and a bad cron; a typo hid the rest."""
    ws.write_env(DB_PASSWORD="pw")
    ws.write_config(
        [
            minimal(name="shop", restic={"repository_path": "/r", "snapshot_mode": "both"}),
            minimal(name="Bad Name", cron="61 * * * *"),
            minimal(name="blog", retension={"keep_daily": 3}),
        ]
    )
    lines = [line.split(": ", 1)[1] for line in error_of(ws).splitlines()]
    assert lines == [
        "projects[shop].restic.snapshot_mode: both is not one of 'combined', 'separate'",
        "projects[blog]: unknown key(s): retension (did you mean retention?)",
        "projects[1].name: 'Bad Name' must match [a-z0-9][a-z0-9_-]*",
        "projects[1].cron: '61 * * * *' is not a valid cron expression",
    ]


def test_invalid_yaml_and_missing_file(ws: Workspace) -> None:
    ws.config_path.write_text("projects:\n  - name: [unclosed\n")
    assert "invalid YAML (line" in error_of(ws)
    ws.config_path.unlink()
    assert error_of(ws) == f"{ws.config_path}: config file not found"
    ws.config_path.write_text("- just a list\n")
    assert "expected a mapping with a 'projects' list" in error_of(ws)


def test_explicit_env_file_must_exist(ws: Workspace) -> None:
    ws.write_config([])
    with pytest.raises(ConfigError, match="env file not found"):
        load_config(ws.config_path, ws.root / "missing.env", env_required=True)
    assert load_config(ws.config_path, ws.root / "missing.env").projects == []


def test_bad_env_values_name_the_variable(ws: Workspace) -> None:
    ws.write_config([])
    ws.write_env(BACKUP_RETRY_COUNT="three")
    assert error_of(ws) == f"{ws.env_path}: BACKUP_RETRY_COUNT: expected an integer, got 'three'"


def test_env_defaults_fill_absent_blocks(ws: Workspace) -> None:
    ws.write_env(
        DB_PASSWORD="pw",
        RESTIC_PASSWORD="repo-secret",
        ENCRYPTION_ENABLED="true",
        GPG_RECIPIENT="ops@example.com",
        NOTIFICATION_TYPE="slack",
        SLACK_WEBHOOK_URL="https://hooks.example/T/B/token",
    )
    ws.write_config(
        [minimal(), minimal(name="own", restic={"repository_path": "/r", "password": "mine"})]
    )
    config = ws.load()
    app = config.project("app")
    assert app.restic.password == Secret("repo-secret")
    assert app.encryption is not None and app.encryption.enabled
    assert app.encryption.recipient == "ops@example.com"
    assert app.notification is not None and app.notification.type == "slack"
    assert app.notification.config == {"webhook_url": "https://hooks.example/T/B/token"}
    assert config.project("own").restic.password == Secret("mine")  # project YAML wins


def test_defaults_without_env(ws: Workspace) -> None:
    ws.write_env(DB_PASSWORD="pw")
    ws.write_config([minimal()])
    config = ws.load()
    project = config.project("app")
    assert project.enabled and project.compression.enabled and project.verification.enabled
    assert project.restic.snapshot_mode == "combined"
    assert project.notification is not None and project.notification.type == "none"
    assert config.settings.retry_count == 3
    assert config.settings.audit_db.sqlite_path == ws.base_dir / ".audit" / "audit.db"
    assert config.settings.ssh.port == 23


def test_unknown_project_lists_known_ones(ws: Workspace) -> None:
    ws.write_env(DB_PASSWORD="pw")
    ws.write_config([minimal(), minimal(name="other")])
    with pytest.raises(ConfigError, match=r"unknown project 'nope' \(known projects: app, other\)"):
        ws.load().project("nope")


def test_config_show_masks_every_secret(ws: Workspace) -> None:
    ws.write_env(DB_PASSWORD="db-secret", RESTIC_PASSWORD="repo-secret")
    ws.write_config(
        [
            minimal(
                notification={
                    "type": "webhook",
                    "config": {"url": "https://h/x?token=t0k", "timeout": 5},
                }
            )
        ]
    )
    view = project_view(ws.load().project("app"))
    text = repr(view)
    for secret in ("db-secret", "repo-secret", "t0k"):
        assert secret not in text
    assert view["database"]["password"] == MASK
    assert view["notification"]["config"] == {"url": MASK, "timeout": 5}


def test_example_config_documents_every_key(tmp_path: Path) -> None:
    """The shipped examples load, and name every field of the settings classes."""
    import attrs

    from backupctl_core.domain import settings as s

    config = load_config(REPO / "config/projects.example.yml", REPO / "config/.env.example")
    assert config.names == ["locaboo", "project-files"]
    example = (REPO / "config/projects.example.yml").read_text()
    for cls in (s.ProjectSettings, s.DatabaseSettings, s.ResticSettings, s.RetentionSettings,
                s.EncryptionSettings, s.HookSettings, s.NotificationSettings,
                s.MonitorSettings, s.DrillSettings, s.DrillDatabaseSettings):  # fmt: skip
        for field in attrs.fields(cls):
            assert f"{field.name}:" in example, f"{cls.__name__}.{field.name} undocumented"
    env_example = (REPO / "config/.env.example").read_text()
    env_source = (REPO / "backupctl_core/config/env.py").read_text()
    import re

    # XDG_DATA_HOME belongs to the user's session (freedesktop), not to .env: env.py
    # reads it from the process environment only, as the default base folder's root.
    session_variables = {"XDG_DATA_HOME"}
    for variable in set(re.findall(r'\("([A-Z][A-Z0-9_]+)"', env_source)) - session_variables:
        assert f"{variable}=" in env_example, f"{variable} missing from .env.example"


def _alias_bomb(levels: int) -> str:
    """A ~700-byte file whose nested aliases expand to 9**levels values."""
    nine = ", ".join(['"lol"'] * 9)
    lines = [
        "projects:",
        "  - name: app",
        "    restic: {repository_path: /r}",
        f"    x0: &a0 [{nine}]",
    ]
    for i in range(1, levels):
        lines.append(f"    x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_it_is_expanded(ws: Workspace) -> None:
    ws.config_path.write_text(_alias_bomb(12))  # 9**12 values once expanded
    assert len(ws.config_path.read_bytes()) < 1024
    assert "YAML aliases expand to more than 100000 values" in error_of(ws)


def test_a_recursive_alias_is_refused(ws: Workspace) -> None:
    ws.config_path.write_text("projects: &p\n  - *p\n")
    assert "a YAML alias refers to itself" in error_of(ws)


def test_an_oversized_config_file_is_refused(ws: Workspace) -> None:
    ws.config_path.write_text("projects: []\n" + "#" * (1024 * 1024) + "\n")
    assert "larger than 1024 KiB" in error_of(ws)


def test_anchors_and_merge_keys_still_work(ws: Workspace) -> None:
    ws.config_path.write_text(
        "projects:\n"
        "  - &base\n"
        "    name: app\n"
        "    restic: {repository_path: /r}\n"
        "    retention: &keep {keep_daily: 3}\n"
        "  - <<: *base\n"
        "    name: other\n"
        "    retention: *keep\n"
    )
    config = ws.load()
    assert [p.retention.keep_daily for p in config.projects] == [3, 3]
    assert config.project("other").restic.repository_path == "/r"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TIMEZONE", "Mars/Olympus", "TIMEZONE: unknown time zone 'Mars/Olympus'"),
        ("APP_PORT", "99999", "APP_PORT: must be between 1 and 65535, got 99999"),
        ("AUDIT_DB_PORT", "0", "AUDIT_DB_PORT: must be between 1 and 65535, got 0"),
        ("APP_HOST", "not a host!", "APP_HOST: 'not a host!' is not a host name or IP address"),
        ("DAILY_SUMMARY_CRON", "every morning", "DAILY_SUMMARY_CRON: 'every morning' is not"),
        ("DAILY_SUMMARY_CRON", "0 8 * * * *", "DAILY_SUMMARY_CRON: '0 8 * * * *' is not"),
        ("LOG_LEVEL", "chatty", "LOG_LEVEL: 'CHATTY' is not one of DEBUG, INFO"),
        ("LOG_MAX_SIZE", "lots", "LOG_MAX_SIZE: expected a size like 10m, got 'lots'"),
        ("LOG_MAX_SIZE", "0", "LOG_MAX_SIZE: must be more than 0"),
        ("LOG_MAX_FILES", "0", "LOG_MAX_FILES: must be between 1 and 1000, got 0"),
        ("BACKUP_RETRY_COUNT", "-1", "BACKUP_RETRY_COUNT: must be between 0 and 100, got -1"),
        (
            "HETZNER_SSH_SHARED_CONNECTION",
            "maybe",
            "HETZNER_SSH_SHARED_CONNECTION: expected true or",
        ),
    ],
)
def test_global_settings_that_would_fail_later_are_config_errors(
    ws: Workspace, variable: str, value: str, message: str
) -> None:
    ws.write_env(**{variable: value})
    ws.write_config([minimal(database=None)])
    assert f"{ws.env_path}: {message}" in error_of(ws)


@pytest.mark.parametrize(
    ("database", "encryption", "message"),
    [
        ({"type": "mysql", "jobs": 2}, False, "database.jobs: only for type postgres"),
        ({"type": "postgres", "jobs": 0}, False, "database.jobs: must be between 1 and 64, got 0"),
        ({"type": "postgres", "jobs": 2}, True, "database.jobs: a parallel dump is a folder"),
    ],
)
def test_database_jobs_problems_are_config_errors(
    ws: Workspace, database: dict[str, object], encryption: bool, message: str
) -> None:
    block = {"name": "db", "password": "x", "host": "h", "user": "u", **database}
    extra = {"encryption": {"enabled": True, "recipient": "ops@example.com"}} if encryption else {}
    ws.write_config([minimal(database=block, **extra)])
    assert message in error_of(ws)


def test_database_jobs_of_one_or_more_load(ws: Workspace) -> None:
    block = {"type": "postgres", "name": "db", "password": "x", "host": "h", "user": "u"}
    ws.write_config([minimal(database={**block, "jobs": 4})])
    project = ws.load().project("app")
    assert project.database is not None and project.database.jobs == 4


def test_the_shared_ssh_connection_is_on_unless_turned_off(ws: Workspace) -> None:
    ws.write_config([minimal(database=None)])
    assert ws.load().settings.ssh.shared_connection is True
    ws.write_env(HETZNER_SSH_SHARED_CONNECTION="false")
    assert ws.load().settings.ssh.shared_connection is False


def test_every_bad_global_setting_is_reported_at_once(ws: Workspace) -> None:
    ws.write_env(TIMEZONE="Nowhere", APP_PORT="70000", HETZNER_SSH_PORT="0")
    ws.write_config([minimal(database=None)])
    lines = error_of(ws).splitlines()
    assert [line.split(": ")[1] for line in lines] == ["TIMEZONE", "APP_PORT", "HETZNER_SSH_PORT"]


def test_good_hosts_and_the_default_summary_cron_pass(ws: Workspace) -> None:
    ws.write_env(APP_HOST="0.0.0.0", AUDIT_DB_HOST="db.example.com", HETZNER_SSH_HOST="::1")
    ws.write_config([minimal(database=None)])
    assert ws.load().settings.app_host == "0.0.0.0"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("shop\n", "must match [a-z0-9][a-z0-9_-]*"),  # "$" used to accept a final newline
        ("a" * 101, "longer than 100 characters"),
    ],
)
def test_project_names_that_would_collide_or_overflow_are_refused(
    ws: Workspace, name: str, message: str
) -> None:
    ws.write_config([minimal(name=name, database=None)])
    assert message in error_of(ws)


def test_the_example_files_work_as_copied_for_a_local_set_up(tmp_path: Path) -> None:
    """README: copy both examples, then run. The .env example used to name a storage
    box (validate failed on its SSH key) and GPG_KEYS_DIR=/app/gpg-keys (recover exit 1)."""
    import shutil
    import subprocess
    import sys

    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config/projects.example.yml", tmp_path / "config/projects.yml")
    shutil.copy(REPO / "config/.env.example", tmp_path / ".env")
    backupctl = str(Path(sys.executable).with_name("backupctl"))
    for command in (["config", "validate"], ["db", "migrate"], ["recover"]):
        done = subprocess.run([backupctl, *command], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert (tmp_path / "data" / "backups" / ".audit" / "audit.db").exists()


def test_retention_keep_last_hourly_within_are_checked(ws: Workspace) -> None:
    ws.write_config([minimal(database=None, retention={"keep_within": "2 days"})])
    assert "retention.keep_within: '2 days' is not a restic duration" in error_of(ws)
    ws.write_config([minimal(database=None, retention={"keep_last": 10**12})])
    assert "retention.keep_last: must be between 0 and 1000000" in error_of(ws)
    ws.write_config(
        [
            minimal(
                database=None,
                retention={"keep_last": 3, "keep_hourly": 24, "keep_within": "1y5m7d2h"},
            )
        ]
    )
    retention = ws.load().project("app").retention
    assert (retention.keep_last, retention.keep_hourly, retention.keep_within) == (
        3,
        24,
        "1y5m7d2h",
    )


@pytest.mark.parametrize(
    ("value", "every"),
    [("7d", timedelta(days=7)), ("12h", timedelta(hours=12)), ("1w3d", timedelta(days=10)),
     (0, timedelta(0)), ("0", timedelta(0)), ("365d", timedelta(days=365))],
)  # fmt: skip
def test_prune_interval_is_a_duration(ws: Workspace, value: object, every: timedelta) -> None:
    ws.write_config([minimal(database=None, retention={"prune_interval": value})])
    assert ws.load().project("app").retention.prune_every == every


def test_prune_interval_defaults_to_a_week() -> None:
    assert RetentionSettings().prune_every == timedelta(days=7)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("7", "'7' is not a duration (weeks, days, hours: e.g. 7d, 12h, 1w3d; 0 prunes on"),
        ("7m", "'7m' is not a duration"),  # months or minutes? neither
        ("-1d", "'-1d' is not a duration"),
        ("", "'' is not a duration"),
        (1.5, "'1.5' is not a duration"),
        ("366d", "'366d' is longer than 365d"),
        ("99999999999999w", "'99999999999999w' is longer than 365d"),
        ([], "expected a string, got []"),
    ],
)
def test_a_bad_prune_interval_is_one_line_naming_the_key(
    ws: Workspace, value: object, problem: str
) -> None:
    ws.write_config([minimal(database=None, retention={"prune_interval": value})])
    message = error_of(ws)
    assert f"projects[app].retention.prune_interval: {problem}" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("cron", "retention", "warned"),
    [
        ("0 */6 * * *", {}, "runs up to 4 times a day"),  # keep_daily alone: same-day losses
        ("0 2 * * *", {}, None),  # once a day: keep_daily keeps it
        ("0 */6 * * *", {"keep_last": 4}, None),
        ("0 */6 * * *", {"keep_within": "1d"}, None),
        ("0 */6 * * *", {"keep_hourly": 24}, None),
        ("*/30 9-17 * * 1-5", {"keep_last": 4}, "runs up to 18 times a day"),
        ("0 */6 * * *", {"keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}, None),
    ],
)
def test_validate_warns_when_same_day_snapshots_would_be_pruned(
    ws: Workspace, cron: str, retention: dict[str, object], warned: str | None
) -> None:
    ws.write_config([minimal(database=None, cron=cron, retention=retention)])
    warnings = ws.load().warnings()
    if warned is None:
        assert warnings == []
    else:
        (warning,) = warnings
        assert warning.startswith("projects[app].retention: cron") and warned in warning


def test_the_original_tool_s_config_and_env_validate_unchanged(tmp_path: Path) -> None:
    """docker_network, database.dump_timeout_minutes, `type: mongodb`, `Postgres`,
    `SLACK` and `timeout_minutes: 0` made every command exit 3."""
    import subprocess
    import sys

    original = REPO / "tests/data/original"
    (tmp_path / "config").mkdir()
    (tmp_path / "config/projects.yml").write_text((original / "projects.yml").read_text())
    key = tmp_path / "id_ed25519"
    key.write_text("not used by validate")
    env = (original / "env").read_text().replace("/home/node/.ssh/id_ed25519", str(key))
    (tmp_path / ".env").write_text(env + "EMAIL_PASSWORD=mail-secret\n")
    backupctl = str(Path(sys.executable).with_name("backupctl"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([backupctl, *args], cwd=tmp_path, capture_output=True, text=True)

    validate = run("config", "validate")
    assert validate.returncode == 0, validate.stderr
    assert "config OK: 4 project(s): vinsware, project-x, analytics, static-assets" in (
        validate.stdout
    )
    assert "info: config/projects.yml: projects[vinsware].docker_network:" in validate.stderr
    # its example leaves UPTIME_KUMA_BASE_URL commented out: said, not fatal
    assert "projects[vinsware].monitor.config.base_url is required" in validate.stderr
    shown = run("config", "show", "vinsware").stdout
    for key_line in ("docker_network: vinsware_vinsware-network", "dump_timeout_minutes: 90",
                     "type: postgres", "type: slack", "timeout_minutes: 30"):  # fmt: skip
        assert key_line in shown
    assert "type: mongo\n" in run("config", "show", "analytics").stdout
    assert "timeout_minutes:\n" in run("config", "show", "project-x").stdout  # 0: no warning
    assert "secret" not in shown


def test_without_backup_base_dir_the_user_s_data_folder_is_used(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default was /data/backups: a normal user could not create it."""
    ws.env.pop("BACKUP_BASE_DIR")
    ws.write_env()
    ws.write_config([minimal(database=None)])
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert ws.load().settings.backup_base_dir == tmp_path / "xdg" / "backupctl"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ws.load().settings.backup_base_dir == tmp_path / "home/.local/share/backupctl"


def test_an_audit_folder_that_cannot_be_created_names_the_settings(
    ws: Workspace, tmp_path: Path
) -> None:
    """It was `unexpected PermissionError ... '/data'`, naming no setting."""
    import subprocess
    import sys

    (tmp_path / "a-file").write_text("x")
    ws.write_env(AUDIT_DB_SQLITE_PATH=str(tmp_path / "a-file" / "audit" / "audit.db"))
    ws.write_config([minimal(database=None)])
    backupctl = str(Path(sys.executable).with_name("backupctl"))
    done = subprocess.run([backupctl, *ws.cli_args(), "db", "migrate"], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"error: cannot create the audit store's folder {tmp_path / 'a-file' / 'audit'}"
    )
    assert "set BACKUP_BASE_DIR or AUDIT_DB_SQLITE_PATH in .env" in done.stderr
    assert "unexpected" not in done.stderr
