"""The MySQL dumper against the machine's MariaDB, with a user whose password is checked."""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import attrs
import pytest
from backupctl_mysql import plugin

from backupctl_core import DumpArtifact, PluginError, PluginType
from backupctl_core.domain.settings import (
    CompressionSettings,
    DatabaseSettings,
    GlobalSettings,
    ProjectSettings,
    ResticSettings,
    Secret,
)
from backupctl_core.testing import plugin_manager
from backupctl_core.testing.mariadb import MariaDb, MysqlDatabase, quote_string
from backupctl_core.testing.pgcluster import free_port
from backupctl_core.testing.terminal import follow_guide

# Created by the database's own user over TCP, so routines, triggers, views and events
# have that user as DEFINER, as an application's objects would.
SCHEMA = """
CREATE TABLE customers (
  id INT AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(100) NOT NULL,
  email VARCHAR(200) UNIQUE,
  note TEXT NULL,
  created DATETIME(6) NOT NULL,
  updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE orders (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  customer_id INT NOT NULL,
  amount DECIMAL(12,2),
  payload BLOB NULL,
  status ENUM('new','paid','sent') NOT NULL DEFAULT 'new',
  FOREIGN KEY (customer_id) REFERENCES customers(id) ON DELETE CASCADE
) ENGINE=InnoDB;
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT, action VARCHAR(20));
CREATE TRIGGER orders_ai AFTER INSERT ON orders FOR EACH ROW
  INSERT INTO audit (order_id, action) VALUES (NEW.id, 'insert');
CREATE PROCEDURE add_order(IN c INT, IN a DECIMAL(12,2))
  INSERT INTO orders (customer_id, amount) VALUES (c, a);
CREATE FUNCTION order_total(c INT) RETURNS DECIMAL(14,2) READS SQL DATA
  RETURN (SELECT COALESCE(SUM(amount), 0) FROM orders WHERE customer_id = c);
CREATE VIEW big_orders AS SELECT id, amount FROM orders WHERE amount > 4000;
CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM audit WHERE id < 0;
INSERT INTO customers (id, name, email, note, created)
  SELECT seq, CONCAT('Kunde ', seq, ' Grüße 😀'), CONCAT('c', seq, '@example.com'),
         IF(seq % 7 = 0, NULL, REPEAT('ünïcødé ', seq % 20)),
         TIMESTAMP('2024-01-01') + INTERVAL seq MINUTE
  FROM seq_1_to_3000;
INSERT INTO customers (id, name, email, note, created)
  VALUES (3001, 'Ada 👩‍💻', NULL, 'tab\\there, line\\nbreak, quote '' and backslash \\\\', NOW(6));
INSERT INTO orders (customer_id, amount, payload, status)
  SELECT 1 + seq % 3000, seq * 1.25, IF(seq % 5 = 0, NULL, UNHEX(SHA2(seq, 256))),
         ELT(1 + seq % 3, 'new', 'paid', 'sent')
  FROM seq_1_to_4000;
INSERT INTO orders (customer_id, amount, payload)
  SELECT 3001, NULL, UNHEX(GROUP_CONCAT(LPAD(HEX(seq), 2, '0') ORDER BY seq SEPARATOR ''))
  FROM seq_0_to_255;
DELETE FROM customers WHERE id = 3000;
"""
TABLES = ("audit", "customers", "orders")


SNAPSHOT = "1a2b3c4d5e6f7a8b"  # the snapshot a guide's dump came from


def make_project(
    db: MysqlDatabase | None = None, *, wrong_password: str | None = None, **overrides: Any
) -> ProjectSettings:
    """Settings for ``db`` (with its password, or ``wrong_password``); ``overrides`` win."""
    fields: dict[str, Any] = {}
    if db is not None:
        fields = {"host": db.host, "port": db.port, "name": db.name, "user": db.user}
        fields["password"] = Secret(wrong_password or db.password)
    fields.update(overrides)
    return ProjectSettings(
        name="p",
        restic=ResticSettings(repository_path="/x"),
        database=DatabaseSettings(type="mysql", **fields),
    )


@pytest.fixture
def settings(tmp_path: Path) -> GlobalSettings:
    return GlobalSettings(backup_base_dir=tmp_path)


@pytest.fixture
def stem(tmp_path: Path) -> Path:
    return tmp_path / "p" / "p_backup_20240101_120000_abcd"


@pytest.fixture
def filled_db(mariadb: MariaDb, mariadb_db: MysqlDatabase) -> MysqlDatabase:
    mariadb.execute(SCHEMA, mariadb_db.name, login=mariadb_db)
    return mariadb_db


