"""Restore drills end to end: ``run``, then ``drill``, on real servers and restic.

PostgreSQL (the private scram cluster, PG_SCHEMA's realistic content), MariaDB
(the machine's server) and SQLite: the drill passes; a manifest altered in a
stored snapshot, or a false operator check, fails it naming what differs; and no
scratch database or scratch folder is left behind, whatever the result.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from backupctl_core.testing.fixtures_pg import PgDatabase
from backupctl_core.testing.mariadb import MariaDb, MysqlDatabase, quote_string
from backupctl_core.testing.pgcluster import PgCluster
from backupctl_core.testing.sftp import SftpServer
from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace
from tests.test_roundtrip import (  # noqa: F401 - fixtures used by name
    PROJECT,
    RETENTION,
    backupctl,
    make_workspace,
    mysql_source,
    pg_source,
)

pytestmark = pytest.mark.e2e


def ok(ws: Workspace, *args: str) -> str:
    result = backupctl(ws, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def drill_json(ws: Workspace, *args: str) -> tuple[int, dict[str, Any]]:
    result = backupctl(ws, "drill", PROJECT, "--json", *args)
    assert not result.stderr.strip() or "warning" in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def checks(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["name"]: (c["status"], c["detail"]) for c in report["checks"]}


def nothing_left(ws: Workspace) -> None:
    drill_root = ws.base_dir / ".drill"
    assert not drill_root.exists() or list(drill_root.iterdir()) == []


def pg_scratch_databases(pg: PgCluster, db: PgDatabase) -> list[str]:
    with pg.connect("postgres") as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{db.name}_drill_%",)
        ).fetchall()
    return [str(name) for (name,) in rows]


def configure(ws: Workspace, **drill: Any) -> None:
    """Add a ``drill:`` block to the workspace's one project."""
    from ruamel.yaml import YAML

    data = YAML().load(ws.config_path.read_text())
    data["projects"][0]["drill"] = drill
    ws.write_config(list(data["projects"]))


# == PostgreSQL =========================================================================


