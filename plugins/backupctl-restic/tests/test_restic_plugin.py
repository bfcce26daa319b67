"""The restic plugin against the real restic: a local repository and an SFTP one
served by a real sshd (the ``sftp_server`` fixture). No test doubles."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import psutil
import pytest
from backupctl_restic import plugin, remembered, restic_environment
from backupctl_restic.output import bytes_pruned, describe_json_error, parse_time
from backupctl_restic.repository import known_hosts_file, repository_url

from backupctl_core import PluginError, Reclaim
from backupctl_core.domain.settings import (
    DatabaseSettings,
    GlobalSettings,
    ProjectSettings,
    ResticSettings,
    RetentionSettings,
    Secret,
    SshSettings,
)
from backupctl_core.testing import plugin_manager
from backupctl_core.testing.sftp import SftpServer

PASSWORD = "pw-Zq81-never-print-me"  # distinctive, so a leak anywhere would be found
TAGS = ("project:p", "backupctl:combined")
NO_RETENTION = RetentionSettings(keep_daily=0, keep_weekly=0, keep_monthly=0)
IF_FORGOTTEN = Reclaim.IF_FORGOTTEN  # prune only if forget removed something

Target = Callable[..., tuple[ProjectSettings, GlobalSettings]]


# -- fixtures --------------------------------------------------------------------------


def _project(
    repository_path: str,
    name: str = "p",
    password: str = PASSWORD,
    retention: RetentionSettings = NO_RETENTION,
) -> ProjectSettings:
    return ProjectSettings(
        name=name,
        restic=ResticSettings(repository_path=repository_path, password=Secret(password)),
        retention=retention,
    )


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One initialised repository (init takes seconds: restic calibrates its KDF);
    tests that do not test creation get a copy."""
    path = tmp_path_factory.mktemp("template") / "repo"
    env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=f"local:{path}")
    env["RESTIC_CACHE_DIR"] = str(path.parent / "cache")
    subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
    return path


@pytest.fixture(params=["local", "sftp"])
def target(request: pytest.FixtureRequest, tmp_path: Path, template_repo: Path) -> Iterator[Target]:
    """``target(existing=False, **project_kwargs) -> (project, settings)`` on one backend.

    ``existing=True`` gives a copy of an initialised repository (password PASSWORD).
    """
    settings = GlobalSettings(backup_base_dir=tmp_path / "base")
    server: SftpServer | None = None
    if request.param == "sftp":
        server = request.getfixturevalue("sftp_server")
        settings = GlobalSettings(backup_base_dir=tmp_path / "base", ssh=server.ssh_settings())

    def make(existing: bool = False, **kwargs: object) -> tuple[ProjectSettings, GlobalSettings]:
        if server is None:
            path = str(tmp_path / f"repo-{len(list(tmp_path.glob('repo-*')))}")
        else:
            path = server.new_repo_path(request.node.name.split("[")[0])
        if existing:
            _copy_repo(template_repo, path, server)
        return _project(path, **kwargs), settings  # type: ignore[arg-type]

    yield make


def _copy_repo(template: Path, path: str, server: SftpServer | None) -> None:
    shutil.copytree(template, path)
    if server is not None:
        subprocess.run(["chown", "-R", f"{server.user}:", path], check=True)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "sub/c.txt"):
        (src / name).write_text(f"content of {name}\n")
    return src


