"""Round trips on real servers, the way an operator restores.

For PostgreSQL (the private ``pg_scram`` cluster) and MariaDB (the machine's server),
both with password authentication over TCP, in both snapshot modes: fill a database
with realistic content, back it up with the installed ``backupctl run``, restore the
latest snapshot with ``backupctl restore --decompress --guide``, run the guide's
commands verbatim on a terminal (typing the password at the tools' prompts) and
compare the restored database with the source table by table: row counts, a checksum
of every row in order, sequence / auto-increment positions, and the routines and
triggers, which must also still work. The asset folder must come back with its
contents, modes, empty folders and symlinks. One PostgreSQL case uses the SFTP
repository (a local sshd), the others a local one.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from backupctl_core.testing.fixtures_pg import PgDatabase
from backupctl_core.testing.mariadb import MariaDb, MysqlDatabase, quote_name, quote_string
from backupctl_core.testing.pgcluster import PgCluster
from backupctl_core.testing.sftp import SftpServer
from backupctl_core.testing.terminal import follow_guide
from tests.support.assets import make_assets, tree
from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace

pytestmark = pytest.mark.e2e
BACKUPCTL = str(Path(sys.executable).with_name("backupctl"))
PROJECT = "shop"
# Every run of the day would otherwise compete for keep_daily's one slot.
RETENTION = {"local_days": 7, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}


# -- the CLI, the workspace and the guide ----------------------------------------------


def backupctl(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BACKUPCTL, *ws.cli_args(), *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def make_workspace(
    tmp_path: Path,
    database: dict[str, Any],
    password: str,
    mode: str,
    ssh: SftpServer | None = None,
) -> tuple[Workspace, Path]:
    """A workspace with one project (``database`` + an asset folder); returns the assets."""
    ws = Workspace(tmp_path)
    env = {"DB_PASSWORD": password, "RESTIC_PASSWORD": "restic-roundtrip-pw"}
    if ssh is not None:
        env.update(
            HETZNER_SSH_HOST=ssh.host, HETZNER_SSH_USER=ssh.user,
            HETZNER_SSH_PORT=str(ssh.port), HETZNER_SSH_KEY_PATH=str(ssh.key_path),
        )  # fmt: skip
    ws.write_env(**env)
    assets = make_assets(tmp_path)
    repo = ssh.new_repo_path(f"roundtrip-{mode}") if ssh else str(tmp_path / "repo")
    ws.write_config(
        [
            {
                "name": PROJECT,
                "database": {**database, "password": "${DB_PASSWORD}"},
                "assets": {"paths": [str(assets)]},
                "restic": {"repository_path": repo, "snapshot_mode": mode},
                "retention": RETENTION,
            }
        ]
    )
    migrate = backupctl(ws, "db", "migrate")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    return ws, assets


def operator_environment(tmp_path: Path) -> dict[str, str]:
    """Our environment without any way for the tools to find the password themselves."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PG") and key != "MYSQL_PWD"
    }
    env["PGPASSFILE"] = str(tmp_path / "no-pgpass")  # missing: libpq must ask
    return env


def guide_commands(stdout: str) -> list[str]:
    """The lines under the one ``To import <dump>:`` heading of ``restore --guide``."""
    lines = stdout.splitlines()
    headings = [i for i, line in enumerate(lines) if line.startswith("To import ")]
    assert len(headings) == 1, stdout
    guide = []
    for line in lines[headings[0] + 1 :]:
        if not line.startswith("  "):
            break
        guide.append(line.strip())
    assert guide, stdout
    return guide


