"""The SQLite dumper on real SQLite files."""

from __future__ import annotations

import gzip
import sqlite3
import stat
import subprocess
import zlib
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import attrs
import pytest
from backupctl_sqlite import plugin

from backupctl_core import DumpArtifact, PluginError, PluginType
from backupctl_core.domain.settings import (
    CompressionSettings,
    DatabaseSettings,
    GlobalSettings,
    ProjectSettings,
    ResticSettings,
)
from backupctl_core.testing import plugin_manager

ROWS = [(1, "Ada", None), (2, "Grace", "née Murray"), (3, "x" * 5000, b"\x00\xff")]


def make_project(path: Path | str | None) -> ProjectSettings:
    return ProjectSettings(
        name="p",
        restic=ResticSettings(repository_path="/x"),
        database=DatabaseSettings(type="sqlite", name=None if path is None else str(path)),
    )


def read_rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM people ORDER BY id").fetchall()


@pytest.fixture
def settings(tmp_path: Path) -> GlobalSettings:
    return GlobalSettings(backup_base_dir=tmp_path)


@pytest.fixture
def stem(tmp_path: Path) -> Path:
    return tmp_path / "backups" / "p" / "p_backup_20240101_120000_abcd"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "app" / "app.db"
    path.parent.mkdir()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, note)")
    db.executemany("INSERT INTO people VALUES (?, ?, ?)", ROWS)
    db.execute(
        "CREATE TABLE numbers AS WITH RECURSIVE n(i) AS "
        "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) SELECT i FROM n"
    )
    db.commit()
    db.close()
    return path


def test_registered_through_the_backupctl_entry_point_group() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="backupctl")}
    assert found.get("sqlite") == "backupctl_sqlite.plugin"
    plugin_manager(plugin)  # validated: a misspelled hook argument raises here
    assert plugin.backupctl_plugin_types() == [PluginType("database", "sqlite")]


def test_validate_config(settings: GlobalSettings, source: Path) -> None:
    assert plugin.backupctl_validate_config(project=make_project(source), settings=settings) == []
    assert plugin.backupctl_validate_config(project=make_project(None), settings=settings) == [
        "database.name is required (the path of the SQLite file)"
    ]
    other = ProjectSettings(
        name="p", restic=ResticSettings(repository_path="/x"), database=DatabaseSettings("mysql")
    )
    assert plugin.backupctl_validate_config(project=other, settings=settings) == []


def test_dump_verify_and_restore_by_gunzip(
    tmp_path: Path, settings: GlobalSettings, source: Path, stem: Path
) -> None:
    project = make_project(source)

    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    assert artifact.path == stem.with_name(stem.name + ".sqlite.gz")
    assert artifact.format == "sqlite-gzip"
    assert artifact.size_bytes == artifact.path.stat().st_size > 0
    assert stat.S_IMODE(artifact.path.stat().st_mode) == 0o600
    assert sorted(p.name for p in artifact.path.parent.iterdir()) == [artifact.path.name]
    assert sorted(p.name for p in source.parent.iterdir()) == ["app.db"]  # no -wal/-shm left

    result = plugin.backupctl_verify(project=project, settings=settings, artifact=artifact)
    assert result.ok, result.detail
    assert result.detail == "integrity ok, 2 tables"
    assert sorted(p.name for p in artifact.path.parent.iterdir()) == [artifact.path.name]

    restored = tmp_path / "restored.db"
    with gzip.open(artifact.path, "rb") as packed:
        restored.write_bytes(packed.read())
    assert read_rows(restored) == ROWS
    with sqlite3.connect(restored) as db:
        assert db.execute("SELECT count(*), sum(i) FROM numbers").fetchone() == (10000, 50005000)


def test_dump_while_a_writer_holds_an_open_transaction(
    tmp_path: Path, settings: GlobalSettings, source: Path, stem: Path
) -> None:
    writer = sqlite3.connect(source)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO people VALUES (4, 'uncommitted', NULL)")
    try:
        artifact = plugin.backupctl_dump(
            project=make_project(source), settings=settings, target_stem=stem
        )
    finally:
        writer.rollback()
        writer.close()
    restored = tmp_path / "restored.db"
    restored.write_bytes(gzip.decompress(artifact.path.read_bytes()))
    assert read_rows(restored) == ROWS  # the committed state only