@pytest.fixture
def restic_argv_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file getting one line per restic call (its arguments), by a wrapper ahead
    of the real restic on PATH."""
    real = shutil.which("restic")
    log = tmp_path / "argv.log"
    (tmp_path / "bin").mkdir()
    wrapper = tmp_path / "bin" / "restic"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    return log


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the hooks against both backends ----------------------------------------------------


def test_first_sync_creates_the_repository_and_reports_counts(target: Target, source: Path) -> None:
    project, settings = target()
    [tools, check] = plugin.backupctl_check(project=project, settings=settings)
    assert (tools.name, tools.status) == ("tools", "pass")
    assert tools.detail.startswith("restic 0.") or tools.detail.startswith("restic 1.")
    assert check.status == "warn"
    assert "does not exist yet; the first backup creates it" in check.detail

    first = plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=TAGS)

    assert first.files_new == 3
    assert first.files_changed == 0
    assert first.bytes_added > 0
    [snapshot] = plugin.backupctl_snapshots(project=project, settings=settings)
    assert snapshot.id == first.snapshot_id
    assert snapshot.tags == TAGS
    assert snapshot.paths == (str(source),)
    assert snapshot.time.tzinfo is not None

    (source / "b.txt").write_text("changed\n")
    second = plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=TAGS)

    assert (second.files_new, second.files_changed) == (0, 1)
    assert second.snapshot_id != first.snapshot_id
    [_, check] = plugin.backupctl_check(project=project, settings=settings)
    assert check.status == "pass"
    assert (settings.backup_base_dir / ".cache" / "restic").is_dir()


def test_prune_applies_retention_per_project_and_lists_newest_first(
    target: Target, source: Path
) -> None:
    daily = RetentionSettings(keep_daily=1, keep_weekly=0, keep_monthly=0)
    project, settings = target(existing=True, retention=daily)
    other = _project(project.restic.repository_path, name="other", retention=daily)
    plugin.backupctl_sync(project=other, settings=settings, paths=[source], tags=())
    made = []
    for round_ in range(3):
        (source / "a.txt").write_text(f"round {round_}\n")
        result = plugin.backupctl_sync(
            project=project, settings=settings, paths=[source], tags=TAGS
        )
        made.append(result.snapshot_id)

    listed = plugin.backupctl_snapshots(project=project, settings=settings)
    assert [s.id for s in listed] == made[::-1]
    assert listed[0].time > listed[1].time > listed[2].time

    pruned = plugin.backupctl_prune(project=project, settings=settings, reclaim=IF_FORGOTTEN)

    assert pruned.snapshots_removed == 2  # all three are from today: one daily kept
    assert [s.id for s in plugin.backupctl_snapshots(project=project, settings=settings)] == [
        made[-1]
    ]
    # The other project in the same repository is untouched.
    assert len(plugin.backupctl_snapshots(project=other, settings=settings)) == 1


def test_wrong_password_is_not_retryable_and_not_revealed(target: Target, source: Path) -> None:
    wrong = "wrong-pw-Kx93"
    project, settings = target(existing=True, password=wrong)

    with pytest.raises(PluginError) as caught:
        plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=TAGS)

    error = caught.value
    assert error.retryable is False
    assert error.connectivity is False
    assert "wrong repository password" in error.message
    assert "wrong password or no key found" in error.message
    assert wrong not in error.message and PASSWORD not in error.message
    assert "\n" not in error.message
    [_, check] = plugin.backupctl_check(project=project, settings=settings)
    assert check.status == "fail"
    assert wrong not in check.detail


# -- SFTP failures ----------------------------------------------------------------------


def _sftp_project(
    server: SftpServer, tmp_path: Path, **ssh: object
) -> tuple[ProjectSettings, GlobalSettings]:
    settings = GlobalSettings(
        backup_base_dir=tmp_path / "base",
        ssh=SshSettings(
            **{
                "host": server.host,
                "user": server.user,
                "port": server.port,
                "key_path": server.key_path,
                **ssh,
            }  # type: ignore[arg-type]
        ),
    )
    return _project(server.new_repo_path("failures")), settings


def test_unreachable_sftp_server_is_a_retryable_connectivity_error(
    sftp_server: SftpServer, tmp_path: Path, source: Path
) -> None:
    project, settings = _sftp_project(sftp_server, tmp_path, port=_free_port())

    with pytest.raises(PluginError) as caught:
        plugin.backupctl_snapshots(project=project, settings=settings)

    assert caught.value.connectivity is True
    assert caught.value.retryable is True
    assert caught.value.exit_code == 4
    assert "Connection refused" in caught.value.message
    assert "\n" not in caught.value.message


def test_stopped_server_fails_the_sync_and_a_retry_after_restart_succeeds(
    sftp_server: SftpServer, tmp_path: Path, source: Path, template_repo: Path
) -> None:
    project, settings = _sftp_project(sftp_server, tmp_path)
    _copy_repo(template_repo, project.restic.repository_path, sftp_server)

    with sftp_server.stopped(), pytest.raises(PluginError) as caught:
        plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=TAGS)
    assert caught.value.connectivity and caught.value.retryable

    result = plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=TAGS)
    assert result.files_new == 3


def test_unknown_host_key_fails_loudly(
    sftp_server: SftpServer, tmp_path: Path, source: Path
) -> None:
    keys = tmp_path / "ssh-keys"
    keys.mkdir(mode=0o700)
    key = keys / "id_ed25519"
    shutil.copy2(sftp_server.key_path, key)
    (keys / "known_hosts").write_text("")  # the server's key is not in it
    project, settings = _sftp_project(sftp_server, tmp_path, key_path=key)

    with pytest.raises(PluginError) as caught:
        plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=TAGS)

    error = caught.value
    assert error.connectivity is True
    assert error.retryable is False
    assert "host key is not trusted" in error.message
    assert "strict checking" in error.message
    # Nothing was accepted into known_hosts on the way.
    assert (keys / "known_hosts").read_text() == ""


# -- local-only behaviour ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("reclaim", "runs", "removed", "pruned"),
    [
        (Reclaim.NO, 3, 2, False),  # deferred: forget only, the space waits
        (Reclaim.IF_FORGOTTEN, 3, 2, True),
        (Reclaim.IF_FORGOTTEN, 1, 0, False),  # nothing forgotten: nothing to reclaim
        (Reclaim.YES, 1, 0, True),  # `backupctl prune`, or earlier forgets' space
    ],
)
def test_reclaim_decides_whether_restic_prune_runs(
    tmp_path: Path, template_repo: Path, source: Path, restic_argv_log: Path,
    reclaim: Reclaim, runs: int, removed: int, pruned: bool,
) -> None:  # fmt: skip
    log = restic_argv_log
    shutil.copytree(template_repo, tmp_path / "repo")
    daily = RetentionSettings(keep_daily=1, keep_weekly=0, keep_monthly=0)
    project = _project(str(tmp_path / "repo"), retention=daily)
    settings = GlobalSettings(backup_base_dir=tmp_path / "base")
    for round_ in range(runs):  # same day: keep_daily 1 keeps only the newest
        (source / "a.txt").write_text(f"round {round_}\n")
        plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=TAGS)
    log.unlink()

    result = plugin.backupctl_prune(project=project, settings=settings, reclaim=reclaim)

    assert (result.snapshots_removed, result.space_reclaimed) == (removed, pruned)
    if not pruned:
        assert result.bytes_freed is None
    else:  # from restic's own summary: what the forgotten snapshots alone held
        assert result.bytes_freed is not None and (result.bytes_freed > 0) is (removed > 0)
    calls = log.read_text().splitlines()
    # forget on every call; the snapshot list was read while the backups ran; a prune
    # after a forget that removed something rides on it: one restic process
    assert calls[0].startswith("forget ") and not any(c.startswith("snapshots") for c in calls)
    assert len(calls) == (2 if reclaim == Reclaim.YES and not removed else 1)
    assert len(plugin.backupctl_snapshots(project=project, settings=settings)) == 1
    env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=str(tmp_path / "repo"))
    dry = subprocess.run(["restic", "prune", "--dry-run", "--no-cache"], env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert ("to delete:             0 blobs" in dry.stdout) is (pruned or not removed)


def test_password_never_reaches_argv(tmp_path: Path, source: Path, restic_argv_log: Path) -> None:
    log = restic_argv_log
    daily = RetentionSettings(keep_daily=1, keep_weekly=0, keep_monthly=0)
    project = _project(str(tmp_path / "repo"), retention=daily)
    settings = GlobalSettings(backup_base_dir=tmp_path / "base")

    plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=TAGS)
    plugin.backupctl_snapshots(project=project, settings=settings)
    plugin.backupctl_prune(project=project, settings=settings, reclaim=IF_FORGOTTEN)
    plugin.backupctl_check(project=project, settings=settings)

    logged = log.read_text()
    assert sorted(line.split()[0] for line in logged.splitlines()) == sorted([
        "backup",
        "snapshots",  # the listing retention needs, beside the backup: no repository yet
        "init",
        "backup",
        "snapshots",
        "snapshots",  # prune lists again: the one read during the backup failed
        "forget",  # (no prune: forget removed nothing)
        "version",
        "cat",
    ])  # fmt: skip
    assert PASSWORD not in logged
    # The same holds for the SFTP argv handed to the CLI's passthrough.
    sftp = GlobalSettings(ssh=SshSettings(host="box.example", user="u", key_path=tmp_path / "k"))
    env, argv = restic_environment(project, sftp)
    assert env["RESTIC_PASSWORD"] == PASSWORD
    assert env["RESTIC_REPOSITORY"] == f"sftp:u@box.example:{tmp_path / 'repo'}"
    assert not any(PASSWORD in arg for arg in argv)


def test_locked_repository_is_retryable(tmp_path: Path, template_repo: Path, source: Path) -> None:
    project = _project(str(tmp_path / "repo"), retention=RetentionSettings(keep_daily=1))
    settings = GlobalSettings(backup_base_dir=tmp_path / "base")
    _copy_repo(template_repo, project.restic.repository_path, None)
    plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=TAGS)
    env, argv = restic_environment(project, settings)
    # A backup reading stdin holds a (shared) lock until stdin closes; prune needs
    # an exclusive one.
    holder = subprocess.Popen(
        [*argv, "backup", "--stdin", "--tag", "project:p"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_lock(project, settings)
        with pytest.raises(PluginError) as caught:
            plugin.backupctl_prune(project=project, settings=settings, reclaim=IF_FORGOTTEN)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert caught.value.retryable is True
    assert "locked" in caught.value.message


def _wait_for_lock(project: ProjectSettings, settings: GlobalSettings) -> None:
    env, argv = restic_environment(project, settings)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        listed = subprocess.run(
            [*argv, "list", "locks", "--no-lock"], env=env, capture_output=True, text=True
        )
        if listed.stdout.strip():
            return
        time.sleep(0.2)
    raise AssertionError("the lock holder never took its lock")


def test_missing_source_path_fails_without_running_restic(tmp_path: Path) -> None:
    project = _project(str(tmp_path / "repo"))
    settings = GlobalSettings(backup_base_dir=tmp_path)

    with pytest.raises(PluginError) as caught:
        plugin.backupctl_sync(
            project=project, settings=settings, paths=[tmp_path / "nope"], tags=TAGS
        )

    assert caught.value.retryable is False
    assert "nope" in caught.value.message
    assert not (tmp_path / "repo").exists()


def test_all_zero_retention_removes_nothing(tmp_path: Path) -> None:
    project = _project(str(tmp_path / "no-such-repo"), retention=NO_RETENTION)
    settings = GlobalSettings(backup_base_dir=tmp_path)

    assert (
        plugin.backupctl_prune(
            project=project, settings=settings, reclaim=IF_FORGOTTEN
        ).snapshots_removed
        == 0
    )


def test_missing_password_is_a_non_retryable_error(tmp_path: Path) -> None:
    project = ProjectSettings(name="p", restic=ResticSettings(repository_path=str(tmp_path)))
    settings = GlobalSettings(backup_base_dir=tmp_path)

    with pytest.raises(PluginError) as caught:
        plugin.backupctl_snapshots(project=project, settings=settings)
    assert caught.value.retryable is False
    assert "RESTIC_PASSWORD" in caught.value.message
    assert plugin.backupctl_validate_config(project=project, settings=settings) == [
        "restic.password: not set, and RESTIC_PASSWORD is not set in .env"
    ]
    with_global = GlobalSettings(backup_base_dir=tmp_path, restic_password=Secret("x"))
    assert plugin.backupctl_validate_config(project=project, settings=with_global) == []


# -- repository selection and parsing ---------------------------------------------------


def test_repository_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    no_ssh = GlobalSettings()
    ssh = GlobalSettings(ssh=SshSettings(host="box", user="u", port=23))

    assert repository_url(_project("repos/p"), no_ssh) == f"local:{tmp_path}/repos/p"
    assert repository_url(_project("local:/srv/r"), ssh) == "local:/srv/r"
    assert repository_url(_project("backups/p"), ssh) == "sftp:u@box:backups/p"


def test_known_hosts_next_to_the_key_else_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    keys = tmp_path / "keys"
    keys.mkdir()
    settings = GlobalSettings(ssh=SshSettings(host="box", key_path=keys / "id"))

    assert known_hosts_file(settings) == tmp_path / "home" / ".ssh" / "known_hosts"
    (keys / "known_hosts").write_text("")
    assert known_hosts_file(settings) == keys / "known_hosts"
    _, argv = restic_environment(_project("r"), settings)
    command = argv[argv.index("-o") + 1]
    assert command.startswith("sftp.command=ssh -p 23 -i ")
    assert f"UserKnownHostsFile={keys / 'known_hosts'}" in command
    assert "StrictHostKeyChecking=yes" in command and "accept-new" not in command


def test_restic_output_parsing() -> None:
    # restic 0.14's JSON error line for a file it cannot open (backup exit code 3).
    line = {"message_type": "error", "error": {"Op": "open", "Path": "/x", "Err": 13}}
    assert describe_json_error(line) == "open /x: permission denied"
    when = parse_time("2026-11-26T11:54:56.655053361Z")
    assert (when.microsecond, when.utcoffset()) == (655053, timedelta(0))
    summary = [
        "to delete:             7 blobs / 5.723 MiB",
        "total prune:           7 blobs / 5.723 MiB",
    ]
    assert bytes_pruned(summary) == round(5.723 * 1024 * 1024)
    assert bytes_pruned(["[0:00] 100.00%", "total prune:           0 blobs / 0 B"]) == 0
    assert bytes_pruned(["done"]) is None  # no summary: not known, never a guess


def test_backup_status_lines_become_progress_only_when_a_run_shows_it(
    tmp_path: Path, template_repo: Path
) -> None:
    """restic's ``backup --json`` status (percent, files, bytes) is what ``run``'s
    progress line shows during the sync; without a listener nothing is parsed."""
    from backupctl_core.plugin_kit import Progress, progress_sink, progress_wanted

    size = 32 * 1024 * 1024  # long enough for several status lines
    big = tmp_path / "big"
    big.mkdir()
    (big / "random.bin").write_bytes(os.urandom(size))
    _copy_repo(template_repo, str(tmp_path / "repo"), None)
    project = _project(str(tmp_path / "repo"))
    settings = GlobalSettings(backup_base_dir=tmp_path / "base")
    seen: list[Progress] = []

    assert not progress_wanted()
    with progress_sink(seen.append):
        assert progress_wanted()
        plugin.backupctl_sync(project=project, settings=settings, paths=[big], tags=TAGS)
    assert not progress_wanted()

    assert seen, "restic printed no status line"
    fractions = [p.fraction for p in seen if p.fraction is not None]
    assert fractions == sorted(fractions) and all(0 <= f <= 1 for f in fractions)
    assert any(p.total_bytes == size and p.total_files == 1 for p in seen)
    assert all(0 <= (p.bytes_done or 0) <= size for p in seen)


def test_hooks_match_the_hookspecs() -> None:
    manager = plugin_manager(plugin)  # raises PluginValidationError on a misspelled argument

    assert manager.hook.backupctl_plugin_types() == [plugin.backupctl_plugin_types()]


def _restic_children() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):  # gone meanwhile
            if child.name() == "restic":
                found.append(child)
    return found


@contextlib.contextmanager
def _locked_repository(
    project: ProjectSettings, settings: GlobalSettings
) -> Iterator[subprocess.Popen[bytes]]:
    """A real restic process holding a lock on the repository (a backup from a stdin
    that does not end), as a run killed mid-backup would have held it."""
    env, argv = restic_environment(project, settings)
    locks = Path(project.restic.repository_path) / "locks"
    deadline = time.monotonic() + 30
    while _restic_children() or any(locks.iterdir()):  # a sync's listing may still run
        assert time.monotonic() < deadline, "the repository stays locked"
        time.sleep(0.05)
    feeder = subprocess.Popen(["sleep", "120"], stdout=subprocess.PIPE)
    holder = subprocess.Popen([*argv, "backup", "--stdin", "-q"], stdin=feeder.stdout, env=env)
    try:
        deadline = time.monotonic() + 30
        while not any(locks.iterdir()):
            assert time.monotonic() < deadline, "restic took no lock"
            time.sleep(0.05)
        yield holder
    finally:
        holder.kill()
        holder.wait()
        feeder.kill()
        feeder.wait()


def test_a_stale_lock_of_a_killed_restic_heals_itself(
    tmp_path: Path, template_repo: Path, source: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A killed restic left a lock that failed every later prune until `recover`."""
    repo = tmp_path / "repo"
    shutil.copytree(template_repo, repo)
    daily = RetentionSettings(keep_daily=1, keep_weekly=0, keep_monthly=0)
    project = _project(str(repo), retention=daily)
    settings = GlobalSettings(backup_base_dir=tmp_path / "base")
    plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=TAGS)
    with _locked_repository(project, settings) as holder:
        pass  # SIGKILLed on leaving: its lock stays behind, its PID is gone
    assert any((repo / "locks").iterdir())

    plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=TAGS)
    assert (
        plugin.backupctl_prune(
            project=project, settings=settings, reclaim=IF_FORGOTTEN
        ).snapshots_removed
        == 1
    )
    assert "stale locks removed, trying again" in caplog.text
    assert f"locked by PID {holder.pid} on {socket.gethostname()}" in caplog.text