def back_up_and_restore(
    ws: Workspace, assets: Path, password: str, mode: str, tmp_path: Path, extension: str
) -> tuple[Path, Path, list[str]]:
    """``run``, then ``restore latest --decompress --guide``: (dump, plain file, guide)."""
    run = backupctl(ws, "run", PROJECT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert password not in run.stdout + run.stderr

    snapshots = json.loads(backupctl(ws, "snapshots", PROJECT, "--json").stdout)
    kinds = sorted(tag for s in snapshots for tag in s["tags"] if tag.startswith("backupctl:"))
    if mode == "combined":
        assert kinds == ["backupctl:combined"]
    else:
        assert kinds == [f"backupctl:assets:{assets}", "backupctl:db"]

    target = tmp_path / "restored"
    restore = backupctl(ws, "restore", PROJECT, "latest", str(target), "--decompress", "--guide")
    out = restore.stdout + restore.stderr
    assert restore.returncode == 0, out
    assert password not in out
    assert out.count("restoring snapshot ") == len(snapshots)

    # The assets: contents, modes, the empty folder and the symlink.
    assert tree(target / assets.relative_to("/")) == tree(assets)

    # The dump (the .gz / .dump as backed up) and the plain file --decompress made.
    (dump,) = target.rglob(f"{PROJECT}_backup_*{extension}")
    local = ws.base_dir / PROJECT / dump.name
    assert dump.read_bytes() == local.read_bytes()  # the run keeps its dump for local_days
    plain = dump.with_name(dump.name.removesuffix(extension) + ".sql")
    assert f"  decompressed: {plain}\n" in restore.stdout
    assert stat.S_IMODE(plain.stat().st_mode) == 0o600
    assert out.count(f"To import {dump.name}:") == 1

    guide = guide_commands(restore.stdout)
    assert not any(password in line for line in guide)
    return dump, plain, guide


# == PostgreSQL =========================================================================

PG_SCHEMA = r"""
CREATE SCHEMA shop;
CREATE SCHEMA billing;
CREATE SCHEMA audit;
CREATE TYPE shop.order_status AS ENUM ('new', 'paid', 'sent');
CREATE TABLE shop.customers (
  id serial PRIMARY KEY,
  name text NOT NULL,
  email text UNIQUE,
  note text,
  tags text[],
  profile jsonb,
  created timestamptz NOT NULL
);
CREATE TABLE shop.orders (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  customer_id int NOT NULL REFERENCES shop.customers (id) ON DELETE CASCADE,
  status shop.order_status NOT NULL DEFAULT 'new',
  amount numeric(12, 2),
  payload bytea
);
CREATE TABLE shop."Gift Cards" (
  code uuid PRIMARY KEY,
  customer_id int REFERENCES shop.customers (id),
  balance numeric(8, 2) NOT NULL,
  expires date
);
CREATE SEQUENCE billing.invoice_number START 10000 INCREMENT 7;
CREATE TABLE billing.invoices (
  number bigint PRIMARY KEY DEFAULT nextval('billing.invoice_number'),
  order_id bigint NOT NULL REFERENCES shop.orders (id),
  issued date NOT NULL,
  pdf bytea
);
CREATE TABLE audit.log (
  id bigserial PRIMARY KEY,
  table_name text NOT NULL,
  row_id bigint,
  action text NOT NULL
);
CREATE FUNCTION audit.record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO audit.log (table_name, row_id, action)
    VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, NEW.id, lower(TG_OP));
  RETURN NEW;
END $$;
CREATE TRIGGER orders_audit AFTER INSERT OR UPDATE ON shop.orders
  FOR EACH ROW EXECUTE FUNCTION audit.record();
CREATE FUNCTION billing.customer_total(c int) RETURNS numeric LANGUAGE sql STABLE AS $$
  SELECT coalesce(sum(amount), 0) FROM shop.orders WHERE customer_id = c
$$;
CREATE PROCEDURE shop.add_order(c int, a numeric) LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO shop.orders (customer_id, amount) VALUES (c, a);
END $$;
CREATE VIEW billing.big_orders AS SELECT id, amount FROM shop.orders WHERE amount > 4000;

INSERT INTO shop.customers (name, email, note, tags, profile, created)
  SELECT 'Kundin ' || g || ' — Grüße 😀', 'c' || g || '@example.com',
         CASE WHEN g % 7 = 0 THEN NULL ELSE repeat('ünïcødé ', g % 20) END,
         CASE WHEN g % 3 = 0 THEN NULL ELSE ARRAY['vip', '🚀 ' || g] END,
         jsonb_build_object('n', g, 'emoji', '🎉', 'nested', jsonb_build_object('ok', g % 2 = 0)),
         timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute 1.5 seconds'
  FROM generate_series(1, 2000) g;
INSERT INTO shop.customers (name, email, note, created) VALUES
  ('Ada 👩‍💻', NULL, E'tab\there, line\nbreak, quote '' and backslash \\ and \x01',
   '2024-02-29 12:00:00+00'),
  ('gone', 'gone@example.com', NULL, '2024-03-01 00:00:00+00');
INSERT INTO shop.orders (customer_id, status, amount, payload)
  SELECT 1 + g % 2000, (ARRAY['new', 'paid', 'sent'])[1 + g % 3]::shop.order_status,
         g * 1.25, CASE WHEN g % 5 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END
  FROM generate_series(1, 4000) g;
INSERT INTO shop.orders (customer_id, amount, payload)
  SELECT 2001, NULL, string_agg(set_byte('\x00'::bytea, 0, b), ''::bytea ORDER BY b)
  FROM generate_series(0, 255) b;
INSERT INTO shop."Gift Cards" (code, customer_id, balance, expires)
  SELECT md5('card' || g)::uuid, CASE WHEN g % 4 = 0 THEN NULL ELSE g END, g * 0.5,
         CASE WHEN g % 6 = 0 THEN NULL ELSE date '2025-01-01' + g END
  FROM generate_series(1, 500) g;
INSERT INTO billing.invoices (order_id, issued, pdf)
  SELECT id, date '2024-01-01' + (id % 365)::int,
         decode(repeat('25504446', 1 + (id % 9)::int), 'hex')
  FROM shop.orders WHERE id % 2 = 0;
UPDATE shop.orders SET status = 'paid' WHERE id % 100 = 0;
DELETE FROM shop.customers WHERE name = 'gone';
"""
PG_SCHEMAS = ("audit", "billing", "shop")


def pg_fingerprint(pg: PgCluster, database: str) -> dict[str, Any]:
    """Row counts, ordered per-row checksums, sequences, routines, triggers, constraints."""
    schemas = list(PG_SCHEMAS)
    with pg.connect(database) as conn:
        tables = conn.execute(
            "SELECT c.oid, n.nspname, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = ANY(%s) ORDER BY 2, 3",
            (schemas,),
        ).fetchall()
        rows = {}
        for oid, schema, name in tables:
            key = conn.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                "WHERE i.indrelid = %s AND i.indisprimary ORDER BY a.attnum",
                (oid,),
            ).fetchall()
            assert key, f"{schema}.{name} has no primary key"
            table = sql.Identifier(schema, name)
            order = sql.SQL(", ").join(sql.Identifier(column) for (column,) in key)
            [(count,)] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchall()
            checksums = conn.execute(
                sql.SQL("SELECT md5(t::text) FROM {} t ORDER BY {}").format(table, order)
            ).fetchall()
            rows[f"{schema}.{name}"] = (count, [checksum for (checksum,) in checksums])
        return {
            "rows": rows,
            "sequences": conn.execute(
                "SELECT schemaname, sequencename, start_value, increment_by, last_value "
                "FROM pg_sequences WHERE schemaname = ANY(%s) ORDER BY 1, 2",
                (schemas,),
            ).fetchall(),
            "routines": conn.execute(
                "SELECT n.nspname, p.proname, p.prokind, pg_get_functiondef(p.oid) "
                "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = ANY(%s) ORDER BY 1, 2",
                (schemas,),
            ).fetchall(),
            "triggers": conn.execute(
                "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) "
                "FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2"
            ).fetchall(),
            "constraints": conn.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                "FROM pg_constraint WHERE connamespace::regnamespace::text = ANY(%s) "
                "ORDER BY 1, 2",
                (schemas,),
            ).fetchall(),
            "views": conn.execute(
                "SELECT schemaname, viewname, definition FROM pg_views "
                "WHERE schemaname = ANY(%s) ORDER BY 1, 2",
                (schemas,),
            ).fetchall(),
        }