def not_gzip(dump: bytes) -> bytes:
    return b"not gzip at all"


def not_a_database(dump: bytes) -> bytes:
    return gzip.compress(b"SQLite format 3\x00" + b"\x01" * 4096)


def damage_pages(dump: bytes) -> bytes:
    raw = gzip.decompress(dump)
    return gzip.compress(raw[:8192] + b"\xaa" * 4096 + raw[12288:])


def cut_in_half(dump: bytes) -> bytes:
    return dump[: len(dump) // 2]


def cut_last_page(dump: bytes) -> bytes:
    return dump[:-4096]


def cut_last_byte(dump: bytes) -> bytes:
    return dump[:-1]  # integrity_check alone passes this: the last page reads as zeros


def plain_damage_pages(dump: bytes) -> bytes:
    return dump[:8192] + b"\xaa" * 4096 + dump[12288:]


CORRUPTIONS = [
    *((True, c) for c in (cut_in_half, not_gzip, not_a_database, damage_pages)),
    *(
        (False, c)
        for c in (cut_in_half, cut_last_page, cut_last_byte, plain_damage_pages, not_gzip)
    ),
]


@pytest.mark.parametrize(
    ("compressed", "corrupt"),
    CORRUPTIONS,
    ids=[f"{'gzip' if z else 'plain'}-{c.__name__}" for z, c in CORRUPTIONS],
)
def test_verify_rejects_a_corrupt_dump(
    settings: GlobalSettings,
    source: Path,
    stem: Path,
    compressed: bool,
    corrupt: Callable[[bytes], bytes],
) -> None:
    project = make_project(source)
    project = project if compressed else uncompressed(project)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    artifact.path.write_bytes(corrupt(artifact.path.read_bytes()))

    result = plugin.backupctl_verify(project=project, settings=settings, artifact=artifact)

    assert not result.ok
    assert result.detail
    assert sorted(p.name for p in artifact.path.parent.iterdir()) == [artifact.path.name]


def test_verify_reports_a_missing_dump(tmp_path: Path, settings: GlobalSettings) -> None:
    artifact = DumpArtifact(path=tmp_path / "gone.sqlite.gz", size_bytes=0, format="sqlite-gzip")
    result = plugin.backupctl_verify(
        project=make_project(None), settings=settings, artifact=artifact
    )
    assert not result.ok
    assert "missing" in result.detail


def test_missing_source_is_a_permanent_error_naming_the_path(
    tmp_path: Path, settings: GlobalSettings, stem: Path
) -> None:
    missing = tmp_path / "nowhere" / "app.db"
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=make_project(missing), settings=settings, target_stem=stem)
    assert caught.value.retryable is False
    assert str(missing) in caught.value.message
    assert not missing.exists()  # not created by trying


def test_a_file_that_is_not_a_database_is_a_permanent_error(
    tmp_path: Path, settings: GlobalSettings, stem: Path
) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"hello, I am not SQLite" * 100)
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=make_project(junk), settings=settings, target_stem=stem)
    assert caught.value.retryable is False
    assert "not a database" in caught.value.message
    assert list(stem.parent.iterdir()) == []


def test_check(tmp_path: Path, settings: GlobalSettings, source: Path) -> None:
    [ok] = plugin.backupctl_check(project=make_project(source), settings=settings)
    assert (ok.name, ok.status) == ("database", "pass")
    [missing] = plugin.backupctl_check(project=make_project(tmp_path / "no.db"), settings=settings)
    assert (missing.name, missing.status) == ("database", "fail")
    assert str(tmp_path / "no.db") in missing.detail


# -- compression.enabled: false: the plain database file ---------------------------


def uncompressed(project: ProjectSettings) -> ProjectSettings:
    return attrs.evolve(project, compression=CompressionSettings(enabled=False))


