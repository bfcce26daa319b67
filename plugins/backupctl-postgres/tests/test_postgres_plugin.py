"""The PostgreSQL dumper against a real cluster that checks passwords (scram-sha-256)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import attrs
import pytest
from backupctl_postgres import clients as pg_clients
from backupctl_postgres import plugin

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
from backupctl_core.testing.fixtures_pg import PgDatabase
from backupctl_core.testing.pgcluster import PgCluster, free_port

ROWS = [
    (1, "Ada", None),
    (2, "Grace", "née Murray"),
    (3, "Tab\there", "line\nbreak"),
]


def make_project(
    db: PgDatabase | None = None, *, wrong_password: str | None = None, **overrides: Any
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
        database=DatabaseSettings(type="postgres", **fields),
    )


@pytest.fixture
def settings(tmp_path: Path) -> GlobalSettings:
    return GlobalSettings(backup_base_dir=tmp_path)


@pytest.fixture
def stem(tmp_path: Path) -> Path:
    return tmp_path / "p" / "p_backup_20240101_120000_abcd"


@pytest.fixture
def filled_db(pg_scram: PgCluster, pg_scram_db: PgDatabase) -> PgDatabase:
    """``pg_scram_db`` with two tables and a view, created by its owner."""
    with pg_scram.connect(pg_scram_db.name, pg_scram_db.user, pg_scram_db.password) as conn:
        conn.execute("CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, note text)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO people VALUES (%s, %s, %s)", ROWS)
        conn.execute("CREATE TABLE numbers AS SELECT g AS n FROM generate_series(1, 5000) g")
        conn.execute("CREATE VIEW named AS SELECT name FROM people WHERE note IS NOT NULL")
    return pg_scram_db


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- registration and config ---------------------------------------------------


def test_registered_through_the_backupctl_entry_point_group() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="backupctl")}
    assert found.get("postgres") == "backupctl_postgres.plugin"
    plugin_manager(plugin)  # raises PluginValidationError on a misspelled hook argument
    assert plugin.backupctl_plugin_types() == [PluginType("database", "postgres")]


def test_validate_config_names_missing_keys(settings: GlobalSettings) -> None:
    project = make_project(port=70000)
    assert plugin.backupctl_validate_config(project=project, settings=settings) == [
        "database.host is required",
        "database.name is required",
        "database.user is required",
        "database.port must be between 1 and 65535, got 70000",
    ]


def test_validate_config_ignores_other_database_types(settings: GlobalSettings) -> None:
    other = ProjectSettings(
        name="p",
        restic=ResticSettings(repository_path="/x"),
        database=DatabaseSettings(type="mysql"),
    )
    files_only = ProjectSettings(name="p", restic=ResticSettings(repository_path="/x"))
    assert plugin.backupctl_validate_config(project=other, settings=settings) == []
    assert plugin.backupctl_validate_config(project=files_only, settings=settings) == []


def test_validate_config_accepts_a_complete_block(
    settings: GlobalSettings, pg_scram_db: PgDatabase
) -> None:
    assert (
        plugin.backupctl_validate_config(project=make_project(pg_scram_db), settings=settings) == []
    )


# -- dump, verify, restore -----------------------------------------------------


def assert_restores_filled_db(pg_scram: PgCluster, filled_db: PgDatabase, dump: Path) -> None:
    """``pg_restore`` of ``dump`` into a new database holds exactly filled_db's rows."""
    restored = f"{filled_db.name}_restored"
    pg_scram.create_database(restored, owner=filled_db.user)
    try:
        subprocess.run(
            [
                pg_scram.tool("pg_restore"),
                "--no-owner",
                "--exit-on-error",
                f"--host={filled_db.host}",
                f"--port={filled_db.port}",
                f"--username={filled_db.user}",
                f"--dbname={restored}",
                "--no-password",
                str(dump),
            ],
            env={**os.environ, "PGPASSWORD": filled_db.password},
            capture_output=True,
            text=True,
            check=True,
        )
        assert pg_scram.query(restored, "SELECT * FROM people ORDER BY id") == ROWS
        assert pg_scram.query(restored, "SELECT count(*), sum(n) FROM numbers") == [
            (5000, 12502500)
        ]
        assert pg_scram.query(restored, "SELECT name FROM named ORDER BY name") == [
            ("Grace",),
            ("Tab\there",),
        ]
    finally:
        pg_scram.drop_database(restored)


def test_dump_verify_restore_round_trip(
    pg_scram: PgCluster, filled_db: PgDatabase, settings: GlobalSettings, stem: Path
) -> None:
    project = make_project(filled_db)

    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    assert artifact.path == stem.with_name(stem.name + ".dump")
    assert artifact.format == "postgres-custom"
    assert artifact.size_bytes == artifact.path.stat().st_size > 0
    assert mode(artifact.path) == 0o600
    listed = subprocess.run(
        [pg_scram.tool("pg_restore"), "--list", str(artifact.path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "TABLE DATA public people" in listed.stdout

    result = plugin.backupctl_verify(project=project, settings=settings, artifact=artifact)
    assert result.ok, result.detail
    assert result.detail.endswith(" entries")
    assert int(result.detail.split()[0]) >= 5  # 2 tables, 2 table data, a view, a constraint

    assert_restores_filled_db(pg_scram, filled_db, artifact.path)


@pytest.mark.parametrize("compressed", [True, False], ids=["compressed", "uncompressed"])
@pytest.mark.parametrize("keep", [0.5, 0.99, -1], ids=["half", "99-percent", "last-byte"])
def test_verify_rejects_a_truncated_dump(
    filled_db: PgDatabase, settings: GlobalSettings, stem: Path, keep: float, compressed: bool
) -> None:
    project = make_project(filled_db)
    project = project if compressed else uncompressed(project)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    data = artifact.path.read_bytes()
    # The table of contents is intact (pg_restore --list passes) but data is lost.
    cut = len(data) - 1 if keep == -1 else int(len(data) * keep)
    artifact.path.write_bytes(data[:cut])

    result = plugin.backupctl_verify(project=project, settings=settings, artifact=artifact)

    assert not result.ok
    assert "pg_restore: error:" in result.detail
    assert "\n" not in result.detail


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "pg_restore: error:"),
        (b"PGDMP", "pg_restore: error:"),
        (b"not a dump at all\n" * 10, "does not appear to be a valid archive"),
    ],
)
def test_verify_rejects_garbage(
    tmp_path: Path, settings: GlobalSettings, content: bytes, expected: str
) -> None:
    path = tmp_path / "bad.dump"
    path.write_bytes(content)
    artifact = DumpArtifact(path=path, size_bytes=len(content), format="postgres-custom")

    result = plugin.backupctl_verify(project=make_project(), settings=settings, artifact=artifact)

    assert not result.ok
    assert expected in result.detail