@pytest.fixture
def pg_source(pg_scram: PgCluster, pg_scram_db: PgDatabase) -> Iterator[PgDatabase]:
    """``pg_scram_db`` filled with PG_SCHEMA by its own role, which may create databases
    (the guide's createdb); the restored databases are dropped afterwards."""
    pg_scram.execute("postgres", sql.SQL("ALTER ROLE {} CREATEDB").format(
        sql.Identifier(pg_scram_db.user)
    ))  # fmt: skip
    db = pg_scram_db
    with pg_scram.connect(db.name, user=db.user, password=db.password) as conn:
        conn.execute(PG_SCHEMA)
        # What pg_dump keeps only with --create: the guide recreates it from the manifest.
        name = sql.Identifier(db.name)
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS 'Shop — Grüße'").format(name))
        conn.execute(sql.SQL("ALTER DATABASE {} SET lock_timeout TO '7s'").format(name))
    try:
        yield db
    finally:
        for (restored,) in pg_scram.query(
            "postgres", "SELECT datname FROM pg_database WHERE datname LIKE %s",
            (db.name + "_restored%",),
        ):  # fmt: skip
            pg_scram.drop_database(restored)


def pg_database_properties(pg: PgCluster, database: str) -> list[tuple[Any, ...]]:
    """Encoding, locale, comment and the database's own settings."""
    return pg.query(
        "postgres",
        "SELECT pg_encoding_to_char(encoding), datcollate, datctype,"
        " shobj_description(d.oid, 'pg_database'), s.setconfig FROM pg_database d"
        " LEFT JOIN pg_db_role_setting s ON s.setdatabase = d.oid AND s.setrole = 0"
        " WHERE datname = %s",
        (database,),
    )