def blocks_compressed(raw: bytes) -> list[bytes]:
    """What each BLOCK of ``raw`` compresses to on its own (gzip level 6, then a full flush)."""
    segments = []
    for start in range(0, len(raw), plugin.BLOCK):
        deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        block = raw[start : start + plugin.BLOCK]
        segments.append(deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH))
    return segments


def test_gzip_level_6_restarted_every_block_so_unchanged_pages_deduplicate(
    tmp_path: Path, settings: GlobalSettings, stem: Path
) -> None:
    """Like gzip --rsyncable: a one-row change leaves every other block's bytes as they
    were, so restic stores only the changed part (not the whole dump) again."""
    source = tmp_path / "big.db"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        db.executemany("INSERT INTO t VALUES (?, ?)", ((i, f"{i:x}" * 40) for i in range(6000)))
    project = make_project(source)
    first = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    before = first.path.read_bytes()
    first.path.unlink()
    with sqlite3.connect(source) as db:
        db.execute("UPDATE t SET v = 'changed' WHERE id = 3000")
    after = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    packs = []
    for packed in (before, after.path.read_bytes()):
        # gzip header: no file name, no time (the same on every run), level 6's XFL
        assert packed[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
        segments = blocks_compressed(gzip.decompress(packed))
        assert packed[10:-10] == b"".join(segments)  # then the final empty block, CRC, size
        packs.append(segments)
    assert len(packs[0]) == len(packs[1]) > 10
    changed = [i for i, (a, b) in enumerate(zip(*packs, strict=True)) if a != b]
    assert len(changed) == 1  # the block holding the changed row: 1 of 14


def test_uncompressed_dump_verify_and_restore(
    tmp_path: Path, settings: GlobalSettings, source: Path, stem: Path
) -> None:
    project = uncompressed(make_project(source))

    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)

    assert artifact.path == stem.with_name(stem.name + ".sqlite")
    assert artifact.format == "sqlite"
    assert artifact.size_bytes == artifact.path.stat().st_size > 0
    assert stat.S_IMODE(artifact.path.stat().st_mode) == 0o600
    assert artifact.path.read_bytes().startswith(b"SQLite format 3\x00")  # not gzip
    assert sorted(p.name for p in artifact.path.parent.iterdir()) == [artifact.path.name]
    assert sorted(p.name for p in source.parent.iterdir()) == ["app.db"]

    result = plugin.backupctl_verify(project=project, settings=settings, artifact=artifact)
    assert result.ok, result.detail
    assert result.detail == "integrity ok, 2 tables"
    assert sorted(p.name for p in artifact.path.parent.iterdir()) == [artifact.path.name]

    # Nothing to decompress; the guide copies the file instead of gunzipping it.
    assert (
        plugin.backupctl_decompress(project=project, settings=settings, path=artifact.path) is None
    )
    guide = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=artifact.path
    )
    restored = source.with_name("app.db.restored")
    assert guide[0] == f"cp {artifact.path} {restored}"
    for command in guide[:2]:
        done = subprocess.run(command, shell=True, check=True, capture_output=True, text=True)
    assert done.stdout.strip() == "ok"  # the guide's integrity_check
    assert read_rows(restored) == ROWS
    with sqlite3.connect(restored) as db:
        assert db.execute("SELECT count(*), sum(i) FROM numbers").fetchone() == (10000, 50005000)


def test_guide_gunzips_a_compressed_dump(settings: GlobalSettings, source: Path) -> None:
    guide = plugin.backupctl_restore_guide(
        project=make_project(source), settings=settings, dump_file=Path("/r/x.sqlite.gz")
    )
    assert guide[0] == f"gunzip -c /r/x.sqlite.gz > {source}.restored"


def test_verify_rejects_a_compressed_dump_missing_its_last_byte_of_data(
    settings: GlobalSettings, source: Path, stem: Path
) -> None:
    project = make_project(source)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    artifact.path.write_bytes(
        gzip.compress(cut_last_byte(gzip.decompress(artifact.path.read_bytes())))
    )

    result = plugin.backupctl_verify(project=project, settings=settings, artifact=artifact)

    assert not result.ok
    assert "cut short" in result.detail