def fingerprint(server: MariaDb, database: str) -> dict[str, Any]:
    """Row counts and checksums of every table, plus the definitions of the other objects."""
    tables = {
        str(name): server.query(f"SELECT count(*) FROM `{name}`", database)[0][0]
        for name, _type in server.query(
            "SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'", database
        )
    }
    listed = ", ".join(f"`{name}`" for name in sorted(tables))
    checksums = server.query(f"CHECKSUM TABLE {listed}", database)
    schema = quote_string(database)
    return {
        "rows": tables,
        "checksums": {str(name).split(".", 1)[1]: value for name, value in checksums},
        "routines": server.query(
            "SELECT routine_name, routine_type, routine_definition, definer "
            f"FROM information_schema.routines WHERE routine_schema = {schema} ORDER BY 1"
        ),
        "triggers": server.query(
            "SELECT trigger_name, event_object_table, action_statement, definer "
            f"FROM information_schema.triggers WHERE trigger_schema = {schema} ORDER BY 1"
        ),
        "views": [
            (name, str(definition).replace(f"`{database}`.", ""))
            for name, definition in server.query(
                "SELECT table_name, view_definition FROM information_schema.views "
                f"WHERE table_schema = {schema} ORDER BY 1"
            )
        ],
        "events": server.query(
            "SELECT event_name, event_definition, status "
            f"FROM information_schema.events WHERE event_schema = {schema} ORDER BY 1"
        ),
        "auto_increment": server.query(
            "SELECT table_name, auto_increment FROM information_schema.tables "
            f"WHERE table_schema = {schema} AND table_type = 'BASE TABLE' ORDER BY 1"
        ),
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- registration and config ---------------------------------------------------


def test_registered_through_the_backupctl_entry_point_group() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="backupctl")}
    assert found.get("mysql") == "backupctl_mysql.plugin"
    plugin_manager(plugin)  # raises PluginValidationError on a misspelled hook argument
    assert plugin.backupctl_plugin_types() == [PluginType("database", "mysql")]


def test_validate_config_names_missing_keys(settings: GlobalSettings) -> None:
    project = make_project(port=0)
    assert plugin.backupctl_validate_config(project=project, settings=settings) == [
        "database.host is required",
        "database.name is required",
        "database.user is required",
        "database.port must be between 1 and 65535, got 0",
    ]
    odd = make_project(host="h", name="--all-databases", user="u")
    assert plugin.backupctl_validate_config(project=odd, settings=settings) == [
        "database.name must not start with '-'"
    ]


def test_validate_config_ignores_other_types_and_accepts_a_complete_block(
    settings: GlobalSettings,
) -> None:
    other = ProjectSettings(
        name="p", restic=ResticSettings(repository_path="/x"), database=DatabaseSettings("pg")
    )
    assert plugin.backupctl_validate_config(project=other, settings=settings) == []
    complete = make_project(host="db", name="shop", user="backup", password=Secret("x"))
    assert plugin.backupctl_validate_config(project=complete, settings=settings) == []


# -- the round trip ------------------------------------------------------------


def test_dump_verify_decompress_and_guide_round_trip(
    mariadb: MariaDb, filled_db: MysqlDatabase, settings: GlobalSettings, stem: Path
) -> None:
    project = make_project(filled_db)
    before = fingerprint(mariadb, filled_db.name)
    assert before["rows"] == {"audit": "4001", "customers": "3000", "orders": "4000"}

    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    assert artifact.path == stem.with_name(stem.name + ".sql.gz")
    assert artifact.format == "mysql-sql-gzip"
    assert artifact.size_bytes == artifact.path.stat().st_size > 0
    assert mode(artifact.path) == 0o600
    assert sorted(p.name for p in stem.parent.iterdir()) == [artifact.path.name]
    sql = gzip.decompress(artifact.path.read_bytes())
    assert sql.rstrip().rsplit(b"\n", 1)[-1].startswith(b"-- Dump completed on ")
    assert b"CREATE DATABASE" not in sql and b"\nUSE " not in sql  # any target database

    verified = plugin.backupctl_verify(project=project, settings=settings, artifact=artifact)
    assert verified.ok, verified.detail
    assert verified.detail.startswith("gzip intact, ends with '-- Dump completed on ")

    plain = plugin.backupctl_decompress(project=project, settings=settings, path=artifact.path)
    assert plain == stem.with_name(stem.name + ".sql")
    assert plain.read_bytes() == sql
    assert mode(plain) == 0o600
    assert artifact.path.is_file()  # the .gz stays

    guide = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=artifact.path, snapshot_id=SNAPSHOT
    )
    restored = f"{filled_db.name}_restored_{SNAPSHOT[:8]}"
    assert f"--user={filled_db.user}" in guide[1]
    assert guide[1].startswith(
        f"{{ printf '%s\\n' 'CREATE DATABASE `{restored}` CHARACTER SET utf8mb4;"
        f" USE `{restored}`;'; gunzip -c {artifact.path}; }} | mysql --host=127.0.0.1 "
    )
    assert all(filled_db.password not in line for line in guide)
    follow_guide(guide, filled_db.password)

    after = fingerprint(mariadb, restored)
    assert after == before
    # The objects work in the new database: the procedure inserts, the trigger fires,
    # the auto-increment counter continues after the deleted customer 3000.
    mariadb.execute(
        "CALL add_order(1, 10.50); INSERT INTO customers (name, created) VALUES ('new', NOW())",
        restored,
        login=filled_db,
    )
    assert mariadb.query("SELECT max(id) FROM customers", restored) == [("3002",)]
    assert mariadb.query("SELECT count(*) FROM audit", restored) == [("4002",)]
    assert mariadb.query("SELECT name, email, note FROM customers WHERE id = 3001", restored) == [
        ("Ada 👩‍💻", None, "tab\there, line\nbreak, quote ' and backslash \\")
    ]
    assert mariadb.query("SELECT HEX(payload) FROM orders WHERE customer_id = 3001", restored) == [
        ("".join(f"{i:02X}" for i in range(256)),)
    ]
    assert mariadb.query("SELECT order_total(3001)", restored) == [("0.00",)]