def test_verify_reports_a_missing_file(tmp_path: Path, settings: GlobalSettings) -> None:
    artifact = DumpArtifact(path=tmp_path / "gone.dump", size_bytes=0, format="postgres-custom")
    result = plugin.backupctl_verify(project=make_project(), settings=settings, artifact=artifact)
    assert not result.ok
    assert "missing" in result.detail


# -- failures ------------------------------------------------------------------


def test_wrong_password_is_permanent_and_never_echoed(
    pg_scram_db: PgDatabase, settings: GlobalSettings, stem: Path
) -> None:
    wrong = "Wr0ng-" + pg_scram_db.password
    project = make_project(pg_scram_db, wrong_password=wrong)

    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    error = caught.value
    assert error.retryable is False
    assert error.connectivity is False
    assert "password authentication failed" in error.message
    assert error.message.startswith("pg_dump: error:")
    assert "\n" not in error.message
    for secret in (wrong, pg_scram_db.password):
        assert secret not in error.message
        assert secret not in str(error)
        assert secret not in repr(error)
    assert list(stem.parent.iterdir()) == []  # no partial dump left behind


def test_missing_database_is_permanent(
    pg_scram_db: PgDatabase, settings: GlobalSettings, stem: Path
) -> None:
    project = make_project(pg_scram_db, name="no_such_db")
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    assert caught.value.retryable is False
    assert 'database "no_such_db" does not exist' in caught.value.message


def test_unreachable_server_is_a_retryable_connectivity_error(
    pg_scram_db: PgDatabase, settings: GlobalSettings, stem: Path
) -> None:
    project = make_project(pg_scram_db, port=free_port())

    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    assert caught.value.connectivity is True
    assert caught.value.retryable is True
    assert caught.value.exit_code == 4
    assert "Connection refused" in caught.value.message
    assert list(stem.parent.iterdir()) == []


def test_missing_pg_dump_is_a_clear_permanent_error(
    tmp_path: Path,
    pg_scram_db: PgDatabase,
    settings: GlobalSettings,
    stem: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(
            project=make_project(pg_scram_db), settings=settings, target_stem=stem
        )
    assert caught.value.retryable is False
    assert "pg_dump not found" in caught.value.message
    assert list(stem.parent.iterdir()) == []


# -- the password never reaches argv -------------------------------------------

STAND_IN = """\
#!{python}
# A stand-in pg_dump: records its argv, environment and the mode of --file, then
# writes a fake dump (or fails like pg_dump, echoing the password, if asked to).
import json, os, stat, sys
target = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--file="))
with open({record!r}, "w") as f:
    json.dump({{"argv": sys.argv, "env": dict(os.environ),
               "mode": stat.S_IMODE(os.stat(target).st_mode)}}, f)
if os.path.exists(os.path.join(os.path.dirname({record!r}), "stand-in-hang")):
    open(target, "wb").write(b"PGDMP half a dump")
    import time
    time.sleep(60)
if os.path.exists(os.path.join(os.path.dirname({record!r}), "stand-in-fail")):
    sys.stderr.write("pg_dump: error: echoing " + os.environ["PGPASSWORD"] + "\\n")
    sys.exit(1)
with open(target, "wb") as f:
    f.write(b"PGDMP stand-in")
"""


@pytest.fixture
def stand_in_pg_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a recording ``pg_dump`` first on PATH; returns the record file."""
    bindir = tmp_path / "stand-in-bin"
    bindir.mkdir()
    record = tmp_path / "record.json"
    script = bindir / "pg_dump"
    script.write_text(STAND_IN.format(python=sys.executable, record=str(record)))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return record


def test_password_goes_through_the_environment_not_argv(
    stand_in_pg_dump: Path, settings: GlobalSettings, stem: Path
) -> None:
    password = "s3cret-only-in-env"
    project = make_project(
        host="db.example", port=6543, name="shop", user="backup", password=Secret(password)
    )

    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    record = json.loads(stand_in_pg_dump.read_text())
    assert not any(password in arg for arg in record["argv"])
    assert record["argv"][1:] == [
        "--format=custom",
        f"--file={artifact.path}",
        "--host=db.example",
        "--port=6543",
        "--username=backup",
        "--dbname=shop",
        "--no-password",
    ]
    assert record["env"]["PGPASSWORD"] == password
    assert record["env"]["PGCONNECT_TIMEOUT"] == "10"
    assert record["mode"] == 0o600  # private before pg_dump wrote a byte
    assert "PGPASSWORD" not in os.environ or os.environ["PGPASSWORD"] != password
    assert artifact.size_bytes == len(b"PGDMP stand-in")
    assert mode(artifact.path) == 0o600


def test_a_password_echoed_on_stderr_is_masked(
    stand_in_pg_dump: Path,
    settings: GlobalSettings,
    stem: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (stand_in_pg_dump.parent / "stand-in-fail").write_text("1")  # not an env var: tools get none
    project = make_project(host="h", name="d", user="u", password=Secret("hunter2-xyz"))

    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    assert caught.value.message == "pg_dump: error: echoing ********"
    assert list(stem.parent.iterdir()) == []


# -- check ---------------------------------------------------------------------


def test_check_passes_with_the_right_password(
    pg_scram_db: PgDatabase, settings: GlobalSettings
) -> None:
    [tools, result] = plugin.backupctl_check(project=make_project(pg_scram_db), settings=settings)
    assert tools.name == "tools" and tools.status == "pass", tools.detail
    assert (result.name, result.status) == ("database", "pass")
    assert pg_scram_db.password not in result.detail


def test_check_fails_with_a_wrong_password(
    pg_scram_db: PgDatabase, settings: GlobalSettings
) -> None:
    project = make_project(pg_scram_db, wrong_password="definitely-wrong")
    [tools, result] = plugin.backupctl_check(project=project, settings=settings)
    assert tools.name == "tools" and tools.status == "pass", tools.detail
    # a refused login fails the run with exit 1, so the dry run too (not 4: reachable)
    assert (result.name, result.status) == ("database login", "fail")
    assert "password authentication failed" in result.detail
    assert "definitely-wrong" not in result.detail


def test_check_fails_when_nothing_listens(
    pg_scram_db: PgDatabase, settings: GlobalSettings
) -> None:
    project = make_project(pg_scram_db, port=free_port())
    [tools, result] = plugin.backupctl_check(project=project, settings=settings)
    assert tools.name == "tools" and tools.status == "pass", tools.detail
    assert result.status == "fail"
    assert "Connection refused" in result.detail


# -- decompress and the restore guide --------------------------------------------


SNAPSHOT = "1a2b3c4d5e6f7a8b"  # the snapshot a guide's dump came from


def run_guide(guide: list[str], password: str) -> None:
    """Run the guide's commands as printed, the password in PGPASSWORD (not at a prompt)."""
    for command in guide:
        if command.startswith("#"):
            continue
        subprocess.run(
            ["bash", "-c", command],
            env={**os.environ, "PGPASSWORD": password},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=True,
        )


@pytest.fixture
def restored_name(pg_scram: PgCluster, filled_db: PgDatabase) -> Iterator[str]:
    """The guide's new database; its user may create databases (a backup user often may not)."""
    pg_scram.execute("postgres", f'ALTER ROLE "{filled_db.user}" CREATEDB')
    name = f"{filled_db.name}_restored_{SNAPSHOT[:8]}"
    try:
        yield name
    finally:
        pg_scram.drop_database(name)


def test_guide_commands_import_the_dump_into_a_fresh_database(
    pg_scram: PgCluster,
    filled_db: PgDatabase,
    restored_name: str,
    settings: GlobalSettings,
    stem: Path,
) -> None:
    project = make_project(filled_db)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    guide = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=artifact.path, snapshot_id=SNAPSHOT
    )

    login = f"--host=127.0.0.1 --port={filled_db.port} --username={filled_db.user}"
    assert guide[1:3] == [
        f"createdb {login} {restored_name}",
        f"pg_restore {login} --dbname={restored_name} --no-owner --exit-on-error {artifact.path}",
    ]
    assert guide[3].startswith("# No manifest beside the dump: the new database gets")
    assert all(filled_db.password not in line for line in guide)
    run_guide(guide, filled_db.password)
    assert pg_scram.query(restored_name, "SELECT * FROM people ORDER BY id") == ROWS
    assert pg_scram.query(restored_name, "SELECT count(*), sum(n) FROM numbers") == [
        (5000, 12502500)
    ]