def test_a_live_lock_is_never_removed(tmp_path: Path, template_repo: Path, source: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(template_repo, repo)
    settings = GlobalSettings(backup_base_dir=tmp_path / "base")
    project = _project(str(repo), retention=RetentionSettings(keep_last=1))
    plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=TAGS)
    with _locked_repository(project, settings) as holder:
        with pytest.raises(PluginError, match="locked by another restic process"):
            plugin.backupctl_prune(project=project, settings=settings, reclaim=IF_FORGOTTEN)
        assert holder.poll() is None and any((repo / "locks").iterdir())


def test_check_fails_for_a_local_repository_that_cannot_be_created(tmp_path: Path) -> None:
    """It said "does not exist yet; the first backup creates it": it could not."""
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)],
                             capture_output=True)  # fmt: skip
    assert mounted.returncode == 0, f"cannot mount a tmpfs: {mounted.stderr!r}"
    try:
        project = _project(str(readonly / "repos" / "p"))
        settings = GlobalSettings(backup_base_dir=tmp_path / "base")
        [_, check] = plugin.backupctl_check(project=project, settings=settings)
    finally:
        subprocess.run(["umount", "-l", str(readonly)], check=False)
    assert check.status == "fail"
    assert check.detail.endswith(
        f"does not exist and cannot be created: {readonly} is not writable for this user (uid 0)"
    )


