"""The prune policy on a real restic repository (SQLite dumper, local repository):
``restic forget`` on every run; ``restic prune`` only when forget removed something
(or an earlier run's forgotten snapshots still wait) and the last prune is older than
``retention.prune_interval``; ``backupctl prune`` always prunes. Which restic commands
ran is read from a wrapper around restic; the run's row and success message must say
the same."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from datetime import UTC, timedelta
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from backupctl_core.audit.models import BackupLog
from backupctl_core.cli.main import cli
from backupctl_core.domain.events import format_time
from backupctl_core.domain.records import RunRecord
from backupctl_core.plugins import get_plugin_manager
from backupctl_core.runtime.runner import run_project
from tests.support.recording_plugin import recorder
from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace

PASSWORD = "prune-policy-pw-5Tq"
# Runs on one day: keep_daily 1 keeps the newest, so each run's forget removes the one before.
SAME_DAY = {"keep_daily": 1, "keep_weekly": 0, "keep_monthly": 0}
WEEK = timedelta(days=7)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised repository (init takes seconds); each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "repo"
    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD, "RESTIC_REPOSITORY": str(path)}
    subprocess.run(["restic", "init", "--no-cache"], env=env, check=True, capture_output=True)
    return path


# Logs each restic command; a prune riding on forget (``forget --prune``, which restic
# runs when that forget removed snapshots) is logged as "prune" too.
WRAPPER = """#!/bin/sh
echo "$1" >> {log}
if [ "$1" = forget ] && echo " $* " | grep -q -- " --prune "; then
    out=$({real} "$@"); code=$?
    printf '%s\\n' "$out"
    case "$out" in *'"remove":[{{'*) echo prune >> {log};; esac
    exit $code
fi
exec {real} "$@"
"""


@pytest.fixture
def ws(tmp_path: Path, template: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    shutil.copytree(template, tmp_path / "repo")
    make_sqlite_db(tmp_path / "shop.sqlite")
    workspace = Workspace(tmp_path)
    workspace.write_env(RESTIC_PASSWORD=PASSWORD, NOTIFICATION_TYPE="recording")
    real = shutil.which("restic")
    wrapper = tmp_path / "bin" / "restic"
    wrapper.parent.mkdir()
    wrapper.write_text(WRAPPER.format(log=tmp_path / "restic.log", real=real))
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    configure(workspace)
    return workspace


def configure(ws: Workspace, **retention: object) -> None:
    ws.write_config(
        [sqlite_project("shop", ws.root / "shop.sqlite", ws.root / "repo",
                        retention={**SAME_DAY, **retention})]
    )  # fmt: skip


def restic_commands(ws: Workspace) -> list[str]:
    """The restic commands run since the last call."""
    log = ws.root / "restic.log"
    commands = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return commands


def run(ws: Workspace) -> tuple[RunRecord, list[str], str]:
    """One ``backupctl run``: its row, the restic commands, the success message's
    prune line."""
    config = ws.load()
    real = [ep for ep in entry_points(group="backupctl") if ep.name in ("sqlite", "restic")]
    notify = EntryPoint("recording-notify", "tests.support.recording_plugin:notifier", "backupctl")
    registry = get_plugin_manager([*real, notify], builtins=())
    store = ws.store()
    recorder.reset()
    restic_commands(ws)
    outcome = run_project(config, config.project("shop"), registry, store)
    assert outcome.ok, outcome.record.error_message
    (row,) = store.history("shop", 1)
    store.close()
    (success,) = [e for e in recorder.events if e.type.value == "backup_success"]
    (line,) = [line for line in success.text.splitlines() if line.startswith("Pruned: ")]
    return row, restic_commands(ws), line.split(" | ")[0]


def local(moment: object) -> str:
    assert moment is not None
    return format_time(moment.astimezone(ZoneInfo("Europe/Berlin")))  # type: ignore[attr-defined]


def test_prune_only_when_forget_removed_something_and_the_last_prune_is_older_than_a_week(
    ws: Workspace,
) -> None:
    first, commands, said = run(ws)
    assert "forget" in commands and "prune" not in commands  # nothing to forget yet
    assert (first.prune_snapshots_removed, first.pruned_at, first.prune_deferred_until) == (
        0, None, None,
    )  # fmt: skip
    assert said == "Pruned: 0 snapshots"

    second, commands, said = run(ws)  # forgets the first; never pruned: due
    assert "forget" in commands and "prune" in commands
    assert second.prune_snapshots_removed == 1 and second.pruned_at is not None
    assert second.prune_deferred_until is None
    assert said == "Pruned: 1 snapshot forgotten, space reclaimed"

    third, commands, said = run(ws)  # forgets the second; pruned a moment ago
    assert "forget" in commands and "prune" not in commands
    assert third.prune_snapshots_removed == 1 and third.pruned_at is None
    assert third.prune_deferred_until == second.pruned_at + WEEK
    until = local(second.pruned_at + WEEK)
    assert said == f"Pruned: 1 snapshot forgotten, prune deferred until {until}"
    logs = CliRunner().invoke(cli, [*ws.cli_args(), "logs", "shop"]).stdout  # the rows say so
    assert f"pruned 1 snapshot forgotten, prune deferred until {until}" in logs
    assert "pruned 1 snapshot forgotten, space reclaimed" in logs

    # A week later (the audit log says so; it is what survives restarts), a run that
    # forgets nothing still reclaims the space the third run's forget left behind.
    store = ws.store()
    a_week_earlier = second.pruned_at.astimezone(UTC).replace(tzinfo=None) - WEEK
    BackupLog.update(pruned_at=a_week_earlier).where(BackupLog.id == uuid.UUID(second.id)).execute()
    store.close()
    configure(ws, keep_last=10)
    fourth, commands, said = run(ws)
    assert "prune" in commands and fourth.prune_snapshots_removed == 0
    assert said == "Pruned: 0 snapshots forgotten, space reclaimed"
    _, commands, said = run(ws)  # nothing forgotten, nothing waiting
    assert "forget" in commands and "prune" not in commands
    assert said == "Pruned: 0 snapshots"


def test_prune_interval_0_prunes_after_every_run_that_forgets(ws: Workspace) -> None:
    configure(ws, prune_interval=0)
    for expected in (0, 1, 1):
        row, commands, said = run(ws)
        assert row.prune_snapshots_removed == expected
        assert ("prune" in commands) is bool(expected)
        assert (row.pruned_at is not None) is bool(expected) and row.prune_deferred_until is None
        assert said.endswith("space reclaimed") is bool(expected)


def test_backupctl_prune_always_prunes(ws: Workspace) -> None:
    run(ws)
    pruned, _, _ = run(ws)
    assert pruned.pruned_at is not None  # a prune a moment ago, and nothing left to forget

    ws.write_env(NOTIFICATION_TYPE="none")  # the recording notifier is not installed
    done = CliRunner().invoke(cli, [*ws.cli_args(), "prune", "shop"])
    assert done.exit_code == 0, done.stderr
    assert done.stdout == "shop: 0 snapshot(s) removed, 0 B freed\n"  # nothing left to free
    assert restic_commands(ws) == ["snapshots", "forget", "prune"]
