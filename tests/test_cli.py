"""The CLI on real plugins (SQLite dumper, restic on a local repository):
click's runner for output, the installed executable for exit codes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from backupctl_core.cli.main import cli
from backupctl_core.runtime.lock import ProjectLock
from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace

BACKUPCTL = str(Path(sys.executable).with_name("backupctl"))


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path)
    workspace.write_env(RESTIC_PASSWORD="repo-pw-123")
    make_sqlite_db(tmp_path / "shop.sqlite")
    workspace.write_config([sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo")])
    return workspace


def invoke(ws: Workspace, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [*ws.cli_args(), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def executable(
    ws: Workspace, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BACKUPCTL, *ws.cli_args(), *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120,
    )  # fmt: skip


def migrated(ws: Workspace) -> Workspace:
    assert invoke(ws, "db", "migrate")[0] == 0
    return ws


def test_run_status_logs_snapshots(ws: Workspace) -> None:
    migrated(ws)
    code, out, _ = invoke(ws, "run", "shop")
    assert code == 0, out
    assert out.startswith("shop: started\nshop: success — snapshot ")

    code, out, _ = invoke(ws, "status")
    assert code == 0
    assert out.splitlines()[1].split()[:3] == ["shop", "success", "done"]

    code, out, _ = invoke(ws, "status", "shop", "--json")
    (row,) = json.loads(out)
    assert row["status"] == "success" and row["verified"] is True
    assert row["files_new"] == 2 and row["dump_size_bytes"] > 0  # the dump and its manifest

    code, out, _ = invoke(ws, "snapshots", "shop", "--json")
    (snap,) = json.loads(out)
    assert snap["id"] == row["snapshot_id"]
    assert snap["tags"] == ["project:shop", "backupctl:combined"]

    code, out, _ = invoke(ws, "logs", "shop")
    assert f"snapshot {row['snapshot_id']} (combined)" in out
    code, out, _ = invoke(ws, "logs", "shop", "--failed")
    assert out.strip() == "shop: no failed runs recorded"


def test_status_of_a_project_never_run(ws: Workspace) -> None:
    migrated(ws)
    code, out, _ = invoke(ws, "status")
    assert code == 0 and out.splitlines()[1].split()[:3] == ["shop", "never", "run"]
    code, out, _ = invoke(ws, "status", "shop")
    assert out.strip() == "shop: no runs recorded"


def test_run_all_partial_success_exits_5(ws: Workspace, tmp_path: Path) -> None:
    ws.write_config(
        [
            sqlite_project("good", tmp_path / "shop.sqlite", tmp_path / "repo"),
            sqlite_project("gone", tmp_path / "missing.sqlite", tmp_path / "repo"),
            sqlite_project("off", tmp_path / "shop.sqlite", tmp_path / "repo", enabled=False),
        ]
    )
    migrated(ws)
    result = executable(ws, "run", "--all")
    assert result.returncode == 5, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "good: started" and lines[1].startswith("good: success")
    assert lines[2] == "gone: started" and lines[3].startswith("gone: FAILED at Dump")
    assert lines[4] == "Summary: 1/2 projects succeeded"
    assert "off" not in result.stdout


def test_run_all_everything_failing_exits_1(ws: Workspace, tmp_path: Path) -> None:
    ws.write_config([sqlite_project("gone", tmp_path / "missing.sqlite", tmp_path / "repo")])
    migrated(ws)
    assert executable(ws, "run", "--all").returncode == 1


def test_lock_collision_exits_2_and_names_the_holder(ws: Workspace) -> None:
    migrated(ws)
    lock = ProjectLock(ws.base_dir / "shop", "shop")
    lock.acquire()
    try:
        result = executable(ws, "run", "shop")
    finally:
        lock.release()
    assert result.returncode == 2
    assert f"already in progress (PID {os.getpid()} since" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_lock_left_by_a_killed_process_does_not_block(ws: Workspace) -> None:
    migrated(ws)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path;"
         "from backupctl_core.runtime.lock import ProjectLock;"
         f"lock = ProjectLock(Path({str(ws.base_dir / 'shop')!r}), 'shop'); lock.acquire();"
         "print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    assert executable(ws, "run", "shop").returncode == 2
    holder.kill()
    holder.wait()
    assert (ws.base_dir / "shop" / ".lock").exists()  # left behind by the dead process
    result = executable(ws, "run", "shop")
    assert result.returncode == 0, result.stderr


def test_unknown_project_exits_3_listing_known(ws: Workspace) -> None:
    migrated(ws)
    for args in (["run", "nope"], ["status", "nope"], ["logs", "nope"], ["config", "show", "nope"]):
        result = executable(ws, *args)
        assert result.returncode == 3, args
        assert result.stderr.strip() == "error: unknown project 'nope' (known projects: shop)"


def test_missing_variable_exits_3(ws: Workspace, tmp_path: Path) -> None:
    ws.write_config([sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo")])
    ws.env.pop("RESTIC_PASSWORD")
    ws.write_env()
    result = executable(ws, "run", "shop", env={"RESTIC_PASSWORD": ""})
    assert result.returncode == 3
    assert "projects[shop].restic.password: ${RESTIC_PASSWORD} is not set" in result.stderr


def test_type_without_plugin_is_a_config_error(ws: Workspace, tmp_path: Path) -> None:
    ws.write_config(
        [{"name": "m", "database": {"type": "oracle", "name": "x"},
          "restic": {"repository_path": "/r"}}]
    )  # fmt: skip
    for args in (["config", "validate"], ["run", "m"]):
        result = executable(ws, *args)
        assert result.returncode == 3
        assert "no installed plugin provides database type 'oracle'" in result.stderr
        assert "(available: mongo, mysql, postgres, sqlite)" in result.stderr


def test_missing_known_plugin_names_its_distribution() -> None:
    """The core alone (no entry points): each type names the package to install."""
    from backupctl_core.domain.errors import ConfigError
    from backupctl_core.plugins import get_plugin_manager

    registry = get_plugin_manager([], builtins=())
    for kind, name, dist in [("database", "mysql", "backupctl-mysql"),
                             ("storage", "restic", "backupctl-restic"),
                             ("notification", "slack", "backupctl-slack")]:  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            registry.require(kind, name, "projects[m]")
        assert f"pip install {dist} (available: none installed)" in caught.value.message


def test_plugin_config_problems_fail_validation(ws: Workspace) -> None:
    ws.write_config(
        [{"name": "p", "database": {"type": "postgres"}, "restic": {"repository_path": "/r"}}]
    )
    code, _, err = invoke(ws, "config", "validate")
    assert code == 3
    assert "projects[p].database.host is required" in err


def test_config_validate_and_show(ws: Workspace) -> None:
    code, out, _ = invoke(ws, "config", "validate")
    assert code == 0 and out.strip() == "config OK: 1 project(s): shop"
    code, out, _ = invoke(ws, "config", "show", "shop")
    assert code == 0 and "repo-pw-123" not in out and "password: '********'" in out


def test_config_validate_warns_about_uncompressed_encrypted_dumps(
    ws: Workspace, tmp_path: Path
) -> None:
    gpg = {"enabled": True, "type": "gpg", "recipient": "backups@example.com"}
    ws.write_config(
        [
            sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo"),
            sqlite_project(
                "vault", tmp_path / "shop.sqlite", tmp_path / "repo2",
                compression={"enabled": False}, encryption=gpg,
            ),
            sqlite_project(
                "plain", tmp_path / "shop.sqlite", tmp_path / "repo3",
                compression={"enabled": False},
            ),
        ]
    )  # fmt: skip
    code, out, err = invoke(ws, "config", "validate")
    assert code == 0 and out.strip() == "config OK: 3 project(s): shop, vault, plain"
    assert err.count("warning:") == 1
    assert "projects[vault].compression.enabled: false with encryption" in err


def test_unmigrated_audit_store_is_not_created_implicitly(ws: Workspace) -> None:
    result = executable(ws, "run", "shop")
    assert result.returncode == 1
    assert (
        "is not migrated (pending: 0001_initial, 0002_dump_file, 0003_warning_message,"
        " 0004_metrics_index, 0005_prune_time, 0006_drills, 0007_fleet);"
        " run `backupctl db migrate`" in result.stderr
    )
    assert not (ws.base_dir / ".audit" / "audit.db").exists()
    code, out, _ = invoke(ws, "db", "status")
    assert code == 0 and "0001_initial: pending" in out
    # health: a reachable store that is not migrated is a failure (1), not connectivity (4).
    code, out, _ = invoke(ws, "health")
    assert code == 1
    assert "FAIL  audit schema: audit database SQLite" in out and "is not migrated" in out
    migrated(ws)
    code, out, _ = invoke(ws, "db", "status")
    assert code == 0 and "0001_initial: 20" in out and "0003_warning_message: 20" in out
    _code, out, _ = invoke(ws, "db", "migrate")
    assert out.strip().endswith("up to date")


def test_usage_errors_exit_1_not_2(ws: Workspace) -> None:
    assert executable(ws, "run").returncode == 1
    assert executable(ws, "run", "shop", "--all").returncode == 1
    assert executable(ws, "no-such-command").returncode == 1


def test_env_file_and_config_from_environment_variables(ws: Workspace) -> None:
    result = subprocess.run(
        [BACKUPCTL, "config", "validate"],
        capture_output=True, text=True, cwd=ws.root,
        env={
            **os.environ,
            "BACKUPCTL_CONFIG": str(ws.config_path),
            "BACKUPCTL_ENV_FILE": str(ws.env_path),
        },
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    missing = executable(ws, "--env-file", str(ws.root / "nope.env"), "config", "validate")
    assert missing.returncode == 3 and "env file not found" in missing.stderr


def test_plugins_lists_installed_plugins(ws: Workspace) -> None:
    code, out, _ = invoke(ws, "plugins", "--json")
    assert code == 0
    plugins = {p["name"]: p for p in json.loads(out)}
    assert {"postgres", "restic", "sqlite"} <= set(plugins)
    assert plugins["postgres"]["distribution"] == "backupctl-postgres"
    assert plugins["postgres"]["provides"] == ["database:postgres"]
    assert {"backupctl_dump", "backupctl_verify"} <= set(plugins["postgres"]["hooks"])
    assert {"backupctl_sync", "backupctl_prune"} <= set(plugins["restic"]["hooks"])
    _code, out, _ = invoke(ws, "plugins")
    assert out.splitlines()[0].split() == ["NAME", "DISTRIBUTION", "VERSION", "PROVIDES", "HOOKS"]


def test_plugins_needs_no_config_file(tmp_path: Path) -> None:
    """A fresh install lists its plugins before any projects.yml exists."""
    result = CliRunner().invoke(
        cli, ["--config", str(tmp_path / "none.yml"), "plugins", "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr
    assert "restic" in {p["name"] for p in json.loads(result.stdout)}


def test_broken_plugins_are_reported_and_do_not_break_other_commands(
    ws: Workspace, tmp_path: Path
) -> None:
    """Two installed distributions: one whose module does not import, one
    with a misspelled hook argument."""
    site = tmp_path / "site"
    for dist, name, target in (
        ("broken_import", "ghost", "no_such_module_xyz"),
        ("broken_hook", "misspelt", "tests.support.recording_plugin:broken"),
    ):
        info = site / f"{dist}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[backupctl]\n{name} = {target}\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(Path(__file__).parents[1])])}
    result = executable(ws, "plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert "ModuleNotFoundError" in plugins["ghost"]["error"]
    assert plugins["ghost"]["distribution"] == "broken_import"
    assert "invalid hook implementation" in plugins["misspelt"]["error"]
    assert "projekt" in plugins["misspelt"]["error"]
    assert "plugin ghost (broken_import) is broken" in result.stderr
    validate = executable(ws, "config", "validate", env=env)
    assert validate.returncode == 0, validate.stderr


def test_dry_run_checks_everything_and_writes_nothing(ws: Workspace, tmp_path: Path) -> None:
    ws.write_config(
        [sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo",
                        assets={"paths": [str(tmp_path / "nope")]})]
    )  # fmt: skip
    # An unmigrated audit store: the run would stop at once, so the dry run must too.
    unmigrated = executable(ws, "run", "shop", "--dry-run")
    assert unmigrated.returncode == 1, unmigrated.stdout
    assert "FAIL  audit schema:" in unmigrated.stdout and "run `backupctl db migrate`" in (
        unmigrated.stdout
    )
    assert unmigrated.stdout.splitlines()[-1] == "shop: NOT READY (exit 1)"
    migrated(ws)
    before = sorted(p.name for p in ws.base_dir.rglob("*"))
    result = executable(ws, "run", "shop", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "shop: dry run" and lines[-1] == "shop: ready"
    assert any(line.startswith("PASS  database: SQLite database") for line in lines)
    assert any(line.startswith("WARN  restic repository:") for line in lines)  # not created yet
    assert any(line.startswith("WARN  asset path:") for line in lines)
    assert any(line.startswith("PASS  disk space:") for line in lines)
    assert any(line.startswith("PASS  audit database:") for line in lines)
    assert any(line.startswith("PASS  tools: restic 0.") for line in lines)
    # no audit row, no lock, no cache, no log
    assert sorted(p.name for p in ws.base_dir.rglob("*")) == before
    assert not (tmp_path / "repo").exists()
    report = json.loads(executable(ws, "run", "shop", "--dry-run", "--json").stdout)
    assert report["ready"] is True and report["exit_code"] == 0
    ws.write_config([sqlite_project("shop", tmp_path / "gone.sqlite", tmp_path / "repo")])
    failing = executable(ws, "run", "shop", "--dry-run")
    assert failing.returncode == 4 and failing.stdout.splitlines()[-1].startswith("shop: NOT READY")


def test_dry_run_and_health_fail_naming_a_tool_missing_from_path(
    ws: Workspace, tmp_path: Path
) -> None:
    """Without restic on PATH the dry run said "ready"; the run then failed."""
    migrated(ws)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    dry = executable(ws, "run", "shop", "--dry-run", env={"PATH": str(empty)})
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert "FAIL  tools: not on PATH: restic (install restic and openssh-client)" in dry.stdout
    assert dry.stdout.splitlines()[-1] == "shop: NOT READY (exit 1)"
    health = executable(ws, "health", env={"PATH": str(empty)})
    assert health.returncode == 1 and "FAIL  tools: shop: not on PATH: restic" in health.stdout


def test_health_reports_and_exits_4_when_unreachable(ws: Workspace, tmp_path: Path) -> None:
    migrated(ws)
    assert invoke(ws, "run", "shop")[0] == 0
    code, out, _ = invoke(ws, "health", "--json")
    report = json.loads(out)
    assert code == 0 and report["healthy"] is True
    assert {c["name"] for c in report["checks"]} == {"audit database", "disk space", "database",
                                                      "tools", "restic repository"}  # fmt: skip
    ws.write_env(RESTIC_PASSWORD="wrong-password")
    code, out, _ = invoke(ws, "health")
    assert code == 4 and out.strip().endswith("UNHEALTHY")
    assert "wrong-password" not in out


def test_health_fails_where_the_dry_run_fails(ws: Workspace, tmp_path: Path) -> None:
    """health checked only the repositories: a database the next run cannot read, or a
    missing asset folder, left it "healthy"."""
    migrated(ws)
    project = sqlite_project("shop", tmp_path / "gone.sqlite", tmp_path / "repo")
    project["assets"] = {"paths": [str(tmp_path / "no-such-folder")]}
    ws.write_config([project])
    dry = executable(ws, "run", "shop", "--dry-run")
    health = executable(ws, "health")
    assert dry.returncode == health.returncode == 4, health.stdout
    assert f"FAIL  database: shop: SQLite database not found: {tmp_path / 'gone.sqlite'}" in (
        health.stdout
    )
    assert f"WARN  asset path: shop: {tmp_path / 'no-such-folder'} does not exist" in health.stdout
    assert health.stdout.splitlines()[-1] == "UNHEALTHY"


def test_numeric_options_have_ranges(ws: Workspace) -> None:
    """`logs --last 1e20` reached the database as an overflowing LIMIT."""
    migrated(ws)
    for args in (["logs", "shop", "--last", "100000000000000000000"], ["status", "--last", "0"],
                 ["snapshots", "shop", "--last", "100001"]):  # fmt: skip
        code, _, err = invoke(ws, *args)
        assert code == 1 and "Invalid value for '--last'" in err and "Traceback" not in err


def test_init_writes_a_config_to_start_from_and_overwrites_nothing(tmp_path: Path) -> None:
    """pip users got no config to start from; README's "Using it" now starts here."""
    folder = tmp_path / "site"
    first = subprocess.run([BACKUPCTL, "init", str(folder)], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert f"written {folder / 'config' / 'projects.yml'}" in first.stdout
    env = folder / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600 and "RESTIC_PASSWORD=" in env.read_text()
    env.write_text(env.read_text() + "# mine\n")
    again = subprocess.run([BACKUPCTL, "init", str(folder)], capture_output=True, text=True)
    assert f"kept    {env} (exists)" in again.stdout and env.read_text().endswith("# mine\n")
    validate = subprocess.run([BACKUPCTL, "config", "validate"], cwd=folder, capture_output=True,
                              text=True)  # fmt: skip
    assert validate.returncode == 0, validate.stderr  # works as written