def test_check_fails_for_an_sftp_repository_the_storage_user_cannot_create(
    sftp_server: SftpServer,
) -> None:
    settings = GlobalSettings(ssh=sftp_server.ssh_settings())
    locked = sftp_server.root_owned_folder("readonly")  # the storage user may not write here
    [_, check] = plugin.backupctl_check(project=_project(f"{locked}/repos/p"), settings=settings)
    assert check.status == "fail"
    assert f"the storage user cannot create folders in {locked}" in check.detail
    assert "Permission denied" in check.detail
    writable = sftp_server.new_repo_path("probe-ok")
    [_, check] = plugin.backupctl_check(project=_project(f"{writable}/deeper/p"), settings=settings)
    assert check.status == "warn" and "the first backup creates it" in check.detail
    probes = [n for n in sftp_server.listing(str(sftp_server.repos_dir)) if "probe" in n]
    assert probes == []  # created beside the nearest existing folder, then removed


def _original_tool_snapshot(
    project: ProjectSettings, settings: GlobalSettings, dumps: Path, assets: Path, day: int
) -> None:
    """A snapshot as the original TypeScript backupctl made it: one per run, the dump
    and the assets, tagged project:, a unique timestamp: and db:<type>."""
    stamp = f"202601{day:02d}_020000"
    dump = dumps / f"p_backup_{stamp}.dump"
    dump.write_text(f"dump of day {day}")
    env, argv = restic_environment(project, settings)
    subprocess.run(
        [*argv, "backup", "--quiet", "--time", f"2026-01-{day:02d} 02:00:00",
         "--tag", f"project:p,timestamp:{stamp},db:postgres", str(dump), str(assets)],
        env=env, check=True, capture_output=True,
    )  # fmt: skip


