"""PostgreSQL fixtures: a private cluster with scram-sha-256 password auth.

``pg_scram`` (session) is a running ``PgCluster``; ``pg_scram_db`` (function)
is a fresh role with a password and a database it owns, dropped afterwards.
``backupctl_core.testing.pytest_plugin`` (the pytest11 entry point) registers them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from attrs import frozen

from backupctl_core.testing.pgcluster import PgCluster, PgClusterError

__all__ = ["PgDatabase", "pg_scram", "pg_scram_db"]


@frozen
class PgDatabase:
    """A database on ``pg_scram`` and the password-protected role that owns it."""

    host: str
    port: int
    name: str
    user: str
    password: str


@pytest.fixture(scope="session")
def pg_scram() -> Iterator[PgCluster]:
    """A PostgreSQL cluster on 127.0.0.1 that checks passwords (scram-sha-256).

    Never skipped: missing server binaries fail the tests that use it.
    """
    try:
        cluster = PgCluster().start()
    except PgClusterError as error:
        pytest.fail(f"cannot start the test PostgreSQL cluster: {error}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_scram_db(pg_scram: PgCluster) -> Iterator[PgDatabase]:
    """A fresh role (with a random password) and a database it owns."""
    suffix = secrets.token_hex(4)
    db = PgDatabase(
        host=pg_scram.host,
        port=pg_scram.port,
        name=f"db_{suffix}",
        user=f"role_{suffix}",
        password=f"pw-{secrets.token_hex(8)}",
    )
    pg_scram.create_role(db.user, db.password)
    pg_scram.create_database(db.name, owner=db.user)
    try:
        yield db
    finally:
        pg_scram.drop_database(db.name)
        pg_scram.drop_role(db.user)
