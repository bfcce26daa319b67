"""Shared pytest fixtures for core and plugin tests, backed by real services.

Loaded by the root ``conftest.py`` (``pytest_plugins``). Each service has its own
clearly marked section; keep sections self-contained.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# ==========================================================================================
# SFTP server (sshd on 127.0.0.1) -- see tests/support/sftp.py
# ==========================================================================================
from tests.support.sftp import SftpServer, SftpServerError, start_sftp_server


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


# ==========================================================================================
# (further services below)
# ==========================================================================================

from tests.support.fixtures_mysql import *  # noqa: E402, F403
from tests.support.fixtures_pg import *  # noqa: E402, F403
