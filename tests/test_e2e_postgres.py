"""End to end: a real PostgreSQL with password authentication, backed up by the
installed ``backupctl`` executable to restic over SFTP (a local sshd) and to a
local repository; then restic restore → pg_restore into a fresh database →
the same rows come back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from backupctl_restic.repository import restic_environment

from backupctl_core.config.loader import load_config
from backupctl_core.testing.fixtures_pg import PgDatabase
from backupctl_core.testing.pgcluster import PgCluster
from backupctl_core.testing.sftp import SftpServer
from tests.support.workspace import Workspace

pytestmark = pytest.mark.e2e
BACKUPCTL = str(Path(sys.executable).with_name("backupctl"))

SCHEMA = """
CREATE SCHEMA shop;
CREATE TABLE shop.customers (id serial PRIMARY KEY, name text NOT NULL, note text);
CREATE TABLE shop.orders (
  id bigserial PRIMARY KEY,
  customer_id int REFERENCES shop.customers(id),
  total numeric(10,2),
  payload bytea
);
INSERT INTO shop.customers (name, note)
  SELECT 'Kundin ' || g || ' — ü ✓ 🚀', CASE WHEN g % 5 = 0 THEN NULL ELSE 'n' || g END
  FROM generate_series(1, 1500) g;
INSERT INTO shop.orders (customer_id, total, payload)
  SELECT 1 + g % 1500, g * 1.25, decode(md5(g::text), 'hex') FROM generate_series(1, 3000) g;
"""
CHECKSUM = """
SELECT (SELECT count(*) FROM shop.customers), (SELECT count(*) FROM shop.orders),
       (SELECT md5(string_agg(id || name || coalesce(note, '∅'), ',' ORDER BY id))
          FROM shop.customers),
       (SELECT md5(string_agg(id || ':' || total || encode(payload, 'hex'), ',' ORDER BY id))
          FROM shop.orders),
       (SELECT last_value FROM shop.orders_id_seq)