def test_a_run_lists_the_snapshots_only_when_it_remembers_no_series(
    tmp_path: Path, template_repo: Path, source: Path, restic_argv_log: Path
) -> None:
    """What forget kept is remembered (remembered.py): later runs start no `restic
    snapshots`. A series another writer started is pruned once the memory is a
    week old, never before it is known."""
    log = restic_argv_log
    shutil.copytree(template_repo, tmp_path / "repo")
    last = RetentionSettings(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    project = _project(str(tmp_path / "repo"), retention=last)
    settings = GlobalSettings(backup_base_dir=tmp_path / "base")

    def run_once() -> tuple[int, list[str]]:
        log.write_text("")
        plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=TAGS)
        result = plugin.backupctl_prune(project=project, settings=settings, reclaim=Reclaim.NO)
        calls = sorted(line.split()[0] for line in log.read_text().splitlines())
        return result.snapshots_removed, calls  # sorted: the listing runs beside the backup

    assert run_once() == (0, ["backup", "forget", "snapshots"])  # nothing remembered yet
    assert run_once() == (1, ["backup", "forget"])

    dumps = tmp_path / "data" / "p"
    dumps.mkdir(parents=True)
    _original_tool_snapshot(project, settings, dumps, source, 1)  # written by another tool
    assert run_once() == (1, ["backup", "forget"])  # ours only: the original is not known
    assert any("timestamp:20260101_020000" in s.tags
               for s in plugin.backupctl_snapshots(project=project, settings=settings))  # fmt: skip

    memory = remembered.file_of(settings, f"local:{tmp_path / 'repo'}", "p")
    document = json.loads(memory.read_text())
    week_ago = datetime.now(UTC) - timedelta(seconds=remembered.REFRESH_SECONDS + 60)
    memory.write_text(json.dumps(dict(document, listed_at=week_ago.isoformat())))
    assert run_once() == (2, ["backup", "forget", "snapshots"])  # listed: ours and the original
    left = plugin.backupctl_snapshots(project=project, settings=settings)
    assert [s.tags for s in left] == [TAGS]


