"""What a command imports: start-up time is paid on every call (bench/README.md, start-up).

Each command runs in a fresh interpreter (this test process has everything loaded)
and reports the modules it ended with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backupctl_core.cli.main import COMMANDS, cli
from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace

_REPORT_MODULES = """
import json, sys
from backupctl_core.cli.main import cli
code = cli.main(sys.argv[2:], prog_name="backupctl", standalone_mode=False)
with open(sys.argv[1], "w") as report:
    json.dump({"code": code, "modules": sorted(sys.modules)}, report)
"""

# Heavy stacks only some configurations need: the PostgreSQL driver (SQLite audit
# store here), HTTP and SMTP (notifiers that send nothing here), cron parsing (no
# schedules here), the migration runner (only `db migrate` / `db status`), Prometheus
# metrics (only a scrape of `serve`'s /metrics).
NOT_NEEDED = ("psycopg", "httpx", "smtplib", "ssl", "croniter", "dateutil", "playhouse.migrations",
              "prometheus_client")  # fmt: skip


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path)
    workspace.write_env(RESTIC_PASSWORD="repo-pw-123", SLACK_URL="https://hooks.invalid/x")
    make_sqlite_db(tmp_path / "shop.sqlite")
    slack = {"type": "slack", "config": {"webhook_url": "${SLACK_URL}"}}
    mail = {
        "type": "email",
        "config": {"smtp_host": "mail.invalid", "from": "b@example.com", "to": "o@example.com"},
    }
    workspace.write_config(
        [
            sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo", notification=slack),
            sqlite_project("blog", tmp_path / "shop.sqlite", tmp_path / "repo2", notification=mail),
        ]
    )
    return workspace


def modules_after(ws: Workspace, tmp_path: Path, *args: str) -> set[str]:
    report = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _REPORT_MODULES, str(report), *ws.cli_args(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(report.read_text())
    assert result["code"] == 0, done.stderr
    return {name.split(".")[0] for name in result["modules"]} | set(result["modules"])


@pytest.mark.parametrize("command", [["status"], ["plugins"], ["config", "validate"]])
def test_commands_load_no_stack_they_do_not_use(
    ws: Workspace, tmp_path: Path, command: list[str]
) -> None:
    ws.store().close()  # migrated, so that status has a store to read
    loaded = modules_after(ws, tmp_path, *command)
    assert sorted(loaded & set(NOT_NEEDED)) == []


def test_a_command_imports_only_its_own_module(ws: Workspace, tmp_path: Path) -> None:
    loaded = modules_after(ws, tmp_path, "config", "validate")
    command_modules = {f"backupctl_core.cli.{target.split(':')[0]}" for target in COMMANDS.values()}
    assert sorted(loaded & command_modules) == ["backupctl_core.cli.config_cmd"]


def test_a_schedule_loads_croniter_to_check_it(ws: Workspace, tmp_path: Path) -> None:
    project = sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo", cron="0 2 * * *")
    ws.write_config([project])
    assert "croniter" in modules_after(ws, tmp_path, "config", "validate")


def test_every_listed_command_resolves() -> None:
    import click

    context = click.Context(cli)
    for name in cli.list_commands(context):
        command = cli.get_command(context, name)
        assert command is not None and command.name == name
    assert cli.get_command(context, "no-such-command") is None


def test_status_loads_no_plugin(ws: Workspace, tmp_path: Path) -> None:
    ws.store().close()
    loaded = modules_after(ws, tmp_path, "status")
    # (pluggy itself is loaded: backupctl_core exports its hookimpl marker)
    plugins = {"backupctl_core.plugins", "backupctl_slack", "backupctl_email", "backupctl_sqlite"}
    assert sorted(loaded & plugins) == []


def test_a_command_imports_the_plugins_its_config_names_and_plugins_lists_all(
    ws: Workspace, tmp_path: Path
) -> None:
    """The config names sqlite, restic, slack and email: no other plugin is imported
    to validate it; ``backupctl plugins`` imports every one."""
    others = {"backupctl_postgres", "backupctl_mysql", "backupctl_mongo", "backupctl_borg",
              "backupctl_webhook", "backupctl_healthchecks", "backupctl_uptime_kuma"}  # fmt: skip
    named = {"backupctl_sqlite", "backupctl_restic", "backupctl_slack", "backupctl_email"}
    loaded = modules_after(ws, tmp_path, "config", "validate")
    assert named <= loaded and sorted(loaded & others) == []
    assert others <= modules_after(ws, tmp_path, "plugins")


def test_a_type_no_loaded_plugin_provides_loads_the_rest() -> None:
    from backupctl_core.plugins import get_plugin_manager

    registry = get_plugin_manager(wanted={"sqlite", "restic"})
    assert {info.name for info in registry._infos} == {"sqlite", "restic", "gpg"}
    assert registry.provider("database", "sqlite") is not None and registry._pending
    assert registry.provider("database", "postgres") is not None and not registry._pending
