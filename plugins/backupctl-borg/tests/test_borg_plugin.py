"""The borg storage plugin against the real borg program: a whole backupctl run,
snapshots, prune, restore and the passthrough, on a local repository, written with
the plugin author's kit (``backupctl_core.testing``)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from backupctl_borg import plugin

from backupctl_core import (
    GlobalSettings,
    PluginError,
    PluginType,
    ProjectSettings,
    Secret,
    SshSettings,
    StorageSettings,
)
from backupctl_core.testing import BackupctlWorkspace, make_project, plugin_manager
from backupctl_core.testing.sftp import SftpServer


def borg_project(name: str, db: Path, repo: Path, **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "database": {"type": "sqlite", "name": str(db)},
        "storage": {"type": "borg", "config": {"repository_path": str(repo)}},
        **extra,
    }


@pytest.fixture
def shop_db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
        db.executemany("INSERT INTO orders (item) VALUES (?)", [(f"item {i}",) for i in range(50)])
    return path


def test_the_hooks_match_the_hookspecs() -> None:
    manager = plugin_manager(plugin)
    types = manager.hook.backupctl_plugin_types()
    assert types == [[PluginType("storage", "borg")]]
    assert types[0][0].secrets == frozenset({"password"})


def test_repository_passphrase_and_environment() -> None:
    settings = GlobalSettings(restic_password=Secret("from-env"))
    project = make_project("shop", storage=_storage({"repository_path": "/srv/borg/shop"}))
    assert plugin.repository(project, settings) == "/srv/borg/shop"
    assert plugin.passphrase(project, settings) == "from-env"
    own = make_project(
        "shop", storage=_storage({"repository_path": "borg/shop", "password": "own-pw"})
    )
    ssh = GlobalSettings(ssh=SshSettings(host="u1.example.com", user="u1", port=23))
    assert plugin.repository(own, ssh) == "ssh://u1@u1.example.com:23/./borg/shop"
    assert plugin.passphrase(own, ssh) == "own-pw"
    env = plugin.environment(own, ssh)
    assert env["BORG_PASSPHRASE"] == "own-pw" and "BatchMode=yes" in env["BORG_RSH"]
    assert "StrictHostKeyChecking=yes" in env["BORG_RSH"]
    no_secret = make_project("x", storage=_storage({"repository_path": "/r"}))
    with pytest.raises(PluginError, match="RESTIC_PASSWORD is not set"):
        plugin.passphrase(no_secret, GlobalSettings())
    with pytest.raises(PluginError, match="repository_path: required key missing"):
        plugin.passphrase(make_project("x", storage=_storage({})), GlobalSettings())


def test_validate_config_names_what_is_missing() -> None:
    bare = make_project("shop", storage=_storage({"repositry_path": "/x"}))
    assert plugin.backupctl_validate_config(project=bare, settings=GlobalSettings()) == [
        "storage.config.repository_path: required key missing",
        "storage.config: unknown key(s): repositry_path (did you mean repository_path?)",
        "storage.config.password: not set, and RESTIC_PASSWORD is not set in .env",
    ]
    wrong = make_project("shop", storage=_storage({"repository_path": ["/x"], "password": " "}))
    assert plugin.backupctl_validate_config(project=wrong, settings=GlobalSettings()) == [
        "storage.config.repository_path: expected a string, got ['/x']",
        "storage.config.password: not set, and RESTIC_PASSWORD is not set in .env",
    ]


def _storage(config: dict[str, object]) -> StorageSettings:
    return StorageSettings(type="borg", config=config)


def _repository_below_a_file(tmp_path: Path) -> tuple[Path, GlobalSettings, ProjectSettings]:
    """A project whose repository_path is below a regular file: never creatable."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    settings = GlobalSettings(backup_base_dir=tmp_path / "base", restic_password=Secret("pw-123"))
    project = make_project(storage=_storage({"repository_path": str(blocker / "repo")}))
    return blocker, settings, project


def test_a_repository_that_cannot_be_created_fails_the_check(tmp_path: Path) -> None:
    """The first backup creates the repository: the check says whether it can."""
    blocker, settings, project = _repository_below_a_file(tmp_path)
    tools, repository = plugin.backupctl_check(project=project, settings=settings)
    assert tools.status == "pass"
    assert (repository.status, repository.detail) == (
        "fail", f"{blocker / 'repo'} cannot be created: {blocker} is not a folder")  # fmt: skip