@pytest.mark.parametrize(
    ("mode", "removed", "left"),
    [
        # one series: 3 originals (Jan 1-3) + 2 of ours (today): keep_daily 2 keeps
        # today's newest and Jan 3
        ("combined", 3, {"backupctl:combined": 1, "original": 1}),
        # the originals are a series of their own (Jan 2 and 3 stay), ours another
        # (today's newest stays)
        ("separate", 2, {"backupctl:combined": 1, "original": 2}),
    ],
)
def test_prune_treats_the_original_tool_s_snapshots_as_a_series(
    tmp_path: Path, template_repo: Path, source: Path, mode: str, removed: int,
    left: dict[str, int],
) -> None:  # fmt: skip
    """Their unique timestamp: tag made each a group of one: never pruned."""
    repo = tmp_path / "repo"
    shutil.copytree(template_repo, repo)
    retention = RetentionSettings(keep_daily=2, keep_weekly=0, keep_monthly=0)
    project = attrs.evolve(
        _project(str(repo), retention=retention),
        restic=ResticSettings(repository_path=str(repo), password=Secret(PASSWORD),
                              snapshot_mode=mode),  # type: ignore[arg-type]
    )  # fmt: skip
    settings = GlobalSettings(backup_base_dir=tmp_path / "base")
    dumps = tmp_path / "data" / "p"
    dumps.mkdir(parents=True)
    for day in (1, 2, 3):
        _original_tool_snapshot(project, settings, dumps, source, day)
    for _ in range(2):  # ours today: in separate mode still tagged combined here
        plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=TAGS)
    env, argv = restic_environment(project, settings)
    subprocess.run([*argv, "backup", "--quiet", "--tag", "project:p", str(source)], env=env,
                   check=True, capture_output=True)  # made by hand: in no series  # fmt: skip

    result = plugin.backupctl_prune(project=project, settings=settings, reclaim=IF_FORGOTTEN)

    assert result.snapshots_removed == removed
    kept = plugin.backupctl_snapshots(project=project, settings=settings)
    kinds = [
        "backupctl:combined" if "backupctl:combined" in s.tags
        else "original" if any(t.startswith("timestamp:") for t in s.tags) else "by hand"
        for s in kept
    ]  # fmt: skip
    assert kinds.count("by hand") == 1  # never attributed, never removed
    assert {k: kinds.count(k) for k in left} == left
    originals = sorted(t for s in kept for t in s.tags if t.startswith("timestamp:"))
    days = ["03"] if mode == "combined" else ["02", "03"]
    assert originals == [f"timestamp:202601{day}_020000" for day in days]