def test_a_failed_uncompressed_dump_leaves_nothing_behind(
    tmp_path: Path, settings: GlobalSettings, stem: Path
) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"hello, I am not SQLite" * 100)
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(
            project=uncompressed(make_project(junk)), settings=settings, target_stem=stem
        )
    assert "not a database" in caught.value.message
    assert list(stem.parent.iterdir()) == []


def test_the_guide_swaps_in_the_copy_with_the_live_file_s_owner_mode_and_no_stale_wal(
    settings: GlobalSettings, source: Path, stem: Path
) -> None:
    """The guide's swap used to leave a root-owned 0644 file the application could not
    write, and the old file's WAL beside it."""
    import os
    import pwd

    project = make_project(source)
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    # After the backup the application goes on: a row only in the live file's WAL.
    app = sqlite3.connect(source)
    app.execute("PRAGMA wal_autocheckpoint=0")
    app.execute("INSERT INTO people VALUES (4, 'after the backup', NULL)")
    app.commit()
    assert Path(f"{source}-wal").stat().st_size > 0
    nobody = pwd.getpwnam("nobody")
    os.chown(source, nobody.pw_uid, nobody.pw_gid)
    source.chmod(0o640)

    guide = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=artifact.path
    )
    steps = [command for command in guide if not command.startswith("#")]
    for command in steps:
        subprocess.run(command, shell=True, check=True, capture_output=True, text=True)
    restored = source.with_name("app.db.restored")
    assert (restored.stat().st_uid, stat.S_IMODE(restored.stat().st_mode)) == (nobody.pw_uid, 0o640)
    (swap,) = [c for c in guide if c.startswith("# stop the application, then: ")]
    wal = Path(f"{source}-wal")
    left_behind = wal.read_bytes()
    app.close()  # the application stops; as after a crash, its WAL is still there
    wal.write_bytes(left_behind)
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as check:  # it would be replayed
        assert check.execute("SELECT count(*) FROM people").fetchone() == (4,)
    assert wal.exists()
    subprocess.run(swap.split(": ", 1)[1], shell=True, check=True)
    assert not Path(f"{source}-wal").exists() and not restored.exists()
    info = source.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (
        nobody.pw_uid, nobody.pw_gid, 0o640,
    )  # fmt: skip
    assert read_rows(source) == ROWS  # the backup's rows, not the WAL's extra one


# -- restore drills ----------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [True, False])
def test_manifest_and_scratch_copy_agree(
    source: Path, settings: GlobalSettings, stem: Path, tmp_path: Path, compressed: bool
) -> None:
    import attrs

    from backupctl_core.domain.settings import CompressionSettings

    project = attrs.evolve(make_project(source), compression=CompressionSettings(compressed))
    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    manifest = plugin.backupctl_manifest(project=project, settings=settings, artifact=artifact)
    assert manifest is not None
    assert dict(manifest.tables) == {"people": 3, "numbers": 10000}
    assert sorted(p.name for p in stem.parent.iterdir()) == [artifact.path.name]  # no leftovers

    workdir = tmp_path / "drill"
    workdir.mkdir()
    scratch = plugin.backupctl_scratch_database(
        project=project, settings=settings, name="app_drill_1", workdir=workdir
    )
    assert scratch is not None
    scratch.create_and_import(artifact.path)
    assert scratch.table_counts() == dict(manifest.tables)
    assert scratch.check("SELECT count(*) = 3 FROM people") is True
    assert scratch.check("SELECT count(*) = 4 FROM people") is False
    with pytest.raises(PluginError, match="no such table"):
        scratch.check("SELECT * FROM nope")
    with pytest.raises(PluginError, match="readonly"):
        scratch.check("DELETE FROM people")
    scratch.drop()
    assert list(workdir.iterdir()) == []


def test_scratch_import_of_a_broken_dump_fails(
    source: Path, settings: GlobalSettings, tmp_path: Path
) -> None:
    broken = tmp_path / "p_backup_x.sqlite.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    scratch = plugin.backupctl_scratch_database(
        project=make_project(source), settings=settings, name="x", workdir=tmp_path
    )
    assert scratch is not None
    with pytest.raises(PluginError, match="cannot unpack"):
        scratch.create_and_import(broken)
    scratch.drop()