"""


def backupctl(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BACKUPCTL, *ws.cli_args(), *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def source(pg_scram: PgCluster, pg_scram_db: PgDatabase) -> PgDatabase:
    with pg_scram.connect(
        pg_scram_db.name, user=pg_scram_db.user, password=pg_scram_db.password
    ) as conn:
        conn.execute(SCHEMA)
    return pg_scram_db


def make_workspace(
    tmp_path: Path, source: PgDatabase, repo: str, ssh: SftpServer | None
) -> Workspace:
    ws = Workspace(tmp_path)
    env = {"DB_PASSWORD": source.password, "RESTIC_PASSWORD": "restic-secret-e2e"}
    if ssh is not None:
        env.update(
            HETZNER_SSH_HOST=ssh.host, HETZNER_SSH_USER=ssh.user,
            HETZNER_SSH_PORT=str(ssh.port), HETZNER_SSH_KEY_PATH=str(ssh.key_path),
        )  # fmt: skip
    ws.write_env(**env)
    assets = tmp_path / "uploads"
    (assets / "2026").mkdir(parents=True)
    (assets / "2026" / "invoice.txt").write_text("invoice ✓\n")
    ws.write_config(
        [
            {
                "name": "shop",
                "database": {
                    "type": "postgres",
                    "host": source.host,
                    "port": source.port,
                    "name": source.name,
                    "user": source.user,
                    "password": "${DB_PASSWORD}",
                },
                "assets": {"paths": [str(assets)]},
                "restic": {"repository_path": repo},
                "retention": {
                    "local_days": 7,
                    "keep_daily": 7,
                    "keep_weekly": 0,
                    "keep_monthly": 0,
                },
            }
        ]
    )
    assert backupctl(ws, "db", "migrate").returncode == 0
    return ws


def restic(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    config = load_config(ws.config_path, ws.env_path)
    env, argv = restic_environment(config.project("shop"), config.settings)
    return subprocess.run([*argv, *args], env=env, capture_output=True, text=True, check=True)


def round_trip(ws: Workspace, pg: PgCluster, source: PgDatabase, tmp_path: Path) -> None:
    expected = pg.query(source.name, CHECKSUM)
    result = backupctl(ws, "run", "shop")
    assert result.returncode == 0, result.stdout + result.stderr
    assert source.password not in result.stdout + result.stderr

    (snapshot,) = json.loads(restic(ws, "snapshots", "--json").stdout)
    assert sorted(snapshot["tags"]) == ["backupctl:combined", "project:shop"]
    status = json.loads(backupctl(ws, "status", "shop", "--json").stdout)[0]
    assert status["status"] == "success" and snapshot["id"].startswith(status["snapshot_id"])
    assert status["files_new"] == 3 and status["bytes_added"] > 0  # dump, manifest, asset

    target = tmp_path / "restored"
    restic(ws, "restore", "latest", "--target", str(target))
    (dump,) = list(target.rglob("shop_backup_*.dump"))
    assert (
        target / str(tmp_path / "uploads" / "2026" / "invoice.txt").lstrip("/")
    ).read_text() == "invoice ✓\n"

    pg.create_database("restored_" + source.name)
    subprocess.run(
        [pg.tool("pg_restore"), "--no-owner", f"--host={pg.host}", f"--port={pg.port}",
         f"--username={pg.superuser}", f"--dbname=restored_{source.name}", str(dump)],
        env={**os.environ, "PGPASSWORD": pg.superuser_password}, check=True, capture_output=True,
    )  # fmt: skip
    try:
        assert pg.query("restored_" + source.name, CHECKSUM) == expected
    finally:
        pg.drop_database("restored_" + source.name)


def test_backup_over_sftp_restores_the_same_rows(
    pg_scram: PgCluster, source: PgDatabase, sftp_server: SftpServer, tmp_path: Path
) -> None:
    ws = make_workspace(tmp_path, source, sftp_server.new_repo_path("e2e"), sftp_server)
    round_trip(ws, pg_scram, source, tmp_path)
    dumps = list((ws.base_dir / "shop").glob("shop_backup_*.dump"))
    assert len(dumps) == 1 and dumps[0].stat().st_mode & 0o777 == 0o600


def test_backup_to_a_local_repository_restores_the_same_rows(
    pg_scram: PgCluster, source: PgDatabase, tmp_path: Path
) -> None:
    ws = make_workspace(tmp_path, source, str(tmp_path / "local-repo"), None)
    round_trip(ws, pg_scram, source, tmp_path)


def test_wrong_database_password_fails_at_dump(source: PgDatabase, tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, source, str(tmp_path / "repo"), None)
    ws.write_env(DB_PASSWORD="not-the-password-42")
    result = backupctl(ws, "run", "shop")
    assert result.returncode == 1
    assert "FAILED at Dump" in result.stdout
    assert result.stderr.count("password authentication failed") == 1, result.stderr
    (row,) = json.loads(backupctl(ws, "logs", "shop", "--json").stdout)
    assert row["status"] == "failed" and row["error_stage"] == "dump"
    assert row["retry_count"] == 0  # a wrong password is not retried
    assert "password authentication failed" in row["error_message"]
    everything = result.stdout + result.stderr + json.dumps(row)
    assert "not-the-password-42" not in everything
    assert not list((ws.base_dir / "shop").glob("shop_backup_*"))  # no partial dump left


def test_unreachable_repository_exits_4(
    source: PgDatabase, sftp_server: SftpServer, tmp_path: Path
) -> None:
    ws = make_workspace(tmp_path, source, sftp_server.new_repo_path("down"), sftp_server)
    ws.write_env(HETZNER_SSH_PORT="1", BACKUP_RETRY_COUNT="1")
    result = backupctl(ws, "run", "shop")
    assert result.returncode == 4, result.stdout + result.stderr
    (row,) = json.loads(backupctl(ws, "logs", "shop", "--json").stdout)
    assert row["error_stage"] == "sync" and row["retry_count"] == 1