def test_dump_timeout_minutes_also_limits_the_upload(
    tmp_path: Path, template_repo: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The original tool's key covers `restic backup` too: killed with its children."""
    shims = tmp_path / "bin"
    shims.mkdir()
    child = tmp_path / "child.pid"
    (shims / "restic").write_text(
        "#!/bin/sh\n"
        f'case "$*" in *backup*) sleep 60 & echo $! > {child}; wait;; esac\n'
        f'exec {shutil.which("restic")} "$@"\n'
    )
    (shims / "restic").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    monkeypatch.setattr(plugin, "SECONDS_PER_MINUTE", 0.5)  # 1 "minute" = 0.5 s here
    repo = tmp_path / "repo"
    shutil.copytree(template_repo, repo)
    project = attrs.evolve(
        _project(str(repo)),
        database=DatabaseSettings(type="postgres", name="d", dump_timeout_minutes=1),
    )
    settings = GlobalSettings(backup_base_dir=tmp_path / "base")
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=TAGS)
    assert caught.value.message == (
        "restic backup timed out after 1 min (database.dump_timeout_minutes)"
    )
    assert caught.value.retryable is False
    import psutil

    def gone(pid: int) -> bool:  # dead, or a zombie nobody reaps in this container
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    deadline = time.monotonic() + 5
    while not gone(int(child.read_text())):  # the whole process group was killed
        assert time.monotonic() < deadline, "restic's child outlived the time limit"
        time.sleep(0.05)