def test_a_borg_crash_is_reported_by_its_exception_not_its_last_line(tmp_path: Path) -> None:
    """borg reports some OS errors as a traceback ending in platform lines."""
    blocker, settings, project = _repository_below_a_file(tmp_path)
    with pytest.raises(PluginError) as raised:
        plugin.backupctl_snapshots(project=project, settings=settings)
    crash = f"NotADirectoryError: [Errno 20] Not a directory: '{blocker / 'repo'}'"
    assert raised.value.message == f"borg list: {crash}"


@pytest.mark.e2e
def test_run_snapshots_prune_restore_end_to_end(
    backupctl_workspace: BackupctlWorkspace, shop_db: Path, tmp_path: Path
) -> None:
    ws = backupctl_workspace
    repo = tmp_path / "borg-repo"
    ws.write_config(
        [borg_project("shop", shop_db, repo, retention={"keep_last": 2, "keep_daily": 0,
                      "keep_weekly": 0, "keep_monthly": 0, "prune_interval": "0"})]
    )  # fmt: skip
    assert ws.cli("db", "migrate").exit_code == 0
    recover = ws.cli("recover")  # before the first backup: no repository, nothing to unlock
    assert recover.exit_code == 0, recover.output
    assert "ok   repository unlock: 1 repository unlocked" in recover.output
    dry = ws.cli("run", "shop", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    checks = {c["name"]: c for c in json.loads(dry.stdout)["checks"]}
    assert checks["repository"]["status"] == "warn"
    assert (
        checks["repository"]["detail"] == f"{repo} does not exist yet; the first backup creates it"
    )
    for number in range(3):
        run = ws.cli("run", "shop")
        assert run.exit_code == 0, run.output
        if number == 0:  # borg's --keep-last counts seconds (it is --keep-secondly):
            time.sleep(1 - time.time() % 1)  # the first run alone in its second
    # The last two runs often share a second: "newest first" must still put the
    # last one first, and keep_last 2 prunes one archive either way.
    snapshots = json.loads(ws.cli("snapshots", "shop", "--json").stdout)
    assert len(snapshots) == 2  # keep_last 2: one archive was pruned
    assert all(s["id"].startswith("shop-") for s in snapshots)
    (record, *_) = json.loads(ws.cli("status", "shop", "--json").stdout)
    assert record["status"] == "success" and record["snapshot_id"] == snapshots[0]["id"]
    assert record["prune_snapshots_removed"] == 1 and record["pruned_at"]  # compacted
    assert (repo / "config").is_file()  # a real borg repository

    target = tmp_path / "restored"
    restore = ws.cli("restore", "shop", "latest", str(target), "--decompress")
    assert restore.exit_code == 0, restore.output
    (dump,) = target.rglob("shop_backup_*.sqlite")
    with sqlite3.connect(dump) as db:
        assert db.execute("SELECT count(*) FROM orders").fetchone() == (50,)

    # passthrough: borg itself, with the repository and passphrase set by backupctl
    listing = subprocess.run(
        [str(Path(sys.executable).with_name("backupctl")), *ws.cli_args(),
         "restic", "shop", "list", "--short"], capture_output=True, text=True,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    assert sorted(listing.stdout.split()) == sorted(s["id"] for s in snapshots)
    assert ws.env["RESTIC_PASSWORD"] not in listing.stdout + listing.stderr


@pytest.mark.e2e
def test_over_ssh_to_a_borg_serve_host(
    backupctl_workspace: BackupctlWorkspace,
    borg_ssh_server: SftpServer,
    shop_db: Path,
    tmp_path: Path,
) -> None:
    """As on a storage box's borg port: every session runs ``borg serve``, the host key
    comes from the known_hosts beside the key, the passphrase only in the environment."""
    ws = backupctl_workspace
    server = borg_ssh_server
    ws.write_env(HETZNER_SSH_HOST=server.host, HETZNER_SSH_PORT=str(server.port),
                 HETZNER_SSH_USER=server.user, HETZNER_SSH_KEY_PATH=str(server.key_path),
                 BORG_PASS="borg-over-ssh-pw")  # fmt: skip
    repo = server.new_repo_path("shop")
    storage = {"type": "borg", "config": {"repository_path": repo, "password": "${BORG_PASS}"}}
    ws.write_config([{**borg_project("shop", shop_db, tmp_path / "unused"), "storage": storage}])
    assert ws.cli("db", "migrate").exit_code == 0
    run = ws.cli("run", "shop")
    assert run.exit_code == 0, run.output
    assert "borg-over-ssh-pw" not in run.output
    assert (Path(repo) / "config").is_file()  # created on the server, by borg serve
    (snapshot,) = json.loads(ws.cli("snapshots", "shop", "--json").stdout)
    target = tmp_path / "restored"
    restore = ws.cli("restore", "shop", snapshot["id"], str(target), "--only", "db")
    assert restore.exit_code == 0, restore.output
    assert list(target.rglob("shop_backup_*.sqlite.gz"))
    prune = ws.cli("prune", "shop")
    assert prune.exit_code == 0, prune.output


def test_a_key_in_a_folder_with_spaces_reaches_the_borg_host(
    borg_ssh_server: SftpServer, tmp_path: Path
) -> None:
    """borg splits BORG_RSH like a shell: the key and the known_hosts beside it keep
    their spaces, with and without the run's shared connection."""
    server = borg_ssh_server
    keys = tmp_path / "my ssh keys"
    keys.mkdir()
    for source in (server.key_path, server.known_hosts_path):
        (keys / source.name).write_bytes(source.read_bytes())
        (keys / source.name).chmod(0o600)
    ssh = SshSettings(host=server.host, user=server.user, port=server.port,
                      key_path=keys / server.key_path.name)  # fmt: skip
    settings = GlobalSettings(
        backup_base_dir=tmp_path / "base", restic_password=Secret("pw-123"), ssh=ssh
    )
    project = make_project(storage=_storage({"repository_path": server.new_repo_path("spaces")}))
    source = tmp_path / "dump.txt"
    source.write_text("data\n")

    plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=["x"])
    session = plugin.backupctl_run_session(project=project, settings=settings)
    assert session is not None
    with session:
        plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=["x"])
    assert len(plugin.backupctl_snapshots(project=project, settings=settings)) == 2


