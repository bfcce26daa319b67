"""MariaDB fixtures: the machine's server, started when it is down.

``mariadb`` (session) is a running ``MariaDb``; ``mariadb_db`` (function) is a fresh
database and a user with a real password (checked over TCP on 127.0.0.1), dropped
afterwards together with every database named after it (``<name>_restored``...).
``backupctl_core.testing.pytest_plugin`` (the pytest11 entry point) registers them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backupctl_core.testing.mariadb import MariaDb, MariaDbError, MysqlDatabase

__all__ = ["MysqlDatabase", "mariadb", "mariadb_db"]


@pytest.fixture(scope="session")
def mariadb() -> MariaDb:
    """The machine's MariaDB on 127.0.0.1:3306, started if needed.

    Never skipped: a machine without MariaDB is a broken test machine, so this fails.
    """
    try:
        return MariaDb().ensure_running()
    except MariaDbError as error:
        pytest.fail(f"cannot reach or start MariaDB: {error}", pytrace=False)


@pytest.fixture
def mariadb_db(mariadb: MariaDb) -> Iterator[MysqlDatabase]:
    """A fresh database and a user with a random password that may use it."""
    db = mariadb.create_database_with_user()
    try:
        yield db
    finally:
        mariadb.drop_database_with_user(db)
