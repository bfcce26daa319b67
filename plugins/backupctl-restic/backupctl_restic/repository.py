"""Where a project's restic repository is and how restic reaches it.

Repository selection, from ``project.restic.repository_path`` (``path`` below):

* ``local:/some/dir`` -- a local repository, whatever the SSH settings say.
* no ``HETZNER_SSH_HOST`` (``settings.ssh.host``) -- a local repository at ``path``;
  a relative path is taken relative to the current directory.
* otherwise -- ``sftp:{user}@{host}:{path}``, reached with
  ``ssh -p PORT -i KEY -o UserKnownHostsFile=KNOWN -o StrictHostKeyChecking=yes
  -o BatchMode=yes ... user@host -s sftp``. ``KNOWN`` is the ``known_hosts`` file next
  to the key (the mounted ssh-keys folder) if there is one, else ``~/.ssh/known_hosts``.
  An unknown or changed host key fails the run; hosts are never trusted on first use.

The password (``restic.password``, else ``RESTIC_PASSWORD`` from .env) travels only in
the ``RESTIC_PASSWORD`` environment variable, never in argv. The cache lives in
``{BACKUP_BASE_DIR}/.cache/restic`` so every machine has a known cache location.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from backupctl_core import PluginError
from backupctl_core.plugin_kit import child_env
from backupctl_core.plugin_kit import ssh as ssh_kit

RESTIC_PROGRAM = "restic"
LOCAL_PREFIX = "local:"

# Inherited variables that would override or conflict with what we set: restic
# prefers a password file/command over RESTIC_PASSWORD, and refuses a repository
# file next to RESTIC_REPOSITORY.
_CONFLICTING_ENV = ("RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND", "RESTIC_REPOSITORY_FILE")

# restic splits sftp.command on whitespace and quotes itself, and ssh splits some
# option values again; such characters cannot be passed through safely.
_UNSAFE_IN_COMMAND = frozenset("\"'\\") | frozenset(" \t\n\r")


def is_sftp(project: Any, settings: Any) -> bool:
    """True when the project's repository is reached over SFTP."""
    path: str = project.restic.repository_path
    return not path.startswith(LOCAL_PREFIX) and bool(settings.ssh.host)


def repository_url(project: Any, settings: Any) -> str:
    """The value for ``RESTIC_REPOSITORY`` (contains no secret)."""
    path: str = project.restic.repository_path
    if not path.strip():
        raise PluginError(
            f"project {project.name}: restic.repository_path is empty", retryable=False
        )
    if not is_sftp(project, settings):
        local = path.removeprefix(LOCAL_PREFIX)
        return LOCAL_PREFIX + str(Path(local).expanduser().absolute())
    ssh = settings.ssh
    login = f"{ssh.user}@{ssh.host}" if ssh.user else str(ssh.host)
    return f"sftp:{login}:{path}"


def known_hosts_file(settings: Any) -> Path:
    """``known_hosts`` next to the SSH key if it exists, else ``~/.ssh/known_hosts``."""
    key_path = settings.ssh.key_path
    if key_path is not None:
        beside_key = Path(key_path).expanduser().parent / "known_hosts"
        if beside_key.is_file():
            return beside_key
    return Path.home() / ".ssh" / "known_hosts"


def ssh_command(
    settings: Any, log_file: Path | None = None, control_socket: Path | None = None
) -> list[str]:
    """The ssh argv restic runs to open its SFTP session (``sftp.command``).

    With ``log_file``, ssh writes its own errors (refused connection, unknown host
    key) there instead of to stderr: restic 0.14 relays ssh's stderr from a
    goroutine and sometimes exits before it does, losing the one useful line.
    With ``control_socket``, through the run's shared connection (plugin_kit.ssh).
    """
    ssh = settings.ssh
    argv = ["ssh", "-p", str(ssh.port)]
    if log_file is not None:
        argv += ["-E", str(log_file)]
    if ssh.key_path is not None:
        argv += ["-i", str(Path(ssh.key_path).expanduser()), "-o", "IdentitiesOnly=yes"]
    argv += [
        "-o",
        f"UserKnownHostsFile={known_hosts_file(settings)}",
        "-o",
        "StrictHostKeyChecking=yes",  # never accept-new: an unknown host must fail
        "-o",
        "BatchMode=yes",  # never prompt for anything
        "-o",
        "ConnectTimeout=30",
        "-o",
        "ServerAliveInterval=60",  # notice a dead connection instead of hanging
        *(ssh_kit.control_options(control_socket) if control_socket else []),
        f"{ssh.user}@{ssh.host}" if ssh.user else str(ssh.host),
        "-s",
        "sftp",
    ]
    for arg in argv:
        if _UNSAFE_IN_COMMAND & set(arg):
            raise PluginError(
                f"SSH setting {arg!r} contains a space, quote or backslash,"
                " which restic's sftp.command cannot carry",
                retryable=False,
            )
    return argv