def test_a_run_session_logs_in_once_for_all_the_runs_borg_calls(
    borg_ssh_server: SftpServer, tmp_path: Path
) -> None:
    """Over SSH the run's borg calls (init, create, prune, compact) are channels of the
    one connection the session opens (backupctl_core.plugin_kit.ssh)."""

    from backupctl_core import Reclaim, RetentionSettings
    from backupctl_core.plugin_kit import ssh as ssh_kit

    server = borg_ssh_server
    settings = GlobalSettings(
        backup_base_dir=tmp_path / "base", restic_password=Secret("pw-123"),
        ssh=SshSettings(host=server.host, user=server.user, port=server.port,
                        key_path=server.key_path),
    )  # fmt: skip
    project = make_project(
        storage=_storage({"repository_path": server.new_repo_path("session")}),
        retention=RetentionSettings(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0),
    )
    source = tmp_path / "dump.txt"

    def logins() -> int:
        return server.log_path.read_text(errors="replace").count("Accepted publickey")

    session = plugin.backupctl_run_session(project=project, settings=settings)
    assert session is not None
    before = logins()
    with session:
        socket = ssh_kit.socket_of(project.name)
        assert socket is not None
        deadline = time.monotonic() + 15
        while not socket.exists():  # the master logs in while the dump would run
            assert time.monotonic() < deadline, "no master connection"
            time.sleep(0.02)
        for round_ in range(2):
            source.write_text(f"round {round_}\n")
            plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=["x"])
        pruned = plugin.backupctl_prune(project=project, settings=settings, reclaim=Reclaim.YES)
        assert pruned.snapshots_removed == 1 and pruned.space_reclaimed
    assert logins() == before + 1
    assert ssh_kit.socket_of(project.name) is None and not socket.parent.exists()
    off = GlobalSettings(ssh=SshSettings(host=server.host, shared_connection=False))
    assert plugin.backupctl_run_session(project=project, settings=off) is None
