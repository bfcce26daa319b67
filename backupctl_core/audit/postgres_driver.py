"""peewee's PostgreSQL database on psycopg 3, importing psycopg on first use.

peewee binds psycopg's names when peewee is imported; ``backupctl_core.audit``
imports peewee with psycopg hidden, so its own adapter would find no driver.
This adapter imports psycopg itself, and works the same when peewee did load it.
"""

from __future__ import annotations

import uuid
from typing import Any

import peewee


class LazyPsycopg3Adapter(peewee.Psycopg3Adapter):
    # libpq's PGTransactionStatusType (psycopg.pq.TransactionStatus is an IntEnum of it).
    txn_idle, txn_intrans, txn_inerror, txn_unknown = 0, 2, 3, 4

    def __init__(self) -> None:
        super().__init__()
        from psycopg.types.json import Json, Jsonb

        self.json_type, self.jsonb_type = Json, Jsonb

    def check_driver(self) -> None:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise peewee.ImproperlyConfigured("psycopg postgres driver not found.") from None

    def get_binary_type(self) -> Any:
        import psycopg

        return psycopg.Binary

    def connect(self, db: peewee.PostgresqlDatabase, **params: Any) -> Any:
        import psycopg

        encoding = getattr(db, "_encoding", None)  # PostgresqlDatabase(encoding=...)
        if encoding:
            params.setdefault("client_encoding", encoding)
        if db.database.startswith("postgresql://"):
            params.setdefault("conninfo", db.database)
        else:
            params.setdefault("dbname", db.database)
        return psycopg.connect(**params)

    def server_side_cursor(self, conn: Any) -> Any:
        in_transaction = self.txn_status(conn) == self.txn_intrans
        return conn.cursor(name=f"backupctl_{uuid.uuid4().hex}", withhold=not in_transaction)


class PostgresDatabase(peewee.PostgresqlDatabase):
    """``PostgresqlDatabase`` that always uses ``LazyPsycopg3Adapter``.

    peewee picks its psycopg2 adapter when it saw no psycopg at import time.
    """

    psycopg2_adapter = LazyPsycopg3Adapter
    psycopg3_adapter = LazyPsycopg3Adapter
