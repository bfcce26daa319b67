"""prune, cache, the restic passthrough and project-name completion, on real plugins
(SQLite dumper, restic on local repositories, an SFTP one for connectivity errors):
click's runner for output, the installed executable for exit codes and exec."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import click
import pytest
from backupctl_restic import restic_environment
from click.shell_completion import ShellComplete
from click.testing import CliRunner

from backupctl_core.cli.completion import complete_projects
from backupctl_core.cli.main import cli
from backupctl_core.runtime.lock import ProjectLock
from backupctl_core.testing.sftp import SftpServer
from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace

BACKUPCTL = str(Path(sys.executable).with_name("backupctl"))
PASSWORD = "repo-pw-Xq93-never-on-argv"
KEEP_ONE_DAILY = {"keep_daily": 1, "keep_weekly": 0, "keep_monthly": 0}


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two initialised repositories with different ids (``restic init`` takes seconds:
    it calibrates its KDF, so both start at once and tests get copies)."""
    root = tmp_path_factory.mktemp("templates")
    paths = [root / "repo-a", root / "repo-b"]
    inits = [
        subprocess.Popen(
            ["restic", "init", "--no-cache"],
            env={**os.environ, "RESTIC_PASSWORD": PASSWORD, "RESTIC_REPOSITORY": str(path)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for path in paths
    ]
    for init in inits:
        assert init.wait(timeout=120) == 0
    return paths


@pytest.fixture
def ws(tmp_path: Path, templates: list[Path]) -> Workspace:
    """Project ``shop`` on ``repo`` (an existing repository, keep 1 daily)."""
    shutil.copytree(templates[0], tmp_path / "repo")
    workspace = Workspace(tmp_path)
    workspace.write_env(RESTIC_PASSWORD=PASSWORD)
    make_sqlite_db(tmp_path / "shop.sqlite")
    workspace.write_config([shop(tmp_path)])
    return workspace


def shop(root: Path, name: str = "shop", repo: str = "repo", **extra: object) -> dict[str, object]:
    extra.setdefault("retention", KEEP_ONE_DAILY)
    return sqlite_project(name, root / "shop.sqlite", root / repo, **extra)


def invoke(ws: Workspace, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [*ws.cli_args(), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def executable(
    ws: Workspace, *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BACKUPCTL, *ws.cli_args(), *args],
        capture_output=True, text=True, input=input,
        env={**os.environ, **(env or {})}, timeout=120,
    )  # fmt: skip


def restic(ws: Workspace, project: str, *args: str) -> subprocess.CompletedProcess[str]:
    """restic run directly (not through backupctl) on a project's repository."""
    config = ws.load()
    env, argv = restic_environment(config.project(project), config.settings)
    return subprocess.run([*argv, *args], env=env, capture_output=True, text=True, timeout=120)


def snapshot(ws: Workspace, project: str, tag_project: str | None = None) -> str:
    """One snapshot shaped like the pipeline's (project and mode tags); its short id."""
    source = ws.root / "shop.sqlite"
    tags = ["--tag", f"project:{tag_project or project}", "--tag", "backupctl:combined"]
    done = restic(ws, project, "backup", "--json", *tags, str(source))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    snapshot_id: str = summary["snapshot_id"]
    return snapshot_id


def project_snapshots(ws: Workspace, tag: str) -> list[str]:
    done = restic(ws, "shop", "snapshots", "--json", "--tag", tag)
    assert done.returncode == 0, done.stderr
    return [s["short_id"] for s in json.loads(done.stdout)]


def repository_id(ws: Workspace, project: str) -> str:
    done = restic(ws, project, "cat", "config", "--no-cache")
    assert done.returncode == 0, done.stderr
    repo_id: str = json.loads(done.stdout)["id"]
    return repo_id


def cache_root(ws: Workspace) -> Path:
    return ws.base_dir / ".cache" / "restic"


# -- prune ---------------------------------------------------------------------------------


def test_prune_applies_the_retention_policy(ws: Workspace) -> None:
    first, second, newest = (snapshot(ws, "shop") for _ in range(3))
    (other,) = [snapshot(ws, "shop", tag_project="other")]  # another project, same repo
    code, out, err = invoke(ws, "prune", "shop")
    assert code == 0, err
    # what restic's prune summary says the two forgotten snapshots alone held (the
    # same data as the newest here, so often 0 B: the plugin tests check the bytes)
    assert re.fullmatch(r"shop: 2 snapshot\(s\) removed, [\d.]+ (B|KB) freed\n", out), out
    # Same day, keep_daily=1: only the newest of the project is kept...
    assert project_snapshots(ws, "project:shop") == [newest]
    assert {first, second}.isdisjoint(project_snapshots(ws, "project:shop"))
    # ...and another project's snapshots in the same repository are left alone.
    assert project_snapshots(ws, "project:other") == [other]
    code, out, _ = invoke(ws, "prune", "shop")
    assert code == 0 and out == "shop: 0 snapshot(s) removed, 0 B freed\n"


def test_prune_all_partial_success_exits_5(ws: Workspace, tmp_path: Path) -> None:
    ws.write_config(
        [
            shop(tmp_path, "good"),
            shop(tmp_path, "gone", repo="no-such-repo"),
            shop(tmp_path, "off", enabled=False),
            shop(tmp_path, "also-good"),
        ]
    )
    snapshot(ws, "good")
    snapshot(ws, "good")
    result = executable(ws, "prune", "--all")
    assert result.returncode == 5, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"good: 1 snapshot\(s\) removed, [\d.]+ (B|KB) freed", lines[0])
    assert lines[1].startswith("gone: FAILED: restic snapshots failed: no restic repository")
    assert lines[2] == "also-good: 0 snapshot(s) removed, 0 B freed"
    assert lines[3] == "Summary: 2/3 projects pruned"
    assert "off" not in result.stdout and "Traceback" not in result.stderr


def test_prune_all_everything_failing_exits_1(ws: Workspace, tmp_path: Path) -> None:
    ws.write_config([shop(tmp_path, "gone", repo="no-such-repo")])
    result = executable(ws, "prune", "--all")
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "Summary: 0/1 projects pruned"


def test_prune_of_a_missing_repository_is_one_line_exit_1(ws: Workspace, tmp_path: Path) -> None:
    ws.write_config([shop(tmp_path, "gone", repo="no-such-repo")])
    result = executable(ws, "prune", "gone")
    assert result.returncode == 1
    assert result.stderr.startswith("error: restic snapshots failed: no restic repository")
    assert len(result.stderr.splitlines()) == 1


def test_prune_while_the_project_is_locked_exits_2(ws: Workspace) -> None:
    ids = [snapshot(ws, "shop"), snapshot(ws, "shop")]
    lock = ProjectLock(ws.base_dir / "shop", "shop")
    lock.acquire()
    try:
        result = executable(ws, "prune", "shop")
        all_result = executable(ws, "prune", "--all")
    finally:
        lock.release()
    assert result.returncode == 2
    assert f"already in progress (PID {os.getpid()} since" in result.stderr
    assert all_result.returncode == 1 and "shop: FAILED: backup of 'shop'" in all_result.stdout
    assert sorted(project_snapshots(ws, "project:shop")) == sorted(ids)  # nothing pruned


def test_prune_and_cache_usage_errors_exit_1(ws: Workspace) -> None:
    for args in (
        ["prune"],
        ["prune", "shop", "--all"],
        ["cache"],
        ["cache", "shop", "--clear-all"],
        ["cache", "--clear", "--clear-all"],
        ["restic"],
    ):
        assert executable(ws, *args).returncode == 1, args
    for args in (["prune", "nope"], ["cache", "nope"], ["restic", "nope", "snapshots"]):
        result = executable(ws, *args)
        assert result.returncode == 3, args
        assert result.stderr.strip() == "error: unknown project 'nope' (known projects: shop)"


# -- cache ---------------------------------------------------------------------------------


def test_cache_shows_the_projects_restic_cache_after_a_backup(ws: Workspace) -> None:
    assert invoke(ws, "db", "migrate")[0] == 0
    code, out, err = invoke(ws, "run", "shop")
    assert code == 0, out + err
    expected = cache_root(ws) / repository_id(ws, "shop")

    code, out, _ = invoke(ws, "cache", "shop", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["project"] == "shop" and data["cleared"] is False
    assert Path(data["path"]) == expected and expected.is_dir()
    assert data["size_bytes"] > 0

    code, out, _ = invoke(ws, "cache", "shop")
    assert code == 0
    assert out.startswith("shop: ") and out.rstrip().endswith(f" in {expected}")
    assert any(unit in out for unit in (" B ", " KB ", " MB "))


@pytest.fixture
def two(ws: Workspace, tmp_path: Path, templates: list[Path]) -> Workspace:
    """``shop`` and ``blog`` on two different repositories, each with a snapshot and
    so a cache; plus a stranger's cache folder that is no project's."""
    shutil.copytree(templates[1], tmp_path / "repo2")
    ws.write_config([shop(tmp_path), shop(tmp_path, "blog", repo="repo2")])
    snapshot(ws, "shop")
    snapshot(ws, "blog")
    stranger = cache_root(ws) / ("f" * 64)
    stranger.mkdir(parents=True)
    (stranger / "data").write_text("someone else's")
    return ws


def test_cache_clear_only_touches_that_project(two: Workspace) -> None:
    ws = two
    shop_cache = cache_root(ws) / repository_id(ws, "shop")
    blog_cache = cache_root(ws) / repository_id(ws, "blog")
    assert shop_cache != blog_cache and shop_cache.is_dir() and blog_cache.is_dir()

    code, out, err = invoke(ws, "cache", "shop", "--clear")
    assert code == 0, err
    assert out.startswith("shop: cleared ") and out.rstrip().endswith(f"({shop_cache})")
    assert not shop_cache.exists()
    assert blog_cache.is_dir() and (cache_root(ws) / ("f" * 64) / "data").is_file()
    assert (cache_root(ws) / "CACHEDIR.TAG").is_file()  # the shared parent stays

    code, out, _ = invoke(ws, "cache", "shop")
    assert code == 0 and out.strip() == f"shop: no cache yet ({shop_cache})"
    code, out, _ = invoke(ws, "cache", "shop", "--clear")
    assert code == 0 and out.strip() == f"shop: nothing to clear ({shop_cache})"
    code, out, _ = invoke(ws, "cache", "shop", "--json")
    assert json.loads(out) == {
        "project": "shop", "path": str(shop_cache), "size_bytes": 0, "cleared": False,
    }  # fmt: skip
    assert not shop_cache.exists()  # asking about the cache does not create it


def test_cache_clear_all(two: Workspace, tmp_path: Path) -> None:
    ws = two
    ws.write_config(
        [
            shop(tmp_path),
            shop(tmp_path, "gone", repo="no-such-repo"),
            shop(tmp_path, "blog", repo="repo2"),
        ]
    )
    caches = [cache_root(ws) / repository_id(ws, name) for name in ("shop", "blog")]
    result = executable(ws, "cache", "--clear-all")
    assert result.returncode == 5, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("shop: cleared ")
    assert lines[1].startswith("gone: FAILED: ") and "does not exist yet" in lines[1]
    assert lines[2].startswith("blog: cleared ")
    assert not any(path.exists() for path in caches)
    assert (cache_root(ws) / ("f" * 64) / "data").is_file()

    ws.write_config([shop(tmp_path), shop(tmp_path, "blog", repo="repo2")])
    snapshot(ws, "blog")
    result = executable(ws, "cache", "--clear-all", "--json")
    assert result.returncode == 0, result.stderr
    shop_row, blog_row = json.loads(result.stdout)
    assert shop_row["cleared"] is False and blog_row["cleared"] is True
    assert blog_row["size_bytes"] > 0 and blog_row["path"] == str(caches[1])


def test_cache_clear_while_locked_exits_2(two: Workspace) -> None:
    ws = two
    shop_cache = cache_root(ws) / repository_id(ws, "shop")
    with ProjectLock(ws.base_dir / "shop", "shop"):
        result = executable(ws, "cache", "shop", "--clear")
        shown = executable(ws, "cache", "shop")  # looking needs no lock
    assert result.returncode == 2 and "already in progress" in result.stderr
    assert shown.returncode == 0
    assert shop_cache.is_dir()


def test_cache_of_a_missing_repository_exits_1(ws: Workspace, tmp_path: Path) -> None:
    ws.write_config([shop(tmp_path, "gone", repo="no-such-repo")])
    result = executable(ws, "cache", "gone")
    assert result.returncode == 1
    assert "does not exist yet, so it has no cache" in result.stderr


def test_unreachable_sftp_repository_exits_4(tmp_path: Path, sftp_server: SftpServer) -> None:
    ws = Workspace(tmp_path)
    ws.write_env(
        RESTIC_PASSWORD=PASSWORD,
        HETZNER_SSH_HOST=sftp_server.host,
        HETZNER_SSH_PORT=str(sftp_server.port),
        HETZNER_SSH_USER=sftp_server.user,
        HETZNER_SSH_KEY_PATH=str(sftp_server.key_path),
    )
    make_sqlite_db(tmp_path / "shop.sqlite")
    ws.write_config(
        [sqlite_project("far", tmp_path / "shop.sqlite", Path(sftp_server.new_repo_path("far")))]
    )
    with sftp_server.stopped():
        for args in (["prune", "far"], ["cache", "far"], ["cache", "far", "--clear"]):
            result = executable(ws, *args)
            assert result.returncode == 4, (args, result.stderr)
            assert result.stderr.startswith("error: restic ")
            assert "cannot reach the SFTP server" in result.stderr
            assert len(result.stderr.splitlines()) == 1 and PASSWORD not in result.stderr


# -- restic passthrough --------------------------------------------------------------------


def test_passthrough_prints_restics_output(ws: Workspace) -> None:
    ids = {snapshot(ws, "shop"), snapshot(ws, "shop", tag_project="other")}
    result = executable(ws, "restic", "shop", "snapshots", "--json")
    assert result.returncode == 0, result.stderr
    assert {s["short_id"] for s in json.loads(result.stdout)} == ids  # the whole repository
    # Options after the project are restic's, even ones backupctl also knows.
    result = executable(ws, "restic", "shop", "snapshots", "--tag", "project:other", "--json")
    assert [s["tags"] for s in json.loads(result.stdout)] == [
        ["project:other", "backupctl:combined"]
    ]
    result = executable(ws, "restic", "shop", "--help")
    assert result.returncode == 0 and "restic is a backup program" in result.stdout


def test_passthrough_exit_code_and_stderr_are_restics(ws: Workspace) -> None:
    for args in (["cat", "blob", "0000"], ["bogus-command"]):
        direct = restic(ws, "shop", *args)
        result = executable(ws, "restic", "shop", *args)
        assert direct.returncode != 0
        assert result.returncode == direct.returncode, args
        assert result.stderr == direct.stderr and result.stdout == direct.stdout
    assert executable(ws, "restic", "shop", "check").returncode == 0


def test_passthrough_stdin_and_long_running_restic_replaces_backupctl(ws: Workspace) -> None:
    """``backup --stdin`` waits for its input: meanwhile the running process is restic
    itself (same PID as the backupctl we started), its argv has no password, its
    environment does; then the data fed to stdin comes back with ``dump``."""
    process = subprocess.Popen(
        [BACKUPCTL, *ws.cli_args(), "restic", "shop", "backup", "--stdin",
         "--stdin-filename", "x.txt", "--tag", "project:shop"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        # The exe link changes early in execve, the new argv a moment later: wait for both.
        while True:
            cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
            exe = os.readlink(f"/proc/{process.pid}/exe")
            if exe.endswith("/restic") and cmdline[0].endswith(b"restic"):
                break
            assert time.monotonic() < deadline, "backupctl never became restic"
            time.sleep(0.05)
        environ = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
        stdout, stderr = process.communicate("passed through stdin ✓\n", timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, stderr
    assert PASSWORD.encode() not in b" ".join(cmdline)
    assert cmdline[1:4] == [b"backup", b"--stdin", b"--stdin-filename"]
    assert f"RESTIC_PASSWORD={PASSWORD}".encode() in environ
    assert f"RESTIC_CACHE_DIR={cache_root(ws)}".encode() in environ
    assert "snapshot" in stdout

    result = executable(ws, "restic", "shop", "dump", "latest", "x.txt")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "passed through stdin ✓\n"
    # And the same with stdin fed by subprocess.run's input.
    result = executable(
        ws, "restic", "shop", "backup", "--stdin", "--stdin-filename", "y.txt", input="why\n"
    )
    assert result.returncode == 0, result.stderr
    assert executable(ws, "restic", "shop", "dump", "latest", "y.txt").stdout == "why\n"


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """A ``restic`` first on PATH that records its PID, argv, repository settings and
    ignored signals, then exits 7."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "record"
    script = bin_dir / "restic"
    script.write_text(
        "#!/bin/sh\n"
        f"exec 3>{record}\n"
        'echo "pid=$$" >&3\n'
        'echo "password=$RESTIC_PASSWORD" >&3\n'
        'echo "repository=$RESTIC_REPOSITORY" >&3\n'
        "grep '^SigIgn:' /proc/$$/status >&3\n"
        'for arg in "$0" "$@"; do echo "arg=$arg" >&3; done\n'
        "echo stand-in out; echo stand-in err >&2\n"
        "exit 7\n"
    )
    script.chmod(0o755)
    yield {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, record


def test_passthrough_password_only_in_the_environment(
    ws: Workspace, stand_in: tuple[dict[str, str], Path]
) -> None:
    env, record = stand_in
    args = ["snapshots", "--password-file", "-", "--help", "--", "-v", "a b"]
    process = subprocess.Popen(
        [BACKUPCTL, *ws.cli_args(), "restic", "shop", *args],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 7
    assert (stdout, stderr) == ("stand-in out\n", "stand-in err\n")
    lines = record.read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if not line.startswith(("arg=", "SigIgn")))
    assert values["pid"] == str(process.pid)  # exec: restic replaced backupctl
    assert values["password"] == PASSWORD
    assert values["repository"] == f"local:{ws.root / 'repo'}"
    argv = [line.removeprefix("arg=") for line in lines if line.startswith("arg=")]
    assert argv == [str(env["PATH"].split(os.pathsep)[0] + "/restic"), *args]  # untouched
    assert not any(PASSWORD in arg for arg in argv)
    (ignored,) = [line.split()[1] for line in lines if line.startswith("SigIgn:")]
    assert not int(ignored, 16) & (1 << (signal.SIGPIPE - 1))  # restic may die of SIGPIPE


# -- completion ----------------------------------------------------------------------------


def _completion_context(params: Mapping[str, object], command: click.Command) -> click.Context:
    root = click.Context(cli, info_name="backupctl")
    root.params.update(params)
    return click.Context(command, parent=root, info_name=command.name)


def _command(name: str) -> click.Command:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    return command


def _names(ctx: click.Context, incomplete: str) -> list[str]:
    param = ctx.command.params[0]
    return [item.value for item in complete_projects(ctx, param, incomplete)]


def test_completion_of_project_names(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.write_config([shop(tmp_path), shop(tmp_path, "blog"), shop(tmp_path, "shed")])
    files = {"config_path": ws.config_path, "env_path": ws.env_path}
    for name in ("prune", "cache", "restic"):
        ctx = _completion_context(files, _command(name))
        assert _names(ctx, "") == ["shop", "blog", "shed"]
        assert _names(ctx, "sh") == ["shop", "shed"]
        assert _names(ctx, "x") == []

    # From BACKUPCTL_CONFIG / BACKUPCTL_ENV_FILE when the command line names nothing.
    monkeypatch.setenv("BACKUPCTL_CONFIG", str(ws.config_path))
    monkeypatch.setenv("BACKUPCTL_ENV_FILE", str(ws.env_path))
    assert _names(_completion_context({}, _command("prune")), "b") == ["blog"]

    # A config that does not load (a ${VAR} not set) still completes...
    ws.env.pop("RESTIC_PASSWORD")
    ws.write_env()
    assert _names(_completion_context(files, _command("cache")), "") == ["shop", "blog", "shed"]
    # ...and no config, or garbage, completes nothing, without raising.
    nothing = {"config_path": tmp_path / "none.yml", "env_path": ws.env_path}
    assert _names(_completion_context(nothing, _command("cache")), "") == []
    ws.config_path.write_text("projects: [unclosed\n")
    assert _names(_completion_context(files, _command("cache")), "") == []


def test_completion_through_click(ws: Workspace, tmp_path: Path) -> None:
    ws.write_config([shop(tmp_path), shop(tmp_path, "blog")])
    completer = ShellComplete(cli, {}, "backupctl", "_BACKUPCTL_COMPLETE")
    for command in ("prune", "cache", "restic"):
        found = completer.get_completions([*ws.cli_args(), command], "")
        assert [item.value for item in found] == ["shop", "blog"], command
    # After the project, restic's arguments are not project names.
    found = completer.get_completions([*ws.cli_args(), "restic", "shop"], "b")
    assert [item.value for item in found] != ["blog"]
    # The installed executable, as bash calls it.
    result = subprocess.run(
        [BACKUPCTL], capture_output=True, text=True, timeout=60,
        env={**os.environ, "_BACKUPCTL_COMPLETE": "bash_complete",
             "COMP_WORDS": f"backupctl --config {ws.config_path} prune b", "COMP_CWORD": "4"},
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.split() == ["plain,blog"]