def test_decompressed_sql_imports_with_the_guides_psql(
    pg_scram: PgCluster,
    filled_db: PgDatabase,
    restored_name: str,
    settings: GlobalSettings,
    stem: Path,
) -> None:
    project = make_project(filled_db)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    plain = plugin.backupctl_decompress(project=project, settings=settings, path=artifact.path)

    assert plain == stem.with_name(stem.name + ".sql")
    assert mode(plain) == 0o600
    assert artifact.path.is_file()  # the dump stays
    sql = plain.read_text()
    assert "CREATE TABLE public.people" in sql
    assert "OWNER TO" not in sql  # --no-owner: imports as any user
    guide = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=plain, snapshot_id=SNAPSHOT
    )
    assert guide[2] == (
        f"psql --host=127.0.0.1 --port={filled_db.port} --username={filled_db.user} "
        f"--dbname={restored_name} --set=ON_ERROR_STOP=1 --quiet --file={plain}"
    )
    run_guide(guide, filled_db.password)
    assert pg_scram.query(restored_name, "SELECT * FROM people ORDER BY id") == ROWS
    assert pg_scram.query(restored_name, "SELECT name FROM named ORDER BY name") == [
        ("Grace",),
        ("Tab\there",),
    ]


def test_decompress_ignores_other_files_and_leaves_nothing_half_written(
    tmp_path: Path, filled_db: PgDatabase, settings: GlobalSettings, stem: Path
) -> None:
    project = make_project(filled_db)
    other = tmp_path / "x.sql.gz"
    assert plugin.backupctl_decompress(project=project, settings=settings, path=other) is None

    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    data = artifact.path.read_bytes()
    artifact.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_decompress(project=project, settings=settings, path=artifact.path)
    assert caught.value.message.startswith("pg_restore: error:")
    assert not artifact.path.with_suffix(".sql").exists()


def test_guide_quotes_for_the_shell(settings: GlobalSettings) -> None:
    project = make_project(host="db.internal", port=None, name="shop", user="o'brien")
    guide = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=Path("/restore/my dumps/shop.dump"),
        snapshot_id=SNAPSHOT,
    )  # fmt: skip
    login = "--host=db.internal --port=5432 '--username=o'\"'\"'brien'"
    assert guide[1:3] == [
        f"createdb {login} shop_restored_1a2b3c4d",
        f"pg_restore {login} --dbname=shop_restored_1a2b3c4d --no-owner --exit-on-error "
        "'/restore/my dumps/shop.dump'",
    ]
    other = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=Path("/r/shop.sql.gz"), snapshot_id=SNAPSHOT
    )
    assert other == []


# -- compression.enabled: false ------------------------------------------------


def uncompressed(project: ProjectSettings) -> ProjectSettings:
    """``project`` with ``compression.enabled: false``."""
    return attrs.evolve(project, compression=CompressionSettings(enabled=False))


def archive_compression(pg_scram: PgCluster, dump: Path) -> str:
    """The ``Compression:`` value of ``pg_restore --list``'s header: "0" in PostgreSQL
    15 and older, "none" from 16 on (and "-1"/"gzip" for pg_dump's default)."""
    listed = subprocess.run(
        [pg_scram.tool("pg_restore"), "--list", str(dump)],
        capture_output=True,
        text=True,
        check=True,
    )
    [line] = [line for line in listed.stdout.splitlines() if "Compression:" in line]
    return line.split("Compression:", 1)[1].strip()


def test_compression_disabled_passes_compress_0_to_pg_dump(
    stand_in_pg_dump: Path, settings: GlobalSettings, stem: Path
) -> None:
    project = make_project(host="h", name="shop", user="backup", password=Secret("pw"))

    artifact = plugin.backupctl_dump(
        project=uncompressed(project), settings=settings, target_stem=stem
    )

    argv = json.loads(stand_in_pg_dump.read_text())["argv"]
    assert argv[1:4] == ["--format=custom", "--compress=0", f"--file={artifact.path}"]
    assert artifact.path == stem.with_name(stem.name + ".dump")