def test_the_dump_is_gzip_rsyncable_so_unchanged_rows_deduplicate(
    filled_db: MysqlDatabase, settings: GlobalSettings, stem: Path
) -> None:
    """``gzip --rsyncable`` (docs/storage.md: 7.7 against 49.1 MiB a day for clustered
    changes): the file is what it makes of the SQL, not what plain gzip makes."""
    artifact = plugin.backupctl_dump(
        project=make_project(filled_db), settings=settings, target_stem=stem
    )
    packed = artifact.path.read_bytes()
    sql = gzip.decompress(packed)

    def gzip_of(*flags: str) -> bytes:
        return subprocess.run(
            ["gzip", "-c", *flags], input=sql, capture_output=True, check=True
        ).stdout

    assert packed == gzip_of("--rsyncable")
    assert packed != gzip_of()  # the dump is large enough for the two to differ


def test_guide_for_the_decompressed_sql(
    mariadb: MariaDb, filled_db: MysqlDatabase, settings: GlobalSettings, stem: Path
) -> None:
    project = make_project(filled_db)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    plain = plugin.backupctl_decompress(project=project, settings=settings, path=artifact.path)
    assert plain is not None

    guide = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=plain, snapshot_id=SNAPSHOT
    )

    assert f"; cat {plain}; }} | mysql " in guide[1]
    follow_guide(guide, filled_db.password)
    restored = fingerprint(mariadb, f"{filled_db.name}_restored_{SNAPSHOT[:8]}")
    assert restored == fingerprint(mariadb, filled_db.name)


def test_guide_quotes_what_the_shell_would_split(settings: GlobalSettings) -> None:
    project = make_project(host="db.internal", port=3307, name="shop", user="o'brien")
    guide = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=Path("/restore/my dumps/shop.sql.gz"),
        snapshot_id=SNAPSHOT,
    )  # fmt: skip
    assert guide[1] == (
        "{ printf '%s\\n' 'CREATE DATABASE `shop_restored_1a2b3c4d` CHARACTER SET utf8mb4;"
        " USE `shop_restored_1a2b3c4d`;'; gunzip -c '/restore/my dumps/shop.sql.gz'; }"
        " | mysql --host=db.internal --port=3307 '--user=o'\"'\"'brien' --password"
        " --default-character-set=utf8mb4"
    )
    other = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=Path("/r/x.dump"), snapshot_id=SNAPSHOT
    )
    assert other == []


# -- credentials ---------------------------------------------------------------


def test_a_password_with_quotes_backslashes_and_hashes_works(
    mariadb: MariaDb, mariadb_db: MysqlDatabase, settings: GlobalSettings, stem: Path
) -> None:
    nasty = "p\"a's\\s #w;o rd\\n ü 😀 "
    mariadb.execute(
        f"ALTER USER {quote_string(mariadb_db.user)}@'%' IDENTIFIED BY {quote_string(nasty)}"
    )
    project = make_project(mariadb_db, wrong_password=nasty)

    [tools, check] = plugin.backupctl_check(project=project, settings=settings)
    assert tools.name == "tools" and tools.status == "pass", tools.detail
    assert check.status == "pass", check.detail
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    assert plugin.backupctl_verify(project=project, settings=settings, artifact=artifact).ok


