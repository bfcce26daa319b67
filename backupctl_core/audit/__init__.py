"""The audit store: every run as a ``backup_log`` row (peewee; SQLite or PostgreSQL)."""

import importlib
import sys
from types import ModuleType


def import_without_psycopg(name: str) -> ModuleType:
    """Import ``name`` with psycopg hidden, unless psycopg is loaded already.

    peewee, and playhouse.migrate through playhouse.postgres_ext, import psycopg
    when they are imported, whether or not PostgreSQL is used: ~80 ms and 16 MiB
    on every command (bench/README.md Finding 1). The PostgreSQL store imports
    psycopg itself when it connects (postgres_driver.py).
    """
    if "psycopg" in sys.modules:
        return importlib.import_module(name)
    sys.modules["psycopg"] = None  # type: ignore[assignment]  # makes `import psycopg` fail
    try:
        return importlib.import_module(name)
    finally:
        del sys.modules["psycopg"]


# Before any module of this package imports peewee.
import_without_psycopg("peewee")