def test_uncompressed_dump_verify_restore_round_trip(
    pg_scram: PgCluster, filled_db: PgDatabase, settings: GlobalSettings, stem: Path
) -> None:
    project = uncompressed(make_project(filled_db))

    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    assert artifact.path == stem.with_name(stem.name + ".dump")
    assert artifact.format == "postgres-custom"
    assert artifact.size_bytes == artifact.path.stat().st_size > 0
    assert mode(artifact.path) == 0o600
    assert archive_compression(pg_scram, artifact.path) in ("0", "none")
    assert "née Murray".encode() in artifact.path.read_bytes()  # the rows, as text
    default = plugin.backupctl_dump(
        project=make_project(filled_db), settings=settings, target_stem=stem.with_name("default")
    )
    assert archive_compression(pg_scram, default.path) not in ("0", "none")
    assert "née Murray".encode() not in default.path.read_bytes()

    result = plugin.backupctl_verify(project=project, settings=settings, artifact=artifact)
    assert result.ok, result.detail
    assert int(result.detail.split()[0]) >= 5

    assert_restores_filled_db(pg_scram, filled_db, artifact.path)


def test_guide_imports_an_uncompressed_dump(
    pg_scram: PgCluster,
    filled_db: PgDatabase,
    restored_name: str,
    settings: GlobalSettings,
    stem: Path,
) -> None:
    project = uncompressed(make_project(filled_db))
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    guide = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=artifact.path, snapshot_id=SNAPSHOT
    )

    assert guide[2].startswith("pg_restore ")
    run_guide(guide, filled_db.password)
    assert pg_scram.query(restored_name, "SELECT * FROM people ORDER BY id") == ROWS
    assert pg_scram.query(restored_name, "SELECT count(*), sum(n) FROM numbers") == [
        (5000, 12502500)
    ]