def restic_password(project: Any, settings: Any) -> str:
    """``restic.password`` of the project, else ``RESTIC_PASSWORD``; never empty."""
    for secret in (project.restic.password, settings.restic_password):
        if secret is not None and secret.reveal():
            password: str = secret.reveal()
            return password
    raise PluginError(
        f"project {project.name}: no restic password"
        " (set restic.password for the project or RESTIC_PASSWORD in .env)",
        retryable=False,
    )


def cache_dir(settings: Any) -> Path:
    return Path(settings.backup_base_dir) / ".cache" / "restic"


def restic_program() -> str:
    found = shutil.which(RESTIC_PROGRAM)
    if found is None:
        raise PluginError("restic is not installed (not found on PATH)", retryable=False)
    return found


def global_options(project: Any, settings: Any, ssh_log_file: Path | None = None) -> list[str]:
    """restic's global options for this repository: the SFTP command, if any."""
    if not is_sftp(project, settings):
        return []
    socket = ssh_kit.socket_of(project.name)
    return ["-o", "sftp.command=" + " ".join(ssh_command(settings, ssh_log_file, socket))]


def restic_environment(project: Any, settings: Any) -> tuple[dict[str, str], list[str]]:
    """The environment and base argv for running restic on the project's repository.

    The environment is the base one (``plugin_kit.child_env``) with ``RESTIC_REPOSITORY``,
    ``RESTIC_PASSWORD`` and ``RESTIC_CACHE_DIR`` set. The argv is the restic program
    plus global options (the SFTP command); append a restic command and its
    arguments, e.g. ``argv + ["snapshots"]``. The argv never contains the password,
    so it is safe to print or log; the environment is not.
    """
    # restic's own settings (RESTIC_COMPRESSION, ...) but none of our other secrets.
    env = {k: v for k, v in child_env(prefixes=["RESTIC_"]).items() if k not in _CONFLICTING_ENV}
    env["RESTIC_REPOSITORY"] = repository_url(project, settings)
    env["RESTIC_PASSWORD"] = restic_password(project, settings)
    env["RESTIC_CACHE_DIR"] = str(cache_dir(settings))
    return env, [restic_program(), *global_options(project, settings)]


def run_sftp_batch(settings: Any, commands: list[str], timeout: int = 60) -> tuple[bool, str]:
    """Run ``sftp -b -`` with ``commands`` as the storage user (same key, port and host
    key rules as restic's connection); (succeeded, the last error line)."""
    ssh = settings.ssh
    argv = ["sftp", "-b", "-", "-P", str(ssh.port)]
    if ssh.key_path is not None:
        argv += ["-i", str(Path(ssh.key_path).expanduser()), "-o", "IdentitiesOnly=yes"]
    argv += ["-o", f"UserKnownHostsFile={known_hosts_file(settings)}",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
             "-o", "ConnectTimeout=30",
             f"{ssh.user}@{ssh.host}" if ssh.user else str(ssh.host)]  # fmt: skip
    try:
        done = subprocess.run(
            argv, input="\n".join(commands) + "\n", capture_output=True, text=True,
            errors="replace", timeout=timeout, env=child_env(),
        )  # fmt: skip
    except FileNotFoundError:
        return False, "sftp is not installed (openssh-client)"
    except subprocess.TimeoutExpired:
        return False, f"sftp timed out after {timeout}s"
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    return done.returncode == 0, (lines[-1] if lines else f"sftp exit code {done.returncode}")