@pytest.mark.parametrize(
    ("mode", "repository"),
    [("combined", "local"), ("separate", "local"), ("combined", "sftp")],
)
def test_postgres_round_trip(
    pg_scram: PgCluster,
    pg_source: PgDatabase,
    mode: str,
    repository: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    db = pg_source
    ssh = request.getfixturevalue("sftp_server") if repository == "sftp" else None
    database = {"type": "postgres", "host": db.host, "port": db.port, "name": db.name}
    ws, assets = make_workspace(tmp_path, {**database, "user": db.user}, db.password, mode, ssh)
    before = pg_fingerprint(pg_scram, db.name)
    assert {table: count for table, (count, _) in before["rows"].items()} == {
        "audit.log": 4041,  # the trigger: 4001 inserts, 40 updates
        "billing.invoices": 2000,
        "shop.Gift Cards": 500,
        "shop.customers": 2001,
        "shop.orders": 4001,
    }

    dump, plain, guide = back_up_and_restore(ws, assets, db.password, mode, tmp_path, ".dump")

    assert plain.read_text().count("CREATE TABLE ") == 5  # pg_restore --no-owner --file
    restored = shlex.split(guide[1])[-1]
    assert re.fullmatch(re.escape(db.name) + "_restored_[0-9a-f]{8}", restored)
    login = f"--host={db.host} --port={db.port} --username={db.user}"
    assert guide[1].startswith(f"createdb {login} --template=template0 --encoding=UTF8 ")
    assert guide[2] == f"pg_restore {login} --dbname={restored} --no-owner --exit-on-error {dump}"
    assert guide[3].startswith(f"psql {login} --dbname={restored} --set=ON_ERROR_STOP=1 --quiet")
    assert len(guide) == 4  # and no note: every object was the backup user's
    follow_guide(guide, db.password, env=operator_environment(tmp_path))

    after = pg_fingerprint(pg_scram, restored)
    assert after == before
    assert pg_database_properties(pg_scram, restored) == pg_database_properties(pg_scram, db.name)
    assert pg_database_properties(pg_scram, restored)[0][3:] == (
        "Shop — Grüße",
        ["lock_timeout=7s"],
    )

    if (mode, repository) == ("combined", "local"):
        # A newer snapshot restores beside the first copy, never into it; the same
        # commands again stop at createdb and change nothing.
        with pytest.raises(AssertionError, match="already exists"):
            follow_guide(guide, db.password, env=operator_environment(tmp_path))
        with pg_scram.connect(db.name, user=db.user, password=db.password) as conn:
            conn.execute("DELETE FROM audit.log WHERE id = 1")
        ok(ws, "run", PROJECT)
        out = ok(
            ws, "restore", PROJECT, "latest", str(tmp_path / "again"), "--guide", "--only", "db"
        )
        again = guide_commands(out)
        assert shlex.split(again[1])[-1] != restored
        follow_guide(again, db.password, env=operator_environment(tmp_path))
        assert pg_fingerprint(pg_scram, restored) == before  # the first copy untouched
        newer = shlex.split(again[1])[-1]
        assert pg_scram.query(newer, "SELECT count(*) FROM audit.log") == [(4040,)]

        # The plain SQL that --decompress wrote imports as well, with psql as the
        # operator would (docs/restore.md).
        from_sql = f"{db.name}_restored_sql"
        psql = f"psql {login} --dbname={from_sql} --set=ON_ERROR_STOP=1 --quiet"
        follow_guide(
            [f"createdb {login} {from_sql}", f"{psql} --file={shlex.quote(str(plain))}"],
            db.password,
            env=operator_environment(tmp_path),
        )
        assert pg_fingerprint(pg_scram, from_sql) == before

    # The routines and the trigger work in the restored database, and the sequences
    # continue where the source's stopped (customer 2002 was deleted, not reused).
    with pg_scram.connect(restored, user=db.user, password=db.password) as conn:
        conn.execute("CALL shop.add_order(2001, 10.50)")
        new_customer = conn.execute(
            "INSERT INTO shop.customers (name, created) VALUES ('new', now()) RETURNING id"
        ).fetchone()
        assert new_customer == (2003,)
        assert conn.execute("SELECT max(id) FROM shop.orders").fetchone() == (4002,)
        assert conn.execute(
            "SELECT table_name, row_id, action FROM audit.log ORDER BY id DESC LIMIT 1"
        ).fetchone() == ("shop.orders", 4002, "insert")
        assert conn.execute("SELECT billing.customer_total(2001)").fetchone() == (Decimal("10.50"),)
        assert conn.execute(
            "INSERT INTO billing.invoices (order_id, issued) VALUES (4002, now()) RETURNING number"
        ).fetchone() == (10000 + 7 * 2000,)
        ada = conn.execute(
            "SELECT name, email, note FROM shop.customers WHERE id = 2001"
        ).fetchone()
        assert ada == (
            "Ada 👩‍💻",
            None,
            "tab\there, line\nbreak, quote ' and backslash \\ and \x01",
        )
        payload = conn.execute(
            "SELECT payload FROM shop.orders WHERE customer_id = 2001 AND payload IS NOT NULL"
        ).fetchone()
        assert payload == (bytes(range(256)),)


# == MySQL / MariaDB ====================================================================

# Created by the database's own user over TCP, so the routines and the trigger have that
# user as DEFINER, as an application's objects would.
MYSQL_SCHEMA = r"""
CREATE TABLE customers (
  id INT AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(100) NOT NULL,
  email VARCHAR(200) UNIQUE,
  note TEXT NULL,
  created DATETIME(6) NOT NULL,
  updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE products (
  sku CHAR(8) PRIMARY KEY,
  title VARCHAR(200) NOT NULL,
  price DECIMAL(10, 2) NOT NULL,
  image MEDIUMBLOB NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE orders (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  customer_id INT NOT NULL,
  amount DECIMAL(12, 2),
  payload BLOB NULL,
  status ENUM('new', 'paid', 'sent') NOT NULL DEFAULT 'new',
  FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE order_items (
  order_id BIGINT NOT NULL,
  line SMALLINT NOT NULL,
  sku CHAR(8) NOT NULL,
  quantity INT NOT NULL,
  PRIMARY KEY (order_id, line),
  FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
  FOREIGN KEY (sku) REFERENCES products (sku)
) ENGINE=InnoDB;
CREATE TABLE audit (
  id INT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT, action VARCHAR(20)
) ENGINE=InnoDB;
CREATE TRIGGER orders_ai AFTER INSERT ON orders FOR EACH ROW
  INSERT INTO audit (order_id, action) VALUES (NEW.id, 'insert');
CREATE PROCEDURE add_order(IN c INT, IN a DECIMAL(12, 2))
  INSERT INTO orders (customer_id, amount) VALUES (c, a);
CREATE FUNCTION order_total(c INT) RETURNS DECIMAL(14, 2) READS SQL DATA
  RETURN (SELECT COALESCE(SUM(amount), 0) FROM orders WHERE customer_id = c);
INSERT INTO customers (id, name, email, note, created)
  SELECT seq, CONCAT('Kunde ', seq, ' Grüße 😀'), CONCAT('c', seq, '@example.com'),
         IF(seq % 7 = 0, NULL, REPEAT('ünïcødé ', seq % 20)),
         TIMESTAMP('2024-01-01') + INTERVAL seq MINUTE + INTERVAL seq MICROSECOND
  FROM seq_1_to_2000;
INSERT INTO customers (id, name, email, note, created)
  VALUES (2001, 'Ada 👩‍💻', NULL, 'tab\there, line\nbreak, quote '' and backslash \\',
          '2024-02-29 12:00:00.123456');
INSERT INTO customers (id, name, created) VALUES (2002, 'gone', NOW());
INSERT INTO products (sku, title, price, image)
  SELECT CONCAT('P', LPAD(seq, 7, '0')), CONCAT('Produkt ', seq, ' ☕'), seq * 0.99,
         IF(seq % 3 = 0, NULL, UNHEX(REPEAT(SHA2(seq, 256), 1 + seq % 4)))
  FROM seq_1_to_200;
INSERT INTO orders (customer_id, amount, payload, status)
  SELECT 1 + seq % 2000, seq * 1.25, IF(seq % 5 = 0, NULL, UNHEX(SHA2(seq, 256))),
         ELT(1 + seq % 3, 'new', 'paid', 'sent')
  FROM seq_1_to_3000;
INSERT INTO orders (customer_id, amount, payload)
  SELECT 2001, NULL, UNHEX(GROUP_CONCAT(LPAD(HEX(seq), 2, '0') ORDER BY seq SEPARATOR ''))
  FROM seq_0_to_255;
INSERT INTO order_items (order_id, line, sku, quantity)
  SELECT o.seq, l.seq, CONCAT('P', LPAD(1 + (o.seq * l.seq) % 200, 7, '0')), l.seq
  FROM seq_1_to_1000 o JOIN seq_1_to_2 l;
DELETE FROM customers WHERE id = 2002;
"""


def mysql_fingerprint(server: MariaDb, database: str) -> dict[str, Any]:
    """Row counts, ordered per-row checksums, auto-increment counters, routines, triggers
    and foreign keys of ``database`` (queried as root)."""
    schema = quote_string(database)
    tables = [
        str(name)
        for (name,) in server.query(
            "SELECT table_name FROM information_schema.tables "
            f"WHERE table_schema = {schema} AND table_type = 'BASE TABLE' ORDER BY 1"
        )
    ]
    rows = {}
    for table in tables:
        columns = server.query(
            "SELECT column_name, column_key = 'PRI' FROM information_schema.columns "
            f"WHERE table_schema = {schema} AND table_name = {quote_string(table)} "
            "ORDER BY ordinal_position"
        )
        # QUOTE() keeps NULL apart from 'NULL' and works for text, numbers and BLOBs.
        values = ", ".join(f"QUOTE({quote_name(str(name))})" for name, _key in columns)
        key = ", ".join(quote_name(str(name)) for name, is_key in columns if is_key == "1")
        assert key, f"{table} has no primary key"
        (count,) = server.query(f"SELECT count(*) FROM {quote_name(table)}", database)[0]
        checksums = server.query(
            f"SELECT MD5(CONCAT_WS(0x1f, {values})) FROM {quote_name(table)} ORDER BY {key}",
            database,
        )
        rows[table] = (int(str(count)), [checksum for (checksum,) in checksums])
    return {
        "rows": rows,
        "auto_increment": server.query(
            "SELECT table_name, auto_increment FROM information_schema.tables "
            f"WHERE table_schema = {schema} AND table_type = 'BASE TABLE' ORDER BY 1"
        ),
        "routines": server.query(
            "SELECT routine_name, routine_type, routine_definition, definer "
            f"FROM information_schema.routines WHERE routine_schema = {schema} ORDER BY 1"
        ),
        "triggers": server.query(
            "SELECT trigger_name, event_object_table, action_timing, event_manipulation, "
            "action_statement, definer "
            f"FROM information_schema.triggers WHERE trigger_schema = {schema} ORDER BY 1"
        ),
        "foreign_keys": server.query(
            "SELECT table_name, column_name, referenced_table_name, referenced_column_name "
            f"FROM information_schema.key_column_usage WHERE table_schema = {schema} "
            "AND referenced_table_name IS NOT NULL ORDER BY 1, 2"
        ),
    }


@pytest.fixture
def mysql_source(mariadb: MariaDb, mariadb_db: MysqlDatabase) -> MysqlDatabase:
    """``mariadb_db`` filled by its own user, with a collation and comment of its own
    (the routines take its collation); it may also create ``<name>_restored_*``,
    which the fixture drops with the rest."""
    tables, routines = MYSQL_SCHEMA.split("CREATE TRIGGER", 1)
    collation = (  # after the tables (their keys agree), before the routines (they take it)
        "ALTER DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci COMMENT 'Shop — Grüße';"
    )
    mariadb.execute(
        tables + collation + "CREATE TRIGGER" + routines, mariadb_db.name, login=mariadb_db
    )
    return mariadb_db


def mysql_database_properties(server: MariaDb, database: str) -> list[tuple[Any, ...]]:
    """Character set, collation and comment, and the collation its routines carry."""
    name = quote_string(database)
    return server.query(
        "SELECT default_character_set_name, default_collation_name, schema_comment"
        f" FROM information_schema.schemata WHERE schema_name = {name}"
    ) + server.query(
        "SELECT routine_name, database_collation FROM information_schema.routines"
        f" WHERE routine_schema = {name} ORDER BY 1"
    )


@pytest.mark.parametrize("mode", ["combined", "separate"])
def test_mysql_round_trip(
    mariadb: MariaDb, mysql_source: MysqlDatabase, mode: str, tmp_path: Path
) -> None:
    db = mysql_source
    database = {"type": "mysql", "host": db.host, "port": db.port, "name": db.name}
    ws, assets = make_workspace(tmp_path, {**database, "user": db.user}, db.password, mode)
    before = mysql_fingerprint(mariadb, db.name)
    assert {table: count for table, (count, _) in before["rows"].items()} == {
        "audit": 3001,
        "customers": 2001,
        "order_items": 2000,
        "orders": 3001,
        "products": 200,
    }

    dump, plain, guide = back_up_and_restore(ws, assets, db.password, mode, tmp_path, ".sql.gz")

    assert plain.read_bytes() == gzip.decompress(dump.read_bytes())
    found = re.search(r"CREATE DATABASE `([^`]+)`", guide[1])
    assert found is not None, guide
    restored = found.group(1)
    assert re.fullmatch(re.escape(db.name) + "_restored_[0-9a-f]{8}", restored)
    mysql = f"mysql --host={db.host} --port={db.port} --user={db.user} --password"
    create = (
        f"CREATE DATABASE `{restored}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        f" COMMENT 'Shop — Grüße'; USE `{restored}`;"
    )
    assert guide[1] == (
        f"{{ printf '%s\\n' {shlex.quote(create)}; gunzip -c {dump}; }}"
        f" | {mysql} --default-character-set=utf8mb4"
    )
    follow_guide(guide, db.password, env=operator_environment(tmp_path))

    after = mysql_fingerprint(mariadb, restored)
    assert after == before
    properties = mysql_database_properties(mariadb, restored)
    assert properties == mysql_database_properties(mariadb, db.name)
    assert properties[0] == ("utf8mb4", "utf8mb4_unicode_ci", "Shop — Grüße")
    assert {collation for _, collation in properties[1:]} == {"utf8mb4_unicode_ci"}

    if mode == "combined":
        # A newer snapshot restores beside the first copy, never into it; the same
        # command again stops at CREATE DATABASE and changes nothing.
        with pytest.raises(AssertionError, match="database exists"):
            follow_guide(guide, db.password, env=operator_environment(tmp_path))
        assert mysql_fingerprint(mariadb, restored) == before
        mariadb.execute("DELETE FROM audit WHERE id = 1", db.name, login=db)
        ok(ws, "run", PROJECT)
        second = tmp_path / "restored-again"
        out = ok(ws, "restore", PROJECT, "latest", str(second), "--guide", "--only", "db")
        again = guide_commands(out)
        assert again[1] != guide[1]
        follow_guide(again, db.password, env=operator_environment(tmp_path))
        assert mysql_fingerprint(mariadb, restored) == before  # the first copy untouched
        newer = re.search(r"CREATE DATABASE `([^`]+)`", again[1])
        assert newer is not None
        assert mariadb.query("SELECT count(*) FROM audit", newer.group(1)) == [("3000",)]

    # The procedure inserts, the trigger fires, the function sums, and the counters go on
    # where the source's stopped: after the deleted customer 2002, and for orders after
    # the ids InnoDB reserved for the bulk INSERT ... SELECT.
    counters = {str(table): str(value) for table, value in before["auto_increment"]}
    assert counters["customers"] == "2003"
    mariadb.execute(
        "CALL add_order(2001, 10.50); INSERT INTO customers (name, created) VALUES ('new', NOW())",
        restored,
        login=db,
    )
    assert mariadb.query("SELECT max(id) FROM customers", restored) == [("2003",)]
    assert mariadb.query(
        "SELECT order_id, action FROM audit ORDER BY id DESC LIMIT 1", restored
    ) == [(counters["orders"], "insert")]
    assert mariadb.query("SELECT order_total(2001)", restored) == [("10.50",)]
    assert mariadb.query("SELECT name, email, note FROM customers WHERE id = 2001", restored) == [
        ("Ada 👩‍💻", None, "tab\there, line\nbreak, quote ' and backslash \\")
    ]
    assert mariadb.query(
        "SELECT HEX(payload) FROM orders WHERE customer_id = 2001 AND payload IS NOT NULL",
        restored,
    ) == [("".join(f"{i:02X}" for i in range(256)),)]


# == what restore reports in separate mode (SQLite: no server needed) =====================


def sqlite_workspace(tmp_path: Path, *, with_assets: bool = True) -> tuple[Workspace, Path]:
    ws = Workspace(tmp_path)
    ws.write_env(RESTIC_PASSWORD="restic-roundtrip-pw")
    database = tmp_path / "shop.sqlite"
    if not database.exists():
        make_sqlite_db(database, rows=50)
    assets = tmp_path / "assets"
    if with_assets and not assets.exists():
        make_assets(tmp_path)
    restic = {"repository_path": str(tmp_path / "repo"), "snapshot_mode": "separate"}
    extra: dict[str, Any] = {"assets": {"paths": [str(assets)]}} if with_assets else {}
    ws.write_config(
        [sqlite_project(PROJECT, database, tmp_path / "repo", restic=restic,
                        retention=RETENTION, **extra)]
    )  # fmt: skip
    return ws, assets


def ok(ws: Workspace, *args: str) -> str:
    result = backupctl(ws, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_separate_mode_counts_each_restored_file_once(tmp_path: Path) -> None:
    ws, _assets = sqlite_workspace(tmp_path)
    ok(ws, "db", "migrate")
    ok(ws, "run", PROJECT)
    target = tmp_path / "restored"
    out = ok(ws, "restore", PROJECT, "latest", str(target))
    files = [p for p in target.rglob("*") if p.is_file() and not p.is_symlink()]
    assert f"{len(files)} file(s) restored, 1 dump(s)" in out


def test_separate_mode_guides_once_when_the_dump_is_the_newest_snapshot(tmp_path: Path) -> None:
    ws, _assets = sqlite_workspace(tmp_path)
    ok(ws, "db", "migrate")
    ok(ws, "run", PROJECT)
    ws, _assets = sqlite_workspace(tmp_path, with_assets=False)  # assets dropped later on
    ok(ws, "run", PROJECT)
    target = tmp_path / "restored"
    out = ok(ws, "restore", PROJECT, "latest", str(target), "--decompress", "--guide")
    assert out.count("restoring snapshot ") == 2  # the newest dump and the older assets
    assert "1 dump(s)" in out
    assert out.count("To import ") == 1