# -- one SSH connection per run ---------------------------------------------------------


def _wait_for(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_run_session_logs_in_once_for_all_the_runs_restic_calls(
    sftp_server: SftpServer, tmp_path: Path, source: Path, template_repo: Path
) -> None:
    from backupctl_core.plugin_kit import ssh

    project, settings = _sftp_project(sftp_server, tmp_path)
    project = attrs.evolve(project, retention=RetentionSettings(keep_last=1))
    _copy_repo(template_repo, project.restic.repository_path, sftp_server)

    def logins() -> int:
        return sftp_server.log_path.read_text(errors="replace").count("Accepted publickey")

    plugin.backupctl_snapshots(project=project, settings=settings)  # without: one each
    before = logins()
    plugin.backupctl_snapshots(project=project, settings=settings)
    assert logins() == before + 1

    session = plugin.backupctl_run_session(project=project, settings=settings)
    assert session is not None
    before = logins()
    with session:
        socket = ssh.socket_of(project.name)
        assert socket is not None and len(str(socket)) <= ssh.MAX_SOCKET_PATH
        _wait_for(socket.exists)  # the master logs in while the dump would run
        for _ in range(2):
            plugin.backupctl_sync(project=project, settings=settings, paths=[source], tags=TAGS)
        pruned = plugin.backupctl_prune(project=project, settings=settings, reclaim=Reclaim.YES)
        assert pruned.snapshots_removed == 1 and pruned.space_reclaimed
        assert len(plugin.backupctl_snapshots(project=project, settings=settings)) == 1
        assert oct(socket.parent.stat().st_mode & 0o777) == "0o700"
    assert logins() == before + 1
    assert ssh.socket_of(project.name) is None and not socket.parent.exists()
    masters = [
        p
        for p in psutil.process_iter(["cmdline"])
        if f"ControlPath={socket}" in (p.info["cmdline"] or [])
    ]
    _wait_for(lambda: not [p for p in masters if p.is_running() and p.status() != "zombie"])


def test_no_run_session_for_local_repositories_or_when_turned_off(
    sftp_server: SftpServer, tmp_path: Path
) -> None:
    project, settings = _sftp_project(sftp_server, tmp_path, shared_connection=False)
    assert plugin.backupctl_run_session(project=project, settings=settings) is None
    local = _project(str(tmp_path / "repo"))
    assert plugin.backupctl_run_session(project=local, settings=GlobalSettings()) is None


def test_a_master_that_cannot_log_in_leaves_every_call_working_on_its_own(
    sftp_server: SftpServer, tmp_path: Path, source: Path, template_repo: Path
) -> None:
    """The master fails (here: its port is closed while the calls use the real one);
    each restic ssh then connects by itself, as without a session."""
    from backupctl_core.plugin_kit import ssh

    project, settings = _sftp_project(sftp_server, tmp_path)
    _copy_repo(template_repo, project.restic.repository_path, sftp_server)
    closed = _free_port()
    argv = plugin.ssh_command(attrs.evolve(settings, ssh=attrs.evolve(settings.ssh, port=closed)))
    with ssh.shared_connection(project.name, argv[:-3], argv[-3]):
        result = plugin.backupctl_sync(
            project=project, settings=settings, paths=[source], tags=TAGS
        )
    assert result.files_new == 3
