"""The pure half of restore drills: manifests, comparisons, names, ages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backupctl_core.domain.drill import (
    DrillReport,
    DrillSummary,
    DumpManifest,
    drill_overdue,
    import_and_compare,
    is_manifest,
    manifest_path,
    scratch_database_name,
    table_problems,
)
from backupctl_core.domain.errors import BackupctlError, PluginError
from backupctl_core.domain.restore import dumps_among, is_backup_file, is_dump_path

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def test_manifest_round_trips_and_rejects_nonsense() -> None:
    manifest = DumpManifest("postgres", "shop", {"b.t": 2, 'a."T x"': 0}, "15.2", "15.2", 99)
    assert DumpManifest.from_json(manifest.to_json()) == manifest
    for text in (
        "not json",
        '{"engine": "x"}',
        '{"engine": "x", "database": "d", "tables": {"t": -1}}',
    ):
        with pytest.raises(BackupctlError, match="unreadable dump manifest"):
            DumpManifest.from_json(text)


def test_manifest_names_travel_with_the_dump_and_are_not_dumps() -> None:
    dump = Path("/b/shop/shop_backup_20261203_080000_abcd.dump")
    path = manifest_path(dump)
    assert path.name == "shop_backup_20261203_080000_abcd.dump.manifest.json"
    assert is_manifest(path.name) and is_manifest(path.name + ".gpg")
    assert not is_manifest(dump.name)
    assert is_dump_path(str(dump), "shop") and not is_dump_path(str(path), "shop")
    assert is_backup_file(str(path), "shop")  # restore --only db brings it along


def test_the_dumps_among_restored_files_include_the_folder_of_a_directory_dump() -> None:
    base = Path("/r/data/shop")
    folder = base / "shop_backup_20261203_080000_abcd.dir"
    restored = [
        folder / "toc.dat", folder / "3342.dat.gz", base / (folder.name + ".manifest.json"),
        base / "shop_backup_20261202_080000_beef.dump", Path("/r/assets/shop_backup_notes.txt"),
        Path("/r/assets/logo.png"),
    ]  # fmt: skip
    assert dumps_among(restored, "shop") == [
        Path("/r/assets/shop_backup_notes.txt"),  # named like a dump: listed, as before
        base / "shop_backup_20261202_080000_beef.dump",
        folder,
    ]


def test_table_problems_name_every_difference() -> None:
    assert table_problems({"a": 1, "b": 2}, {"a": 1, "b": 2}) == []
    assert table_problems({"a": 1, "b": 2}, {"b": 3, "c": 0}) == [
        "table a is missing",
        "table c was not in the dump",
        "table b: 2 row(s) in the dump, 3 imported",
    ]


def test_scratch_names_fit_every_engine() -> None:
    assert scratch_database_name("shop", NOW) == "shop_drill_20261203080000"
    long = scratch_database_name("x" * 80 + "-é", NOW)
    assert len(long.encode()) <= 63 and long.endswith("_drill_20261203080000")
    assert scratch_database_name("my-db.prod", NOW).startswith("my_db_prod_drill_")
    assert scratch_database_name("/var/lib/app/shop.sqlite", NOW) == "shop_drill_20261203080000"


def test_drill_overdue() -> None:
    passed = DrillSummary(NOW - timedelta(days=9), True, last_success=NOW - timedelta(days=9))
    assert drill_overdue(None, None, NOW) is None
    assert drill_overdue(8, passed, NOW) == (
        "last passed restore drill 9 day(s) ago (drill.max_age_days: 8)"
    )
    assert drill_overdue(10, passed, NOW) is None
    assert "no passed restore drill yet" in str(drill_overdue(8, None, NOW))
    failed_only = DrillSummary(NOW, False, error_message="rows: x")
    assert "no passed restore drill yet" in str(drill_overdue(8, failed_only, NOW))
    assert failed_only.text(UTC) == "2026-12-03 08:00 UTC, failed: rows: x"


class FakeScratch:
    """A scratch database whose import and checks behave as told."""

    def __init__(self, counts: dict[str, int], fail_import: bool = False) -> None:
        self.name = "shop_drill_1"
        self.counts = counts
        self.fail_import = fail_import
        self.dropped = False

    def create_and_import(self, dump_file: Path) -> None:
        if self.fail_import:
            raise PluginError("ERROR: relation exists", retryable=False)

    def table_counts(self) -> dict[str, int]:
        return self.counts

    def check(self, query: str) -> bool:
        if "boom" in query:
            raise PluginError("syntax error", retryable=False)
        return "true" in query

    def drop(self) -> None:
        self.dropped = True


def test_import_and_compare_reports_each_check_and_always_drops() -> None:
    manifest = DumpManifest("postgres", "shop", {"t": 3})
    report = DrillReport("shop", "id", NOW)
    scratch = FakeScratch({"t": 3})
    import_and_compare(report, scratch, Path("d.dump"), manifest, ["select true", "boom", "x"])
    assert [(c.name, c.status) for c in report.checks] == [
        ("import", "pass"), ("rows", "pass"), ("check 1", "pass"),
        ("check 2", "fail"), ("check 3", "fail"),
    ]  # fmt: skip
    assert report.checks[3].detail == "boom: syntax error"
    assert report.checks[4].detail == "false: x"
    assert scratch.dropped and not report.ok
    assert report.summary() == "failed: check 2: boom: syntax error"

    failed = DrillReport("shop", "id", NOW)
    broken = FakeScratch({}, fail_import=True)
    import_and_compare(failed, broken, Path("d.dump"), manifest, ["select true"])
    assert [(c.name, c.status, c.detail) for c in failed.checks] == [
        ("import", "fail", "ERROR: relation exists")
    ]
    assert broken.dropped

    unsupported = DrillReport("shop", "id", NOW)
    import_and_compare(unsupported, None, Path("d.dump"), manifest, [])
    assert unsupported.summary() == "failed: import: import not supported by this database plugin"

    no_manifest = DrillReport("shop", "id", NOW)
    import_and_compare(no_manifest, FakeScratch({"t": 1}), Path("d"), None, [])
    assert no_manifest.checks[1].detail == "no manifest stored with this dump: nothing to compare"
    assert DrillReport("shop", "id", NOW).ok is False  # no checks: nothing proven
