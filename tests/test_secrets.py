"""Secrets from anywhere, masked everywhere; each child process sees only its own.

Real runs of the CLI (SQLite project, local restic repository) with sentinel secrets
in .env, in the process environment and inside hook commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace

BACKUPCTL = str(Path(sys.executable).with_name("backupctl"))
IN_ENV_FILE = "envfile-secret-6120"  # OTHER_DB_PASSWORD in .env, put into a hook
IN_PROCESS = "process-secret-4242"  # in the process environment, as Docker's env_file does
HOOK_ONLY = "hook-value-9917"  # a harmless name, but its value went into a hook


def backupctl(
    ws: Workspace, *args: str, path: str | None = None, tmpdir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHOP_DB_PASSWORD": IN_PROCESS, "AWS_SECRET_ACCESS_KEY": IN_PROCESS}
    if path:
        env["PATH"] = path
    if tmpdir:
        env["TMPDIR"] = str(tmpdir)
    return subprocess.run(
        [BACKUPCTL, *ws.cli_args(), *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_secrets_in_hooks_are_masked_in_every_output(tmp_path: Path) -> None:
    """A hook written with ${OTHER_DB_PASSWORD} showed it in clear in config show, the
    run's output, the log file, the audit rows and everything built from them."""
    ws = Workspace(tmp_path)
    ws.write_env(RESTIC_PASSWORD="restic-pw-1234", OTHER_DB_PASSWORD=IN_ENV_FILE,
                 MAINTENANCE=HOOK_ONLY)  # fmt: skip
    make_sqlite_db(tmp_path / "shop.sqlite")
    hook = "echo connecting with ${OTHER_DB_PASSWORD} ${MAINTENANCE}; exit 3"
    ws.write_config([sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo",
                                    hooks={"pre_backup": hook})])  # fmt: skip
    assert backupctl(ws, "db", "migrate").returncode == 0
    run = backupctl(ws, "run", "shop")
    assert run.returncode == 1
    # The error once, on stderr (the result line on stdout names only the stage).
    assert "hook exited with 3: echo connecting with ******** ********" in run.stderr
    assert "FAILED at Pre-backup hook" in run.stdout
    shown = backupctl(ws, "config", "show", "shop").stdout
    assert "${OTHER_DB_PASSWORD} ${MAINTENANCE}" in shown  # the reference, not the value
    logs = backupctl(ws, "logs", "shop", "--json").stdout
    status = backupctl(ws, "status", "--json").stdout
    log_files = "".join(p.read_text() for p in (ws.base_dir / ".logs").glob("*.log*"))
    assert "********" in json.loads(logs)[0]["error_message"]
    # The unauthenticated HTTP /status/<project> and the fallback file (notifications
    # kept for later: NOTIFICATION_TYPE none keeps none, so read what the store holds).
    from backupctl_core.plugins import get_plugin_manager
    from backupctl_core.runtime.service import BackupService

    service = BackupService(ws.config_path, ws.env_path, get_plugin_manager())
    code, body = service.route("/status/shop")
    http = json.dumps(body)
    service.store.close()
    assert code == 200 and "********" in http
    fallback = "".join(p.read_text() for p in ws.base_dir.rglob("*.jsonl"))
    for output in (run.stdout, run.stderr, shown, logs, status, log_files, http, fallback):
        for secret in (IN_ENV_FILE, HOOK_ONLY, IN_PROCESS):
            assert secret not in output


def test_children_get_only_their_own_secrets(tmp_path: Path) -> None:
    """Each hook and tool inherited every secret of the process environment."""
    ws = Workspace(tmp_path)
    ws.write_env(RESTIC_PASSWORD="restic-pw-1234", HOOK_SETTING="for-the-hook")
    make_sqlite_db(tmp_path / "shop.sqlite")
    seen = tmp_path / "seen"
    seen.mkdir()
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "restic").write_text(
        f'#!/bin/sh\nenv > {seen}/restic-$$.env\nexec {shutil.which("restic")} "$@"\n'
    )
    (shims / "restic").chmod(0o755)
    hooks = {"pre_backup": f"env > {seen}/hook.env", "env": {"APP": "${HOOK_SETTING}"}}
    ws.write_config([sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo",
                                    hooks=hooks)])  # fmt: skip
    assert backupctl(ws, "db", "migrate").returncode == 0
    run = backupctl(ws, "run", "shop", path=f"{shims}:{os.environ['PATH']}")
    assert run.returncode == 0, run.stdout + run.stderr

    hook_env = dict(line.split("=", 1) for line in (seen / "hook.env").read_text().splitlines()
                    if "=" in line)  # fmt: skip
    assert hook_env["APP"] == "for-the-hook" and hook_env["BACKUPCTL_PROJECT"] == "shop"
    assert set(hook_env) <= {"APP", "BACKUPCTL_PROJECT", "BACKUPCTL_RUN_ID", "BACKUPCTL_STATUS",
                             "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE",
                             "TZ", "TMPDIR", "TERM", "SSH_AUTH_SOCK", "SSL_CERT_FILE",
                             "SSL_CERT_DIR", "PWD", "SHLVL", "_", "OLDPWD"} | {
        k for k in hook_env if k.startswith("LC_")
    }  # fmt: skip
    restic_envs = [p.read_text() for p in seen.glob("restic-*.env")]
    assert restic_envs and all("RESTIC_PASSWORD=restic-pw-1234" in e for e in restic_envs)
    for text in [*restic_envs, (seen / "hook.env").read_text()]:
        assert IN_PROCESS not in text  # another project's password, an AWS key
        assert "restic-pw-1234" not in text or text in restic_envs


def test_read_only_commands_keep_their_scratch_files_out_of_tmp(tmp_path: Path) -> None:
    """issue 21, item 11: ``restore``, ``snapshots``, ``health`` and the dry run left
    ``/tmp/backupctl-restic-*`` (restic's scratch: ssh's log, stderr) when killed; only
    the commands that log to a file kept them under ``{BACKUP_BASE_DIR}/.tmp/{pid}``."""
    ws = Workspace(tmp_path)
    ws.write_env(RESTIC_PASSWORD="restic-pw-1234")
    make_sqlite_db(tmp_path / "shop.sqlite")
    ws.write_config([sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo")])
    assert backupctl(ws, "db", "migrate").returncode == 0
    assert backupctl(ws, "run", "shop").returncode == 0
    system_tmp, seen, shims = tmp_path / "systmp", tmp_path / "seen", tmp_path / "bin"
    for folder in (system_tmp, seen, shims):
        folder.mkdir()
    (shims / "restic").write_text(  # where restic's scratch folder is while restic runs
        f"#!/bin/sh\nls {system_tmp} >> {seen}/system\n"
        f"ls {ws.base_dir}/.tmp/*/ >> {seen}/private 2>/dev/null\n"
        f'exec {shutil.which("restic")} "$@"\n'
    )
    (shims / "restic").chmod(0o755)
    path = f"{shims}:{os.environ['PATH']}"
    for args in (["snapshots", "shop"], ["restore", "shop", "latest", str(tmp_path / "r")],
                 ["run", "shop", "--dry-run"]):  # fmt: skip
        done = backupctl(ws, *args, path=path, tmpdir=system_tmp)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "backupctl-restic-" not in (seen / "system").read_text()
    assert (seen / "private").read_text().count("backupctl-restic-") >= 3
    assert list(system_tmp.iterdir()) == []