def test_check_fails_naming_a_missing_pg_dump_before_any_login(
    pg_scram_db: PgDatabase, settings: GlobalSettings, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """psql answered, so the dry run said ready; the run then failed without pg_dump."""
    import shutil

    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("psql", "pg_restore"):
        (bindir / tool).symlink_to(shutil.which(tool) or tool)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin/no-pg-dump-here")
    [tools] = plugin.backupctl_check(project=make_project(pg_scram_db), settings=settings)
    assert (tools.name, tools.status) == ("tools", "fail")
    assert tools.detail == "not on PATH: pg_dump (install postgresql-client)"


def test_pg_tools_get_their_password_and_libpq_settings_but_no_other_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTHER_DB_PASSWORD", "sentinel-other-5151")
    monkeypatch.setenv("PGPASSWORD", "sentinel-inherited-8080")  # not this project's
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    db = DatabaseSettings(type="postgres", host="h", name="d", user="u", password=Secret("own-pw"))
    env = plugin._environment(db)
    assert env["PGPASSWORD"] == "own-pw" and env["PGSSLMODE"] == "verify-full"
    assert "sentinel" not in repr(env)
    no_password = plugin._environment(DatabaseSettings(type="postgres", host="h", name="d"))
    assert "PGPASSWORD" not in no_password


def test_dump_timeout_minutes_kills_the_dump_removes_it_and_is_not_retried(
    stand_in_pg_dump: Path, settings: GlobalSettings, stem: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The original tool's key: it used to be refused (exit 3 for every command)."""
    (stand_in_pg_dump.parent / "stand-in-hang").write_text("1")  # writes, then hangs
    monkeypatch.setattr(plugin, "SECONDS_PER_MINUTE", 0.5)  # 1 "minute" = 0.5 s here
    db = DatabaseSettings(type="postgres", host="h", name="d", user="u", dump_timeout_minutes=1)
    project = ProjectSettings(name="p", restic=ResticSettings(repository_path="/x"), database=db)
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    assert caught.value.message == ("pg_dump timed out after 1 min (database.dump_timeout_minutes)")
    assert caught.value.retryable is False
    assert list(stem.parent.iterdir()) == []  # the partial dump is gone


# -- restore drills: the manifest counts rows in the dump itself ------------------------


def test_count_copy_rows_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from backupctl_postgres import drill

    sql = (
        b"SET x = 1;\n"
        b"COPY public.people (id, name) FROM stdin;\n1\tAda\n2\tline\\nbreak \\\\.\n3\t\\.x\n\\.\n"
        b"\n"
        b'COPY shop."Gift Cards" (code) FROM stdin;\n\\.\n'
        b"COPY public.numbers (n) FROM stdin;\n" + b"".join(b"%d\n" % i for i in range(500))
        + b"\\.\n"
        b"SELECT 1;\n"
    )  # fmt: skip
    expected = {"public.people": 3, 'shop."Gift Cards"': 0, "public.numbers": 500}
    for chunk in (1, 2, 3, 7, 64, 1 << 20):  # every cut: in a marker, a name, a row
        monkeypatch.setattr(drill, "CHUNK", chunk)
        assert drill.count_copy_rows(io.BytesIO(sql)) == expected, chunk
    with pytest.raises(PluginError, match=r"ends inside the data of table public\.t"):
        drill.count_copy_rows(io.BytesIO(b"COPY public.t (a) FROM stdin;\n1\n2\n"))


def test_manifest_counts_every_table_of_a_real_dump(
    filled_db: PgDatabase, settings: GlobalSettings, stem: Path
) -> None:
    project = make_project(filled_db)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    manifest = plugin.backupctl_manifest(project=project, settings=settings, artifact=artifact)
    assert manifest is not None
    assert dict(manifest.tables) == {"public.people": 3, "public.numbers": 5000}
    assert manifest.engine == "postgres" and manifest.database == filled_db.name
    assert manifest.engine_version.startswith("1") and manifest.tool_version.startswith("1")
    assert manifest.dump_bytes == artifact.size_bytes
    other = DumpArtifact(path=artifact.path, size_bytes=1, format="mysql-sql-gzip")
    assert plugin.backupctl_manifest(project=project, settings=settings, artifact=other) is None


def test_settings_that_cannot_be_read_are_left_out_with_one_warning(
    filled_db: PgDatabase, settings: GlobalSettings, stem: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Read beside pg_dump; said once, when the manifest is made, without the password."""
    project = make_project(filled_db)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    from backupctl_postgres import drill

    drill.forget_during_dump(Path(artifact.path))  # read again, with a password that fails
    db = attrs.evolve(project.database, password=Secret("wrong-pw-4242"))
    caplog.clear()
    manifest = drill.dump_manifest(Path(artifact.path), db)
    assert dict(manifest.tables) == {"public.people": 3, "public.numbers": 5000}
    assert dict(manifest.database_options) == {"roles": [filled_db.user]}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"database settings of {filled_db.name} not recorded: connection"
    )
    assert "wrong-pw-4242" not in caplog.text


def test_row_counts_are_the_servers_in_the_snapshot_pg_dump_dumped(
    pg_scram: PgCluster, filled_db: PgDatabase, tmp_path: Path
) -> None:
    """Rows committed after the snapshot was exported are neither dumped nor counted."""
    from backupctl_postgres import drill, snapshot

    db = make_project(filled_db).database
    assert db is not None
    session = snapshot.SnapshotSession.open(
        ["psql", *plugin._connection_args(db)], plugin._environment(db)
    )
    assert session is not None
    with pg_scram.connect(filled_db.name, filled_db.user, filled_db.password) as conn:
        conn.execute("INSERT INTO numbers SELECT g FROM generate_series(1, 700) g")
    dump = tmp_path / "snap.dump"
    argv = ["pg_dump", "--format=custom", f"--file={dump}", *plugin._connection_args(db)]
    plugin._dump([*argv, f"--snapshot={session.snapshot}"], db)
    session.close()
    listing = drill._listing("pg_restore", dump)
    readings = session.readings.result(timeout=30)
    counted = snapshot.table_counts(listing, readings.counts)
    assert counted == {"public.people": 3, "public.numbers": 5000}
    assert readings.options == drill.database_options(db)  # what psycopg reads
    assert drill._count_dump_rows("pg_restore", dump) == counted
    assert session.proc.wait(timeout=10) == 0  # the transaction ended, psql reaped


def test_server_counts_match_the_dump_for_odd_names_inheritance_and_partitions(
    pg_scram: PgCluster, filled_db: PgDatabase, settings: GlobalSettings, stem: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """pg_dump copies each child table alone (counted FROM ONLY), each partition, not
    the partitioned parent; quoted names as the drill quotes them."""
    from backupctl_postgres import drill

    with pg_scram.connect(filled_db.name, filled_db.user, filled_db.password) as conn:
        conn.execute('CREATE SCHEMA "Odd|schema"')
        conn.execute('CREATE TABLE "Odd|schema"."we ird" AS SELECT generate_series(1, 4) AS a')
        conn.execute("CREATE TABLE parent (n int)")
        conn.execute("CREATE TABLE child (extra int) INHERITS (parent)")
        conn.execute("INSERT INTO parent VALUES (1), (2)")
        conn.execute("INSERT INTO child VALUES (3, 3)")
        conn.execute("CREATE TABLE events (day int) PARTITION BY RANGE (day)")
        conn.execute("CREATE TABLE events_a PARTITION OF events FOR VALUES FROM (0) TO (10)")
        conn.execute("CREATE TABLE events_b PARTITION OF events FOR VALUES FROM (10) TO (20)")
        conn.execute("INSERT INTO events SELECT g FROM generate_series(0, 14) g")
        conn.execute("CREATE UNLOGGED TABLE scratch AS SELECT 1 AS x")
    project = make_project(filled_db)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    from_dump = drill._count_dump_rows("pg_restore", Path(artifact.path))

    def no_second_read(pg_restore: str, dump: Path) -> dict[str, int]:
        raise AssertionError("the manifest read the dump again instead of the server's counts")

    monkeypatch.setattr(drill, "_count_dump_rows", no_second_read)
    manifest = plugin.backupctl_manifest(project=project, settings=settings, artifact=artifact)
    assert manifest is not None
    assert dict(manifest.tables) == from_dump
    assert from_dump == {
        "public.people": 3, "public.numbers": 5000, '"Odd|schema"."we ird"': 4,
        "public.parent": 2, "public.child": 1, "public.events_a": 10, "public.events_b": 5,
        "public.scratch": 1,
    }  # fmt: skip


def test_without_a_snapshot_session_the_manifest_counts_the_dump(
    filled_db: PgDatabase, settings: GlobalSettings, stem: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """No psql to hold the snapshot: pg_dump takes its own, the dump is counted."""
    from backupctl_postgres import snapshot

    db = make_project(filled_db).database
    assert db is not None
    nowhere = {**plugin._environment(db), "PATH": str(tmp_path)}
    assert snapshot.SnapshotSession.open(["psql", *plugin._connection_args(db)], nowhere) is None
    real_open = snapshot.SnapshotSession.open
    monkeypatch.setattr(
        snapshot.SnapshotSession, "open", lambda argv, env: real_open(argv, nowhere)
    )
    project = make_project(filled_db)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    manifest = plugin.backupctl_manifest(project=project, settings=settings, artifact=artifact)
    assert manifest is not None
    assert dict(manifest.tables) == {"public.people": 3, "public.numbers": 5000}


def test_server_counts_are_used_only_when_they_cover_every_table_copied() -> None:
    from backupctl_postgres import snapshot

    listing = (
        ";\n; Archive created at ...\n"
        "214; 1259 16388 TABLE public we ird alice\n"
        "3342; 0 16388 TABLE DATA public we ird alice\n"
        "3343; 0 16391 TABLE DATA public b alice\n"
    )
    both = {"public we ird alice": ('public."we ird"', 2), "public b alice": ("public.b", 0)}
    assert snapshot.table_counts(listing, both) == {'public."we ird"': 2, "public.b": 0}
    assert snapshot.table_counts(listing, {"public b alice": ("public.b", 0)}) is None
    assert snapshot.table_counts(listing, None) is None


def test_output_a_session_cannot_read_costs_only_the_speed() -> None:
    """Anything but the expected lines: no snapshot shared, nothing trusted, psql reaped."""
    from backupctl_postgres import snapshot

    for output in (b"not-a-snapshot\n", b"0000-1 150000\nsurprise\n", b"0000-1 150000\n"):
        proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdin is not None
        proc.stdin.write(output)
        proc.stdin.close()
        from concurrent.futures import Future

        exported: Future[str] = Future()
        assert snapshot._read(proc, exported) == snapshot.Readings(None, None)
        assert proc.returncode == 0 and exported.done()
        assert (exported.exception() is None) is output.startswith(b"0000-1 ")


def test_a_count_still_running_after_the_grace_is_left_for_the_dumps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from concurrent.futures import Future

    from backupctl_postgres import drill, snapshot

    monkeypatch.setattr(drill, "READINGS_GRACE_SECONDS", 0.01)
    assert drill._session_readings(Future()) == snapshot.Readings(None, None)
    failed: Future[Any] = Future()
    failed.set_exception(ValueError("garbled"))
    assert drill._session_readings(failed) == snapshot.Readings(None, None)
    done: Future[Any] = Future()
    done.set_result(snapshot.Readings({"encoding": "UTF8"}, {"public t alice": ("public.t", 1)}))
    assert drill._session_readings(done).counts == {"public t alice": ("public.t", 1)}


def test_guide_recreates_the_databases_comment_settings_and_locale(
    pg_scram: PgCluster,
    filled_db: PgDatabase,
    restored_name: str,
    settings: GlobalSettings,
    stem: Path,
) -> None:
    """What pg_dump keeps only with --create comes from the manifest beside the dump."""
    from backupctl_core.domain.drill import manifest_path

    with pg_scram.connect(filled_db.name, filled_db.user, filled_db.password) as conn:
        name = '"' + filled_db.name + '"'
        conn.execute(f"COMMENT ON DATABASE {name} IS 'Shop — it''s \\ data'")
        conn.execute(f'ALTER DATABASE {name} SET search_path TO "$user", public, shop')
        conn.execute(f"ALTER DATABASE {name} SET work_mem TO '8MB'")
    superuser = pg_scram.superuser
    pg_scram.execute(
        "postgres", f'ALTER ROLE "{superuser}" IN DATABASE {name} SET work_mem = 16384'
    )
    project = make_project(filled_db)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    manifest = plugin.backupctl_manifest(project=project, settings=settings, artifact=artifact)
    assert manifest is not None
    manifest_path(artifact.path).write_text(manifest.to_json())
    options = manifest.database_options
    assert options["comment"] == "Shop — it's \\ data"
    assert options["roles"] == [filled_db.user]

    guide = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=artifact.path, snapshot_id=SNAPSHOT
    )

    assert "--template=template0" in guide[1] and f"--encoding={options['encoding']}" in guide[1]
    assert guide[3].startswith("psql ") and "COMMENT ON DATABASE" in guide[3]
    assert guide[4].startswith(f'# As a superuser, if wanted: ALTER ROLE "{superuser}" IN DATABASE')
    run_guide(guide, filled_db.password)
    original = pg_scram.query(
        "postgres",
        "SELECT pg_encoding_to_char(encoding), datcollate, datctype,"
        " shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        (filled_db.name,),
    )
    copy = pg_scram.query(
        "postgres",
        "SELECT pg_encoding_to_char(encoding), datcollate, datctype,"
        " shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        (restored_name,),
    )
    assert copy == original
    settings_sql = (
        "SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase"
        " WHERE d.datname = %s AND s.setrole = 0"
    )
    assert pg_scram.query("postgres", settings_sql, (restored_name,)) == pg_scram.query(
        "postgres", settings_sql, (filled_db.name,)
    )
    with pg_scram.connect(restored_name, filled_db.user, filled_db.password) as conn:
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public, shop',)


# -- which pg_dump: as new as the server -------------------------------------------

CLIENT_STAND_IN = """\
#!{python}
# A stand-in PostgreSQL {version} client tool. --version as the real ones print it;
# psql prints the server's version (SHOW server_version); pg_dump notes its path,
# refuses a newer server as pg_dump does, else writes a fake dump.
import os, sys
version, name = {version!r}, os.path.basename(sys.argv[0])
if "--version" in sys.argv:
    print(name + " (PostgreSQL) " + version + " (stand-in)")
    sys.exit(0)
server = open({server!r}).read().strip()
if name == "psql":
    print(server)
    sys.exit(0)
with open({used!r}, "a") as f:
    f.write(sys.argv[0] + "\\n")
if int(server.split(".")[0]) > int(version.split(".")[0]):
    sys.stderr.write("pg_dump: error: aborting because of server version mismatch\\n")
    sys.stderr.write("pg_dump: detail: server version: " + server + "; pg_dump version: "
                     + version + "\\n")
    sys.exit(1)
target = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--file="))
with open(target, "wb") as f:
    f.write(b"PGDMP by " + version.encode())
"""


@attrs.define
class Clients:
    """Stand-in client tools: one version on PATH, majors "installed" side by side in
    ``lib/postgresql/N/bin`` (pg_clients.VERSIONED_BIN_GLOB), and a server version."""

    root: Path
    server_file: Path
    used_file: Path

    def write(self, bindir: Path, version: str) -> Path:
        bindir.mkdir(parents=True, exist_ok=True)
        for tool in ("pg_dump", "pg_restore", "psql"):
            script = bindir / tool
            script.write_text(
                CLIENT_STAND_IN.format(
                    python=sys.executable,
                    version=version,
                    server=str(self.server_file),
                    used=str(self.used_file),
                )
            )
            script.chmod(0o755)
        return bindir / "pg_dump"

    def install(self, version: str) -> Path:
        """A major's tools in lib/postgresql/MAJOR/bin; its pg_dump."""
        return self.write(self.root / "lib/postgresql" / version.split(".")[0] / "bin", version)

    def server(self, version: str) -> None:
        self.server_file.write_text(version)

    def used(self) -> list[str]:
        return self.used_file.read_text().split() if self.used_file.exists() else []


@pytest.fixture
def clients(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Clients:
    """PATH's client tools are version 15.8; none installed side by side yet."""
    found = Clients(tmp_path / "clients", tmp_path / "server-version", tmp_path / "used")
    on_path = found.write(found.root / "path-bin", "15.8").parent
    monkeypatch.setenv("PATH", f"{on_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(pg_clients, "VERSIONED_BIN_GLOB", str(found.root / "lib/postgresql/*/bin"))
    return found


def stand_in_project(**overrides: Any) -> ProjectSettings:
    return make_project(host="db.example", name="shop", user="backup", **overrides)


def test_dump_uses_paths_pg_dump_when_it_is_new_enough(
    clients: Clients, settings: GlobalSettings, stem: Path
) -> None:
    clients.install("17.2")
    clients.server("15.4")
    artifact = plugin.backupctl_dump(
        project=stand_in_project(), settings=settings, target_stem=stem
    )
    assert artifact.path.read_bytes() == b"PGDMP by 15.8"
    assert clients.used() == [str(clients.root / "path-bin/pg_dump")]


def test_dump_switches_to_the_lowest_installed_pg_dump_as_new_as_the_server(
    clients: Clients, settings: GlobalSettings, stem: Path
) -> None:
    for version in ("15.8", "17.2", "18.1"):
        clients.install(version)
    clients.server("16.4 (Debian 16.4-1.pgdg120+2)")

    artifact = plugin.backupctl_dump(
        project=stand_in_project(), settings=settings, target_stem=stem
    )

    assert artifact.path.read_bytes() == b"PGDMP by 17.2"
    assert artifact.size_bytes == len(b"PGDMP by 17.2")
    assert mode(artifact.path) == 0o600
    assert clients.used() == [
        str(clients.root / "path-bin/pg_dump"),  # refused: server version mismatch
        str(clients.root / "lib/postgresql/17/bin/pg_dump"),
    ]


def test_dump_fails_naming_both_versions_and_the_fix_when_none_is_new_enough(
    clients: Clients, settings: GlobalSettings, stem: Path
) -> None:
    clients.install("14.9")
    clients.install("15.8")
    clients.server("16.4")

    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=stand_in_project(), settings=settings, target_stem=stem)

    assert caught.value.retryable is False
    assert caught.value.message == (
        "pg_dump 15.8 is older than the PostgreSQL 16.4 server at db.example:5432, and no "
        "pg_dump 16 or newer is installed (PATH, /usr/lib/postgresql/*/bin): install "
        "postgresql-client-16 (apt.postgresql.org) or set database.pg_dump_path to such a "
        "pg_dump"
    )
    assert list(stem.parent.iterdir()) == []


def test_pg_dump_path_is_used_as_given_and_never_replaced(
    clients: Clients, settings: GlobalSettings, stem: Path
) -> None:
    old = clients.install("15.8")
    new = clients.install("17.2")
    clients.server("16.4")

    artifact = plugin.backupctl_dump(
        project=stand_in_project(pg_dump_path=str(new)), settings=settings, target_stem=stem
    )
    assert artifact.path.read_bytes() == b"PGDMP by 17.2"
    assert clients.used() == [str(new)]  # not PATH's 15.8 first

    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(
            project=stand_in_project(pg_dump_path=str(old)), settings=settings, target_stem=stem
        )
    assert caught.value.message.startswith(
        f"database.pg_dump_path {old} is pg_dump 15.8, older than the PostgreSQL 16.4 server"
    )
    assert "point it at a pg_dump 16 or newer" in caught.value.message
    assert clients.used() == [str(new), str(old)]  # not 17.2 behind the operator's back


def test_dry_run_check_names_the_pg_dump_it_will_switch_to(
    clients: Clients, settings: GlobalSettings
) -> None:
    clients.install("17.2")
    clients.server("16.4")

    [tools, login, version] = plugin.backupctl_check(project=stand_in_project(), settings=settings)

    assert tools.status == "pass" and "pg_dump (PostgreSQL) 15.8" in tools.detail
    assert (login.name, login.status) == ("database", "pass")
    assert login.detail.endswith("login ok, server 16.4")
    assert (version.name, version.status) == ("pg_dump version", "pass")
    assert version.detail == (
        f"{clients.root}/lib/postgresql/17/bin/pg_dump for server 16.4 "
        "(pg_dump on PATH is 15.8, too old)"
    )


def test_dry_run_fails_naming_both_versions_and_the_fix(
    clients: Clients, settings: GlobalSettings
) -> None:
    from backupctl_core.runtime.checks import exit_code

    clients.install("15.8")
    clients.server("16.4")

    results = plugin.backupctl_check(project=stand_in_project(), settings=settings)

    [tools, login, version] = results
    assert (tools.status, login.status) == ("pass", "pass")
    assert (version.name, version.status) == ("pg_dump version", "fail")
    assert "pg_dump 15.8 is older than the PostgreSQL 16.4 server" in version.detail
    assert "install postgresql-client-16" in version.detail
    assert exit_code(results) == 1  # as the run, whose dump fails permanently

    pinned = plugin.backupctl_check(
        project=stand_in_project(pg_dump_path=str(clients.install("14.9"))), settings=settings
    )
    assert pinned[0].status == "pass" and "pg_dump (PostgreSQL) 14.9" in pinned[0].detail
    assert pinned[2].status == "fail"
    assert pinned[2].detail.startswith("database.pg_dump_path ")


def test_dry_run_check_is_two_lines_when_paths_pg_dump_fits(
    clients: Clients, settings: GlobalSettings
) -> None:
    clients.server("15.2")
    [tools, login] = plugin.backupctl_check(project=stand_in_project(), settings=settings)
    assert (tools.status, login.status) == ("pass", "pass")


def test_pg_restore_is_the_newest_installed_or_the_one_beside_pg_dump_path(
    clients: Clients,
) -> None:
    db = DatabaseSettings(type="postgres")
    assert pg_clients.pg_restore_tool(db) == "pg_restore"  # nothing newer than PATH's 15.8
    clients.install("14.9")
    assert pg_clients.pg_restore_tool(db) == "pg_restore"
    clients.install("17.2")
    clients.install("16.1")
    newest = str(clients.root / "lib/postgresql/17/bin/pg_restore")
    assert pg_clients.pg_restore_tool(db) == newest
    pinned = attrs.evolve(db, pg_dump_path=str(clients.root / "lib/postgresql/16/bin/pg_dump"))
    assert pg_clients.pg_restore_tool(pinned) == str(
        clients.root / "lib/postgresql/16/bin/pg_restore"
    )


def test_validate_config_refuses_a_pg_dump_path_that_does_not_run(
    tmp_path: Path, settings: GlobalSettings
) -> None:
    project = make_project(host="h", name="d", user="u", pg_dump_path=str(tmp_path / "nope"))
    assert plugin.backupctl_validate_config(project=project, settings=settings) == [
        f"database.pg_dump_path: {tmp_path / 'nope'} is not an executable file"
    ]


def test_include_roles_brings_owners_and_grants_back_on_a_server_without_them(
    pg_scram: PgCluster, filled_db: PgDatabase, settings: GlobalSettings, stem: Path
) -> None:
    """database.include_roles: the manifest keeps the roles that own or are granted
    objects; on a server without them the guide creates them (nothing else), and the
    table's owner and grants come back identical."""
    import secrets as random

    from backupctl_core.domain.drill import manifest_path

    owner, reader = f"owner_{random.token_hex(3)}", f"Reader {random.token_hex(3)}"
    for role in (owner, reader):
        pg_scram.execute("postgres", f'CREATE ROLE "{role}" NOLOGIN')
    pg_scram.execute(
        filled_db.name,
        f"CREATE TABLE ledger (n int); INSERT INTO ledger VALUES (1), (2);"
        f'ALTER TABLE ledger OWNER TO "{owner}"; GRANT SELECT ON ledger TO "{reader}";'
        f'GRANT SELECT ON ledger TO "{filled_db.user}"',
    )
    acl = "SELECT relowner::regrole::text, relacl::text FROM pg_class WHERE relname = 'ledger'"
    before = pg_scram.query(filled_db.name, acl)
    project = make_project(filled_db, include_roles=True)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    manifest = plugin.backupctl_manifest(project=project, settings=settings, artifact=artifact)
    assert manifest is not None
    roles = manifest.database_options["roles_sql"]
    assert roles[owner] == f"CREATE ROLE {owner} WITH NOSUPERUSER INHERIT NOCREATEROLE" \
        " NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS"  # fmt: skip
    assert roles[reader].startswith(f'CREATE ROLE "{reader}" WITH ')
    manifest_path(artifact.path).write_text(manifest.to_json())

    # Another server: the source and its roles are gone; the guide's user is a superuser.
    pg_scram.drop_database(filled_db.name)
    for role in (owner, reader):
        pg_scram.execute("postgres", f'DROP ROLE "{role}"')
    pg_scram.execute("postgres", f'ALTER ROLE "{filled_db.user}" SUPERUSER')
    guide = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=artifact.path, snapshot_id=SNAPSHOT
    )
    assert guide[1].startswith("# The dump's roles first (")
    assert guide[2].startswith("psql ") and "DO $$ BEGIN IF NOT EXISTS" in guide[2]
    assert "--no-owner" not in guide[4]
    restored = f"{filled_db.name}_restored_{SNAPSHOT[:8]}"
    try:
        run_guide(guide, filled_db.password)
        assert pg_scram.query(restored, acl) == before
        assert pg_scram.query(restored, "SELECT n FROM ledger ORDER BY n") == [(1,), (2,)]
        run_guide(guide[2:3], filled_db.password)  # again: existing roles are left alone
    finally:
        pg_scram.drop_database(restored)
        pg_scram.create_database(filled_db.name, owner=filled_db.user)  # for the fixture
        for role in (owner, reader):
            pg_scram.execute("postgres", f'DROP ROLE IF EXISTS "{role}"')


# -- database.jobs: a directory-format dump, N tables at a time -------------------------


def test_jobs_dump_a_private_folder_that_verifies_counts_and_imports_with_the_guide(
    pg_scram: PgCluster, filled_db: PgDatabase, restored_name: str, settings: GlobalSettings,
    stem: Path,
) -> None:  # fmt: skip
    project = make_project(filled_db, jobs=2)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    folder = Path(artifact.path)
    assert folder.name == stem.name + ".dir" and folder.is_dir()
    assert artifact.format == "postgres-directory" and mode(folder) == 0o700
    files = sorted(folder.iterdir())
    assert "toc.dat" in [f.name for f in files] and len(files) == 3  # toc + two tables
    assert all(mode(f) == 0o600 for f in files)
    assert artifact.size_bytes == sum(f.stat().st_size for f in files)
    assert plugin.backupctl_verify(project=project, settings=settings, artifact=artifact).ok
    manifest = plugin.backupctl_manifest(project=project, settings=settings, artifact=artifact)
    assert manifest is not None and manifest.dump_bytes == artifact.size_bytes
    assert dict(manifest.tables) == {"public.people": 3, "public.numbers": 5000}

    guide = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=folder, snapshot_id=SNAPSHOT
    )
    login = f"--host=127.0.0.1 --port={filled_db.port} --username={filled_db.user}"
    assert guide[2] == (
        f"pg_restore {login} --dbname={restored_name} --no-owner --exit-on-error --jobs=2 {folder}"
    )
    run_guide(guide, filled_db.password)
    assert pg_scram.query(restored_name, "SELECT * FROM people ORDER BY id") == ROWS
    assert pg_scram.query(restored_name, "SELECT count(*), sum(n) FROM numbers") == [
        (5000, 12502500)
    ]
    plain = plugin.backupctl_decompress(project=project, settings=settings, path=folder)
    assert plain == folder.with_suffix(".sql") and "COPY public.numbers" in plain.read_text()


def test_verify_fails_a_folder_dump_missing_a_tables_file(
    filled_db: PgDatabase, settings: GlobalSettings, stem: Path
) -> None:
    project = make_project(filled_db, jobs=2)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    data = sorted(p for p in Path(artifact.path).iterdir() if p.name != "toc.dat")
    data[0].unlink()
    result = plugin.backupctl_verify(project=project, settings=settings, artifact=artifact)
    assert not result.ok and "data files missing" in result.detail
    assert data[0].name.split(".")[0] in result.detail


def test_a_failed_folder_dump_leaves_nothing(
    pg_scram: PgCluster, pg_scram_db: PgDatabase, settings: GlobalSettings, stem: Path
) -> None:
    project = make_project(pg_scram_db, wrong_password="not-it", jobs=2)
    with pytest.raises(PluginError):
        plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    assert list(stem.parent.iterdir()) == []


def test_debians_pg_wrapper_is_stepped_over_for_the_majors_own_tools(
    filled_db: PgDatabase, settings: GlobalSettings, stem: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """PATH's pg_dump, pg_restore and psql link to a pg_wrapper (here one that would
    fail the run): the dump, verify, manifest and check run the installed majors'
    binaries instead, pg_dump the server's major."""
    installed = pg_clients.installed("pg_dump")
    if not installed:
        pytest.skip("no /usr/lib/postgresql/N/bin here")  # Debian and Ubuntu have them
    share = tmp_path / "share"
    share.mkdir()
    wrapper = share / "pg_wrapper"
    wrapper.write_text("#!/bin/sh\necho 'pg_wrapper ran' >&2\nexit 99\n")
    wrapper.chmod(0o755)
    bindir = tmp_path / "wrapped-bin"
    bindir.mkdir()
    for tool in ("pg_dump", "pg_restore", "psql"):
        (bindir / tool).symlink_to(wrapper)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    assert pg_clients.is_wrapper("pg_dump") and pg_clients.direct("psql").startswith("/usr/lib/")

    project = make_project(filled_db)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    assert plugin.backupctl_verify(project=project, settings=settings, artifact=artifact).ok
    manifest = plugin.backupctl_manifest(project=project, settings=settings, artifact=artifact)
    assert manifest is not None and dict(manifest.tables)["public.numbers"] == 5000
    checks = plugin.backupctl_check(project=project, settings=settings)
    assert [c.status for c in checks] == ["pass", "pass"], checks
    server_major = pg_clients.major(manifest.engine_version)
    assert pg_clients.pg_dump_tool(project.database, server_major) == str(  # type: ignore[arg-type]
        pg_clients.fitting_pg_dump(server_major)
    )