def test_postgres_drill_passes_and_leaves_nothing(
    pg_scram: PgCluster,
    pg_source: PgDatabase,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    db = pg_source
    database = {"type": "postgres", "host": db.host, "port": db.port, "name": db.name}
    ws, _ = make_workspace(tmp_path, {**database, "user": db.user}, db.password, "combined")
    configure(ws, checks=["SELECT count(*) = 2001 FROM shop.customers"])
    ok(ws, "run", PROJECT)

    code, report = drill_json(ws)

    assert code == 0, report["checks"]
    found = checks(report)
    assert found["import"][0] == "pass"
    assert found["rows"] == ("pass", found["rows"][1])
    assert found["rows"][1] == "5 table(s), 12543 row(s) as in the dump"
    assert found["files"][0] == "pass"
    assert found["check 1"] == ("pass", "SELECT count(*) = 2001 FROM shop.customers")
    assert report["scratch_database"].startswith(f"{db.name}_drill_")
    assert pg_scratch_databases(pg_scram, db) == []
    nothing_left(ws)

    # Recorded as a drill, shown by status, never counted as a backup.
    status = json.loads(ok(ws, "status", "--json"))
    assert status[PROJECT]["status"] == "success"
    assert status[PROJECT]["last_drill"]["ok"] is True
    entries = json.loads(ok(ws, "logs", PROJECT, "--json"))
    assert [e["kind"] for e in entries] == ["drill", "backup"]
    assert "last verified restore: " in ok(ws, "status")


def test_postgres_parallel_dump_is_a_folder_that_restores_and_drills(
    pg_scram: PgCluster,
    pg_source: PgDatabase,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """database.jobs: 2: the dump is a folder, stored whole; restore --only db brings
    all of it back with a guide that restores 2 tables at a time; a drill imports it."""
    db = pg_source
    database = {"type": "postgres", "host": db.host, "port": db.port, "name": db.name}
    ws, _ = make_workspace(tmp_path, {**database, "user": db.user, "jobs": 2}, db.password,
                           "combined")  # fmt: skip
    ok(ws, "run", PROJECT)

    target = tmp_path / "restored"
    out = ok(ws, "restore", PROJECT, "latest", str(target), "--only", "db", "--guide")
    (folder,) = target.rglob(f"{PROJECT}_backup_*.dir")
    assert (folder / "toc.dat").is_file() and len(list(folder.iterdir())) == 6  # 5 tables
    assert ", 1 dump(s)" in out and f"--jobs=2 {folder}" in out
    code, report = drill_json(ws)
    assert code == 0, report["checks"]
    assert checks(report)["rows"] == ("pass", "5 table(s), 12543 row(s) as in the dump")
    assert pg_scratch_databases(pg_scram, db) == []
    nothing_left(ws)


def test_postgres_drill_fails_on_a_false_check_and_names_it(
    pg_scram: PgCluster,
    pg_source: PgDatabase,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    db = pg_source
    database = {"type": "postgres", "host": db.host, "port": db.port, "name": db.name}
    ws, _ = make_workspace(tmp_path, {**database, "user": db.user}, db.password, "separate")
    configure(ws, checks=["SELECT count(*) = 0 FROM shop.orders", "SELECT no_such_column"])
    ok(ws, "run", PROJECT)

    result = backupctl(ws, "drill", PROJECT)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL check 1: false: SELECT count(*) = 0 FROM shop.orders" in result.stdout
    assert "FAIL check 2: SELECT no_such_column: " in result.stdout
    assert "ok   rows: " in result.stdout  # the data itself came back
    assert f"{PROJECT}: drill FAILED" in result.stdout
    assert db.password not in result.stdout + result.stderr
    assert pg_scratch_databases(pg_scram, db) == []
    nothing_left(ws)


def test_a_manifest_that_disagrees_with_the_import_fails_the_drill(
    pg_scram: PgCluster,
    pg_source: PgDatabase,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    db = pg_source
    database = {"type": "postgres", "host": db.host, "port": db.port, "name": db.name}
    ws, _ = make_workspace(tmp_path, {**database, "user": db.user}, db.password, "combined")
    ok(ws, "run", PROJECT)
    (manifest,) = (ws.base_dir / PROJECT).glob("*.manifest.json")
    data = json.loads(manifest.read_text())
    assert data["tables"]["shop.customers"] == 2001
    assert data["tables"]['shop."Gift Cards"'] == 500
    data["tables"]["shop.customers"] = 2000
    manifest.write_text(json.dumps(data))
    (dump,) = (ws.base_dir / PROJECT).glob("*.dump")
    # A newer snapshot holding the dump and the altered manifest, tagged as backupctl's.
    stored = backupctl(ws, "restic", PROJECT, "backup", str(dump), str(manifest),
                       "--tag", f"project:{PROJECT}", "--tag", "backupctl:combined")  # fmt: skip
    assert stored.returncode == 0, stored.stdout + stored.stderr

    code, report = drill_json(ws)

    assert code == 1
    assert checks(report)["rows"] == (
        "fail",
        "table shop.customers: 2000 row(s) in the dump, 2001 imported",
    )
    assert pg_scratch_databases(pg_scram, db) == []
    nothing_left(ws)


# == MariaDB ============================================================================


def test_mysql_drill_passes_and_drops_its_database(
    mariadb: MariaDb,
    mysql_source: MysqlDatabase,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    db = mysql_source
    database = {"type": "mysql", "host": db.host, "port": db.port, "name": db.name}
    ws, _ = make_workspace(tmp_path, {**database, "user": db.user}, db.password, "combined")
    configure(ws, checks=["SELECT count(*) = 200 FROM products"])
    ok(ws, "run", PROJECT)

    code, report = drill_json(ws)

    assert code == 0, report["checks"]
    found = checks(report)
    assert found["rows"][0] == "pass"
    assert "5 table(s), 10203 row(s)" in found["rows"][1]
    assert found["check 1"][0] == "pass"
    left = mariadb.query(
        "SELECT schema_name FROM information_schema.schemata"
        f" WHERE schema_name LIKE {quote_string(db.name + '_drill_%')}"
    )
    assert left == []
    nothing_left(ws)


# == SQLite =============================================================================


def sqlite_workspace(tmp_path: Path, encrypt: bool = False) -> Workspace:
    ws = Workspace(tmp_path)
    ws.write_env(RESTIC_PASSWORD="restic-drill-pw")
    database = make_sqlite_db(tmp_path / "shop.sqlite", rows=120)
    ws.write_config([sqlite_project(PROJECT, database, tmp_path / "repo", retention=RETENTION)])
    ok(ws, "db", "migrate")
    return ws


def test_sqlite_drill_passes_and_an_empty_repository_fails(tmp_path: Path) -> None:
    ws = sqlite_workspace(tmp_path)

    before = backupctl(ws, "drill", PROJECT)
    assert before.returncode == 1
    assert "FAIL restore: restic snapshots failed: no restic repository" in before.stdout

    ok(ws, "run", PROJECT)
    code, report = drill_json(ws)
    assert code == 0, report["checks"]
    assert checks(report)["rows"] == ("pass", "1 table(s), 120 row(s) as in the dump")
    nothing_left(ws)

    # --all drills every enabled project; status shows the newest drill.
    out = ok(ws, "drill", "--all")
    assert f"{PROJECT}: drill passed" in out
    status = ok(ws, "status")
    assert f"{PROJECT}: last verified restore: " in status
    assert status.rstrip().endswith(", passed")
    logs = ok(ws, "logs", PROJECT)
    assert logs.count("restore drill passed") == 2  # drilled twice, one backup
    assert logs.count(" success  run ") == 1


def test_drill_usage_errors(tmp_path: Path) -> None:
    ws = sqlite_workspace(tmp_path)
    neither = backupctl(ws, "drill")
    assert neither.returncode == 1
    assert "give a project name or --all" in neither.stderr
    assert "Traceback" not in neither.stderr
    unknown = backupctl(ws, "drill", "nope")
    assert unknown.returncode == 3  # a config error
    assert "unknown project 'nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_restic_stats_counts_what_a_restore_writes(tmp_path: Path) -> None:
    """The files check compares with ``restic stats --mode restore-size``, which
    counts every entry a restore writes: the folders down to the dump, and files."""
    ws = sqlite_workspace(tmp_path)
    ok(ws, "run", PROJECT)
    result = subprocess.run(
        [*backupctl_argv(ws), "restic", PROJECT, "stats", "--json", "--mode", "restore-size"],
        capture_output=True,
        text=True,
        check=False,
    )
    stats = json.loads(result.stdout)
    (dump,) = (ws.base_dir / PROJECT).glob("*.sqlite.gz")
    folders = len(dump.parent.parts) - 1  # below the root: tmp, pytest-of-..., ..., shop
    assert stats["total_file_count"] == folders + 2  # and the dump and its manifest
    size = dump.stat().st_size + dump.with_name(dump.name + ".manifest.json").stat().st_size
    assert stats["total_size"] == size


def backupctl_argv(ws: Workspace) -> list[str]:
    from tests.test_roundtrip import BACKUPCTL

    return [BACKUPCTL, *ws.cli_args()]


def test_postgres_drill_imports_on_the_drill_server_not_as_the_backup_user(
    pg_scram: PgCluster, pg_scram_db: PgDatabase, tmp_path: Path
) -> None:
    """``drill.database``: the scratch database is made by the drill's own user (which
    may create databases); the backup user, which may not, is never asked to."""
    import secrets

    from psycopg import sql

    db = pg_scram_db
    with pg_scram.connect(db.name, user=db.user, password=db.password) as conn:
        conn.execute("CREATE TABLE t AS SELECT g AS n FROM generate_series(1, 42) g")
    drill_user, drill_password = f"drill_{secrets.token_hex(4)}", secrets.token_hex(12)
    pg_scram.create_role(drill_user, drill_password)
    pg_scram.execute("postgres", sql.SQL("ALTER ROLE {} CREATEDB").format(
        sql.Identifier(drill_user)))  # fmt: skip
    try:
        database = {"type": "postgres", "host": db.host, "port": db.port, "name": db.name}
        ws, _ = make_workspace(tmp_path, {**database, "user": db.user}, db.password, "combined")
        ws.write_env(DRILL_PASSWORD=drill_password)
        server = {"host": db.host, "port": db.port, "user": drill_user,
                  "password": "${DRILL_PASSWORD}"}  # fmt: skip
        configure(ws, database=server)
        ok(ws, "run", PROJECT)

        code, report = drill_json(ws)

        assert code == 0, report["checks"]
        assert checks(report)["rows"] == ("pass", "1 table(s), 42 row(s) as in the dump")
        assert pg_scratch_databases(pg_scram, db) == []
        assert drill_password not in json.dumps(report)
    finally:
        pg_scram.drop_role(drill_user)


# == Another storage backend =============================================================


def test_postgres_on_borg_over_ssh_runs_prunes_restores_and_drills(
    pg_scram: PgCluster,
    pg_source: PgDatabase,  # noqa: F811 - the fixture imported above
    borg_ssh_server: SftpServer,
    tmp_path: Path,
) -> None:
    """storage: {type: borg} on a host that only runs ``borg serve`` (a storage box's
    borg port): two runs, keep_last 1 prunes the first archive, a restore brings the
    dump back, and a drill imports it into a scratch database with every row."""
    from ruamel.yaml import YAML

    db = pg_source
    database = {"type": "postgres", "host": db.host, "port": db.port, "name": db.name}
    ws, _ = make_workspace(tmp_path, {**database, "user": db.user}, db.password, "combined",
                           ssh=borg_ssh_server)  # fmt: skip
    data = YAML().load(ws.config_path.read_text())
    project = data["projects"][0]
    repo = project.pop("restic")["repository_path"]
    project["storage"] = {"type": "borg", "config": {"repository_path": repo}}
    project["retention"] = {"keep_last": 1, "keep_daily": 0, "keep_weekly": 0,
                            "keep_monthly": 0, "prune_interval": "0"}  # fmt: skip
    ws.write_config([project])
    plugins = {p["name"]: p for p in json.loads(ok(ws, "plugins", "--json"))}
    assert {"storage:borg", "storage:restic"} <= {
        kind for p in plugins.values() for kind in p["provides"]
    }

    ok(ws, "run", PROJECT)
    ok(ws, "run", PROJECT)

    (archive,) = json.loads(ok(ws, "snapshots", PROJECT, "--json"))  # keep_last 1
    (newest, _first) = json.loads(ok(ws, "logs", PROJECT, "--json"))
    assert newest["snapshot_id"] == archive["id"] and newest["prune_snapshots_removed"] == 1
    target = tmp_path / "restored"
    ok(ws, "restore", PROJECT, "latest", str(target), "--only", "db")
    assert len(list(target.rglob(f"{PROJECT}_backup_*.dump"))) == 1  # and its manifest
    code, report = drill_json(ws)
    assert code == 0, report["checks"]
    assert checks(report)["rows"] == ("pass", "5 table(s), 12543 row(s) as in the dump")
    assert pg_scratch_databases(pg_scram, db) == []
    nothing_left(ws)