def test_a_users_option_file_cannot_override_the_credentials(
    tmp_path: Path,
    mariadb_db: MysqlDatabase,
    settings: GlobalSettings,
    stem: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With --defaults-extra-file the client would read ~/.my.cnf afterwards and use
    # this password instead of ours.
    home = tmp_path / "home"
    home.mkdir()
    (home / ".my.cnf").write_text("[client]\nuser=root\npassword=wrong\nport=1\n")
    (home / ".my.cnf").chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    project = make_project(mariadb_db)

    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    assert artifact.size_bytes > 0
    [tools, check] = plugin.backupctl_check(project=project, settings=settings)
    assert tools.name == "tools" and tools.status == "pass", tools.detail
    assert check.status == "pass", check.detail


# -- failures against the real server ------------------------------------------


def test_wrong_password_is_permanent_and_never_echoed(
    mariadb_db: MysqlDatabase, settings: GlobalSettings, stem: Path
) -> None:
    wrong = "Wr0ng-" + mariadb_db.password
    project = make_project(mariadb_db, wrong_password=wrong)

    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    error = caught.value
    assert (error.retryable, error.connectivity) == (False, False)
    assert "Access denied for user" in error.message
    assert error.message.startswith("mysqldump: Got error: 1045")
    assert "\n" not in error.message
    for secret in (wrong, mariadb_db.password):
        assert secret not in str(error) and secret not in repr(error)
    assert list(stem.parent.iterdir()) == []  # no partial dump left behind


def test_missing_database_is_permanent(
    mariadb_db: MysqlDatabase, settings: GlobalSettings, stem: Path
) -> None:
    project = make_project(mariadb_db, name=f"{mariadb_db.name}_missing")
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    assert caught.value.retryable is False
    assert "Unknown database" in caught.value.message
    assert list(stem.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("where", "expected", "retryable"),
    [
        ({"port": "free"}, "Can't connect to server on '127.0.0.1'", True),
        # A host name that does not resolve does not appear by waiting: exit 4 at once.
        ({"host": "no-such-host.invalid"}, "Unknown server host 'no-such-host.invalid'", False),
    ],
)
def test_unreachable_server_is_a_connectivity_error(
    mariadb_db: MysqlDatabase,
    settings: GlobalSettings,
    stem: Path,
    where: dict[str, Any],
    expected: str,
    retryable: bool,
) -> None:
    if where.get("port") == "free":
        where = {"port": free_port()}
    project = make_project(mariadb_db, **where)

    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    assert (caught.value.retryable, caught.value.connectivity) == (retryable, True)
    assert caught.value.exit_code == 4
    assert expected in caught.value.message
    assert list(stem.parent.iterdir()) == []

    [tools, check] = plugin.backupctl_check(project=project, settings=settings)
    assert tools.name == "tools" and tools.status == "pass", tools.detail
    assert check.status == "fail"
    assert expected in check.detail


def test_check_passes_with_the_right_password_and_fails_with_a_wrong_one(
    mariadb_db: MysqlDatabase, settings: GlobalSettings
) -> None:
    [tools, ok] = plugin.backupctl_check(project=make_project(mariadb_db), settings=settings)
    assert tools.name == "tools" and tools.status == "pass", tools.detail
    assert (ok.name, ok.status) == ("database", "pass")
    assert ok.detail == (
        f"mysql {mariadb_db.user}@127.0.0.1:3306/{mariadb_db.name} reachable, login ok"
    )
    wrong = make_project(mariadb_db, wrong_password="definitely-wrong")
    [tools, failed] = plugin.backupctl_check(project=wrong, settings=settings)
    assert tools.name == "tools" and tools.status == "pass", tools.detail
    assert (failed.name, failed.status) == ("database login", "fail")  # exit 1 like the run, not 4
    assert "Access denied" in failed.detail
    assert "definitely-wrong" not in failed.detail


def test_missing_tools_are_a_clear_permanent_error(
    tmp_path: Path,
    mariadb_db: MysqlDatabase,
    settings: GlobalSettings,
    stem: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    project = make_project(mariadb_db)
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    assert caught.value.retryable is False
    assert "mysqldump not found" in caught.value.message
    assert list(stem.parent.iterdir()) == []
    [check] = plugin.backupctl_check(project=project, settings=settings)
    assert (check.name, check.status, check.detail) == (
        "tools", "fail",
        "not on PATH: mysqldump, mysql, gzip (install mariadb-client or mysql-client, and gzip)",
    )  # fmt: skip


# -- a stand-in mysqldump: argv, the credentials pipe, failures ------------------

STAND_IN = """\
#!{python}
# A stand-in mysqldump. For --help it prints the stand-in-help file next to the record
# (the environment is the plugin's: child_env, not the test's). Otherwise it records its
# argv, environment and the option file it was given, writes some SQL and then, as the
# stand-in-mode file next to the record says: finishes (ok), stops without the trailer
# (no-trailer), or fails half-way like a dropped connection (fail), echoing the password
# (from the stand-in-password file) if asked (echo).
import json, os, stat, sys
if "--help" in sys.argv:
    help_file = os.path.join(os.path.dirname({record!r}), "stand-in-help")
    print(open(help_file).read() if os.path.exists(help_file)
          else "  --hex-blob  Dump binary strings in hex")
    sys.exit(0)
option_file = sys.argv[1].split("=", 1)[1]
with open({record!r}, "w") as f:
    json.dump({{"argv": sys.argv, "env": dict(os.environ), "options": open(option_file).read(),
               "is_pipe": stat.S_ISFIFO(os.stat(option_file).st_mode)}}, f)
mode_file = os.path.join(os.path.dirname({record!r}), "stand-in-mode")
mode = open(mode_file).read().strip() if os.path.exists(mode_file) else "ok"
sys.stdout.write("-- MariaDB dump 10.19\\n" + "INSERT INTO t VALUES (1);\\n" * 5000)
sys.stdout.flush()
if mode == "hang":  # a dump that takes (much) longer than dump_timeout_minutes
    import time
    time.sleep(60)
if mode in ("fail", "echo"):
    said = ""
    if mode == "echo":
        said = "password was " + open(mode_file.replace("-mode", "-password")).read()
    sys.stderr.write("mysqldump: Error 2013: Lost connection to server during query " + said)
    sys.exit(2)
if mode == "ok":
    sys.stdout.write("\\n-- Dump completed on 2024-01-01 12:00:00\\n")
"""


@pytest.fixture
def stand_in_mysqldump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a recording ``mysqldump`` first on PATH; returns the record file."""
    bindir = tmp_path / "stand-in-bin"
    bindir.mkdir()
    record = tmp_path / "record.json"
    script = bindir / "mysqldump"
    script.write_text(STAND_IN.format(python=sys.executable, record=str(record)))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return record


STAND_IN_PROJECT = make_project(
    host="db.example", port=3307, name="shop", user="backup", password=Secret('s3cret"\\x')
)


def test_argv_and_the_credentials_pipe(
    stand_in_mysqldump: Path,
    settings: GlobalSettings,
    stem: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MYSQL_PWD", "from-the-environment")

    artifact = plugin.backupctl_dump(project=STAND_IN_PROJECT, settings=settings, target_stem=stem)

    record = json.loads(stand_in_mysqldump.read_text())
    assert record["argv"][1].startswith("--defaults-file=/dev/fd/")  # must be the first option
    assert record["argv"][2:] == [
        "--single-transaction",
        "--quick",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
        "--default-character-set=utf8mb4",
        "--no-tablespaces",
        "--comments",
        "shop",
    ]
    assert record["options"] == (
        '[client]\nhost="db.example"\nport="3307"\nuser="backup"\npassword="s3cret\\"\\\\x"\n'
    )
    assert record["is_pipe"] is True  # the password never touched the disk
    assert not any("s3cret" in arg for arg in record["argv"])
    assert "MYSQL_PWD" not in record["env"]
    assert not any("s3cret" in value for value in record["env"].values())
    assert mode(artifact.path) == 0o600
    assert gzip.decompress(artifact.path.read_bytes()).endswith(
        b"-- Dump completed on 2024-01-01 12:00:00\n"
    )


def test_mysql_only_options_are_added_when_mysqldump_knows_them(
    stand_in_mysqldump: Path,
    settings: GlobalSettings,
    stem: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (stand_in_mysqldump.parent / "stand-in-help").write_text(
        "  --set-gtid-purged=name\n  --column-statistics\n"
    )
    plugin.backupctl_dump(project=STAND_IN_PROJECT, settings=settings, target_stem=stem)
    argv = json.loads(stand_in_mysqldump.read_text())["argv"]
    assert argv[-3:] == ["--set-gtid-purged=OFF", "--column-statistics=0", "shop"]


def test_mysqldump_failing_half_way_fails_the_dump_although_gzip_succeeded(
    stand_in_mysqldump: Path,
    settings: GlobalSettings,
    stem: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (stand_in_mysqldump.parent / "stand-in-mode").write_text("fail")
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=STAND_IN_PROJECT, settings=settings, target_stem=stem)
    assert caught.value.message == ("mysqldump: Error 2013: Lost connection to server during query")
    assert (caught.value.retryable, caught.value.connectivity) == (True, True)
    assert list(stem.parent.iterdir()) == []


def test_a_dump_without_the_trailer_fails_although_both_exit_codes_are_0(
    stand_in_mysqldump: Path,
    settings: GlobalSettings,
    stem: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (stand_in_mysqldump.parent / "stand-in-mode").write_text("no-trailer")
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=STAND_IN_PROJECT, settings=settings, target_stem=stem)
    assert "does not end with '-- Dump completed'" in caught.value.message
    assert list(stem.parent.iterdir()) == []


def test_a_password_echoed_on_stderr_is_masked(
    stand_in_mysqldump: Path,
    settings: GlobalSettings,
    stem: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (stand_in_mysqldump.parent / "stand-in-mode").write_text("echo")
    (stand_in_mysqldump.parent / "stand-in-password").write_text('s3cret"\\x')
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=STAND_IN_PROJECT, settings=settings, target_stem=stem)
    assert caught.value.message.endswith("password was ********")


# -- verify and decompress -----------------------------------------------------


@pytest.fixture
def good_dump(tmp_path: Path) -> DumpArtifact:
    path = tmp_path / "p_backup_20240101_120000_abcd.sql.gz"
    sql = b"-- MariaDB dump\n" + b"INSERT INTO t VALUES (1);\n" * 20000
    path.write_bytes(gzip.compress(sql + b"\n-- Dump completed on 2024-01-01 12:00:00\n"))
    return DumpArtifact(path=path, size_bytes=path.stat().st_size, format="mysql-sql-gzip")


def test_verify_accepts_a_complete_dump(settings: GlobalSettings, good_dump: DumpArtifact) -> None:
    result = plugin.backupctl_verify(project=make_project(), settings=settings, artifact=good_dump)
    assert result.ok
    assert result.detail == "gzip intact, ends with '-- Dump completed on 2024-01-01 12:00:00'"


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda data: data[: len(data) // 2], "not a valid gzip file: gzip: "),
        (lambda data: b"plain text, not gzip", "not a valid gzip file: gzip: "),
        (lambda data: b"", "not a valid gzip file: gzip: "),
        (
            lambda data: gzip.compress(gzip.decompress(data).rsplit(b"\n--", 1)[0]),
            "does not end with '-- Dump completed': mysqldump stopped early",
        ),
    ],
    ids=["truncated", "not-gzip", "empty", "no-trailer"],
)
def test_verify_rejects_a_damaged_dump(
    settings: GlobalSettings, good_dump: DumpArtifact, damage: Any, expected: str
) -> None:
    good_dump.path.write_bytes(damage(good_dump.path.read_bytes()))
    result = plugin.backupctl_verify(project=make_project(), settings=settings, artifact=good_dump)
    assert not result.ok
    assert expected in result.detail
    assert "\n" not in result.detail


def test_verify_reports_a_missing_file(tmp_path: Path, settings: GlobalSettings) -> None:
    artifact = DumpArtifact(path=tmp_path / "gone.sql.gz", size_bytes=0, format="mysql-sql-gzip")
    result = plugin.backupctl_verify(project=make_project(), settings=settings, artifact=artifact)
    assert not result.ok
    assert "missing" in result.detail


def test_decompress_only_handles_sql_gz_and_leaves_nothing_half_written(
    tmp_path: Path, settings: GlobalSettings, good_dump: DumpArtifact
) -> None:
    project = make_project()
    other = tmp_path / "x.dump"
    other.write_bytes(b"PGDMP")
    assert plugin.backupctl_decompress(project=project, settings=settings, path=other) is None

    good_dump.path.write_bytes(good_dump.path.read_bytes()[:-100])  # truncated
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_decompress(project=project, settings=settings, path=good_dump.path)
    assert "unexpected end of file" in caught.value.message
    assert not good_dump.path.with_suffix("").exists()


# -- compression.enabled: false: plain SQL ---------------------------------------


def uncompressed(project: ProjectSettings) -> ProjectSettings:
    return attrs.evolve(project, compression=CompressionSettings(enabled=False))


def test_uncompressed_dump_verify_and_guide_round_trip(
    mariadb: MariaDb, filled_db: MysqlDatabase, settings: GlobalSettings, stem: Path
) -> None:
    project = uncompressed(make_project(filled_db))
    before = fingerprint(mariadb, filled_db.name)

    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    assert artifact.path == stem.with_name(stem.name + ".sql")
    assert artifact.format == "mysql-sql"
    assert artifact.size_bytes == artifact.path.stat().st_size > 0
    assert mode(artifact.path) == 0o600
    assert sorted(p.name for p in stem.parent.iterdir()) == [artifact.path.name]
    sql = artifact.path.read_bytes()
    # SQL text, not gzip's magic bytes. MariaDB 10.11.8+ puts its sandbox-mode line
    # (a /*M!...*/ comment) before the "-- MariaDB dump" header; other dumps start with it.
    assert not sql.startswith(b"\x1f\x8b")
    assert sql.startswith((b"-- ", b"/*M!999999\\- enable the sandbox mode */"))
    assert b"\n-- MariaDB dump " in sql[:200] or sql.startswith(b"-- ")
    assert sql.rstrip().rsplit(b"\n", 1)[-1].startswith(b"-- Dump completed on ")
    assert b"CREATE DATABASE" not in sql and b"\nUSE " not in sql

    verified = plugin.backupctl_verify(project=project, settings=settings, artifact=artifact)
    assert verified.ok, verified.detail
    assert verified.detail.startswith("plain SQL, ends with '-- Dump completed on ")

    # Nothing to decompress: restore --decompress makes no file.
    assert (
        plugin.backupctl_decompress(project=project, settings=settings, path=artifact.path) is None
    )
    assert sorted(p.name for p in stem.parent.iterdir()) == [artifact.path.name]

    guide = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=artifact.path, snapshot_id=SNAPSHOT
    )
    restored = f"{filled_db.name}_restored_{SNAPSHOT[:8]}"
    assert not any("gunzip" in line for line in guide)
    assert f"; cat {artifact.path}; }} | mysql --host=127.0.0.1 " in guide[1]
    assert all(filled_db.password not in line for line in guide)
    follow_guide(guide, filled_db.password)

    assert fingerprint(mariadb, restored) == before
    assert mariadb.query("SELECT name, email, note FROM customers WHERE id = 3001", restored) == [
        ("Ada 👩‍💻", None, "tab\there, line\nbreak, quote ' and backslash \\")
    ]
    assert mariadb.query("SELECT HEX(payload) FROM orders WHERE customer_id = 3001", restored) == [
        ("".join(f"{i:02X}" for i in range(256)),)
    ]


@pytest.mark.parametrize(
    "keep", [0.5, 0.99, -20, -1], ids=["half", "99-percent", "in-the-trailer", "last-byte"]
)
def test_verify_rejects_a_truncated_uncompressed_dump(
    filled_db: MysqlDatabase, settings: GlobalSettings, stem: Path, keep: float
) -> None:
    project = uncompressed(make_project(filled_db))
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    data = artifact.path.read_bytes()
    cut = len(data) + int(keep) if keep < 0 else int(len(data) * keep)
    artifact.path.write_bytes(data[:cut])

    result = plugin.backupctl_verify(project=project, settings=settings, artifact=artifact)

    assert not result.ok
    assert result.detail.startswith(artifact.path.name)
    assert "\n" not in result.detail


def test_uncompressed_dump_is_mysqldumps_output_unchanged(
    stand_in_mysqldump: Path, settings: GlobalSettings, stem: Path
) -> None:
    project = uncompressed(STAND_IN_PROJECT)

    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    assert artifact.path == stem.with_name(stem.name + ".sql")
    assert (artifact.format, mode(artifact.path)) == ("mysql-sql", 0o600)
    assert artifact.path.read_bytes() == (
        b"-- MariaDB dump 10.19\n"
        + b"INSERT INTO t VALUES (1);\n" * 5000
        + b"\n-- Dump completed on 2024-01-01 12:00:00\n"
    )
    record = json.loads(stand_in_mysqldump.read_text())
    assert record["argv"][2:] == [*plugin.DUMP_OPTIONS, "shop"]
    assert record["is_pipe"] is True


@pytest.mark.parametrize("stand_in_mode", ["fail", "no-trailer"])
def test_a_failed_uncompressed_dump_leaves_nothing_behind(
    stand_in_mysqldump: Path,
    settings: GlobalSettings,
    stem: Path,
    monkeypatch: pytest.MonkeyPatch,
    stand_in_mode: str,
) -> None:
    (stand_in_mysqldump.parent / "stand-in-mode").write_text(stand_in_mode)
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(
            project=uncompressed(STAND_IN_PROJECT), settings=settings, target_stem=stem
        )
    expected = {
        "fail": "mysqldump: Error 2013: Lost connection to server during query",
        "no-trailer": "does not end with '-- Dump completed': mysqldump stopped early",
    }[stand_in_mode]
    assert expected in caught.value.message
    assert list(stem.parent.iterdir()) == []


def test_check_without_compression_does_not_need_gzip(
    tmp_path: Path, settings: GlobalSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    project = uncompressed(make_project(host="h", name="shop", user="u"))
    [check] = plugin.backupctl_check(project=project, settings=settings)
    assert (check.name, check.status) == ("tools", "fail")
    assert check.detail.startswith("not on PATH: mysqldump, mysql (")


@pytest.fixture
def good_plain_dump(tmp_path: Path) -> DumpArtifact:
    path = tmp_path / "p_backup_20240101_120000_abcd.sql"
    sql = b"-- MariaDB dump\n" + b"INSERT INTO t VALUES (1);\n" * 20000
    path.write_bytes(sql + b"\n-- Dump completed on 2024-01-01 12:00:00\n")
    return DumpArtifact(path=path, size_bytes=path.stat().st_size, format="mysql-sql")


def test_verify_accepts_a_complete_plain_dump(
    settings: GlobalSettings, good_plain_dump: DumpArtifact
) -> None:
    result = plugin.backupctl_verify(
        project=make_project(), settings=settings, artifact=good_plain_dump
    )
    assert result.ok
    assert result.detail == "plain SQL, ends with '-- Dump completed on 2024-01-01 12:00:00'"


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda data: data[: len(data) // 2], "ends in the middle of a line"),
        (lambda data: data[:-1], "ends in the middle of a line: the file is cut short"),
        (lambda data: data[:-12], "ends in the middle of a line: the file is cut short"),
        (lambda data: b"", "ends in the middle of a line: the file is cut short"),
        (lambda data: gzip.compress(data), "ends in the middle of a line"),
        (lambda data: data.rsplit(b"\n--", 1)[0] + b"\n", "does not end with '-- Dump completed'"),
    ],
    ids=["half", "last-byte", "in-the-trailer", "empty", "gzip-inside", "no-trailer"],
)
def test_verify_rejects_a_damaged_plain_dump(
    settings: GlobalSettings, good_plain_dump: DumpArtifact, damage: Any, expected: str
) -> None:
    good_plain_dump.path.write_bytes(damage(good_plain_dump.path.read_bytes()))
    result = plugin.backupctl_verify(
        project=make_project(), settings=settings, artifact=good_plain_dump
    )
    assert not result.ok
    assert expected in result.detail
    assert "\n" not in result.detail


def test_decompress_leaves_a_plain_dump_alone(
    settings: GlobalSettings, good_plain_dump: DumpArtifact
) -> None:
    before = sorted(good_plain_dump.path.parent.iterdir())
    result = plugin.backupctl_decompress(
        project=make_project(), settings=settings, path=good_plain_dump.path
    )
    assert result is None
    assert sorted(good_plain_dump.path.parent.iterdir()) == before


def test_dump_timeout_minutes_kills_the_pipeline_and_removes_the_dump(
    stand_in_mysqldump: Path, settings: GlobalSettings, stem: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    (stand_in_mysqldump.parent / "stand-in-mode").write_text("hang")
    monkeypatch.setattr(plugin, "SECONDS_PER_MINUTE", 0.5)  # 1 "minute" = 0.5 s here
    db = attrs.evolve(STAND_IN_PROJECT.database, dump_timeout_minutes=1)
    project = attrs.evolve(STAND_IN_PROJECT, database=db)
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    assert caught.value.message == (
        "mysqldump timed out after 1 min (database.dump_timeout_minutes)"
    )
    assert caught.value.retryable is False
    assert list(stem.parent.iterdir()) == []


# -- restore drills: the manifest counts rows in the dump itself ------------------------


def test_count_insert_rows_in_both_mysqldump_layouts(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from backupctl_mysql import drill

    one_line = (
        b"-- MySQL dump 10.13  Distrib 8.0.36\n-- Server version\t8.0.36\n"
        b"CREATE TABLE `a``b` (\n  `id` int\n);\n"
        b"INSERT INTO `a``b` VALUES (1,'x),(y'),(2,'it\\'s; (3)'),(3,NULL);\n"
        b"CREATE TABLE `empty` (`id` int);\n"
        b"INSERT INTO `a``b` VALUES (4,0x28292C28);\n"
    )
    per_line = (  # MariaDB 10.11+: one row per line
        b"CREATE TABLE `t` (`v` text);\n"
        b"INSERT INTO `t` VALUES\n('a;\\n(b'),\n('c'),\n(''),\n('\\\\');\n"
        b"/*!40000 ALTER TABLE `t` ENABLE KEYS */;\n"
    )
    for chunk in (1, 5, 17, 1 << 20):
        monkeypatch.setattr(drill, "CHUNK", chunk)
        counts, header = drill.count_insert_rows(io.BytesIO(one_line + per_line))
        assert counts == {"a`b": 4, "empty": 0, "t": 4}, chunk
        assert "Server version\t8.0.36" in header
    with pytest.raises(PluginError, match="ends inside the rows of table t"):
        drill.count_insert_rows(io.BytesIO(b"INSERT INTO `t` VALUES\n(1),\n"))


def test_manifest_of_a_real_dump_matches_the_database(
    mariadb: MariaDb, filled_db: MysqlDatabase, settings: GlobalSettings, stem: Path
) -> None:
    project = make_project(filled_db)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    manifest = plugin.backupctl_manifest(project=project, settings=settings, artifact=artifact)
    assert manifest is not None
    tables = fingerprint(mariadb, filled_db.name)["rows"]
    assert dict(manifest.tables) == {name: int(count) for name, count in tables.items()}
    assert manifest.engine_version and manifest.tool_version


def test_guide_recreates_collation_and_comment_and_never_merges(
    mariadb: MariaDb, filled_db: MysqlDatabase, settings: GlobalSettings, stem: Path
) -> None:
    """The manifest keeps the database's collation and comment; the guide's one command
    recreates them, and refuses (exit 1, nothing changed) a target that exists."""
    from backupctl_core.domain.drill import manifest_path
    from backupctl_core.testing.terminal import run_answering_password_prompts

    name = f"`{filled_db.name}`"
    mariadb.execute(
        f"ALTER DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        " COMMENT 'Shop — it''s data'",
        filled_db.name,
        login=filled_db,
    )
    mariadb.execute(
        "CREATE FUNCTION greet() RETURNS VARCHAR(20) DETERMINISTIC RETURN 'hi'",
        filled_db.name,
        login=filled_db,
    )
    project = make_project(filled_db)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    manifest = plugin.backupctl_manifest(project=project, settings=settings, artifact=artifact)
    assert manifest is not None
    assert manifest.database_options == {
        "charset": "utf8mb4", "collation": "utf8mb4_unicode_ci", "comment": "Shop — it's data",
    }  # fmt: skip
    manifest_path(artifact.path).write_text(manifest.to_json())

    guide = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=artifact.path, snapshot_id=SNAPSHOT
    )
    follow_guide(guide, filled_db.password)

    restored = f"{filled_db.name}_restored_{SNAPSHOT[:8]}"
    schema = (
        "SELECT default_character_set_name, default_collation_name, schema_comment"
        " FROM information_schema.schemata WHERE schema_name = "
    )
    assert mariadb.query(schema + quote_string(restored)) == [
        ("utf8mb4", "utf8mb4_unicode_ci", "Shop — it's data")
    ]
    routine = "SELECT database_collation FROM information_schema.routines WHERE routine_schema = "
    assert mariadb.query(routine + quote_string(restored) + " AND routine_name = 'greet'") == [
        ("utf8mb4_unicode_ci",)
    ]
    before = fingerprint(mariadb, restored)

    # The same command again: the database exists, so the session stops at CREATE.
    with pytest.raises(AssertionError, match="database exists"):
        run_answering_password_prompts(guide[1], filled_db.password)
    assert fingerprint(mariadb, restored) == before


def test_system_versioned_history_is_dumped_counted_and_imported(
    mariadb: MariaDb,
    mariadb_db: MysqlDatabase,
    settings: GlobalSettings,
    stem: Path,
    tmp_path: Path,
) -> None:
    """A system-versioned table's history survives: mysqldump --dump-history when the
    database has one, the manifest counts every version, and a drill's import (and
    the guide's) brings them back."""
    mariadb.execute(
        "CREATE TABLE prices (id INT PRIMARY KEY, price INT) WITH SYSTEM VERSIONING;"
        "INSERT INTO prices VALUES (1, 10), (2, 20);"
        "UPDATE prices SET price = 11 WHERE id = 1; UPDATE prices SET price = 12 WHERE id = 1;"
        "DELETE FROM prices WHERE id = 2;",
        mariadb_db.name,
        login=mariadb_db,
    )
    history = "SELECT id, price FROM prices FOR SYSTEM_TIME ALL ORDER BY 1, 2"
    before = mariadb.query(history, mariadb_db.name)
    assert len(before) == 4
    project = make_project(mariadb_db)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    assert b"row_start, row_end" in gzip.decompress(artifact.path.read_bytes())
    manifest = plugin.backupctl_manifest(project=project, settings=settings, artifact=artifact)
    assert manifest is not None and dict(manifest.tables) == {"prices": 4}

    scratch = plugin.backupctl_scratch_database(
        project=project, settings=settings, name=f"{mariadb_db.name}_drill_1"
    )
    assert scratch is not None
    try:
        scratch.create_and_import(artifact.path)
        assert scratch.table_counts() == {"prices": 4}
        assert mariadb.query(history, scratch.name) == before
    finally:
        scratch.drop()
