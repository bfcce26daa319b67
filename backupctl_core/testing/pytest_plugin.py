"""The pytest fixtures of ``backupctl_core.testing`` (loaded through ``pytest11``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backupctl_core.testing import BackupctlWorkspace
from backupctl_core.testing.fixtures_mysql import mariadb, mariadb_db
from backupctl_core.testing.fixtures_pg import pg_scram, pg_scram_db
from backupctl_core.testing.sftp import SftpServer, SftpServerError, start_sftp_server

__all__ = [
    "backupctl_workspace",
    "borg_ssh_server",
    "mariadb",
    "mariadb_db",
    "pg_scram",
    "pg_scram_db",
    "restic_repository",
    "sftp_server",
]


@pytest.fixture
def backupctl_workspace(tmp_path: Path) -> BackupctlWorkspace:
    """``projects.yml``, ``.env`` and a backup folder in ``tmp_path``; ``cli(...)`` runs
    backupctl in-process with them."""
    return BackupctlWorkspace(tmp_path / "backupctl")


@pytest.fixture
def restic_repository(tmp_path: Path) -> Path:
    """A path for a fresh local restic repository (the restic plugin initialises it)."""
    return tmp_path / "restic-repository"


@pytest.fixture(scope="session")
def sftp_server() -> Iterator[SftpServer]:
    """A running sshd serving SFTP for the ``backupctl-sftp`` user, for the whole session.

    Use ``sftp_server.new_repo_path("name")`` for a fresh repository path,
    ``sftp_server.ssh_settings()`` (or host/port/user/key_path) for ``SshSettings``;
    ``known_hosts`` sits next to the key, as in a backupctl ssh-keys folder.
    A test that takes the server down must bring it back:
    ``with sftp_server.stopped(): ...``.

    Never skipped: a machine without sshd is a broken test machine, so this fails.
    """
    try:
        server = start_sftp_server()
    except SftpServerError as error:
        pytest.fail(f"cannot start the test SFTP server: {error}", pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def borg_ssh_server() -> Iterator[SftpServer]:
    """A running sshd whose user may only run ``borg serve`` below its ``repos/``, as a
    storage box's borg port (needs root, openssh-server and borgbackup)."""
    try:
        server = start_sftp_server(borg=True)
    except SftpServerError as error:
        pytest.fail(f"cannot start the test borg SSH server: {error}", pytrace=False)
    try:
        yield server
    finally:
        server.close()
