"""The tarfiles dumper on real folders, with the real tar. Run against the installed
package: ``pip install ".[test]" && pytest``."""

from __future__ import annotations

import stat
import subprocess
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from backupctl_example_tar import plugin

from backupctl_core import (
    DatabaseSettings,
    DumpArtifact,
    PluginError,
    PluginType,
    ProjectSettings,
    ResticSettings,
)
from backupctl_core.testing import plugin_manager


def make_project(folder: Path | str | None) -> ProjectSettings:
    return ProjectSettings(
        name="site",
        restic=ResticSettings(repository_path="/unused"),
        database=DatabaseSettings(type="tarfiles", name=None if folder is None else str(folder)),
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "index.html").write_text("<h1>hello</h1>\n")
    (root / "sub" / "naïve ✓.txt").write_text("unicode name\n")
    (root / "sub" / "deeper" / "blob.bin").write_bytes(bytes(range(256)) * 64)
    return root


@pytest.fixture
def stem(tmp_path: Path) -> Path:
    return tmp_path / "backups" / "site" / "site_backup_20240101_120000_abcd"


def listing(path: Path) -> list[str]:
    out = subprocess.run(["tar", "-tzf", str(path)], capture_output=True, text=True, check=True)
    return sorted(out.stdout.split("\n")[:-1])


def test_is_found_through_its_entry_point_and_matches_the_hookspecs() -> None:
    (ep,) = [ep for ep in entry_points(group="backupctl") if ep.name == "tarfiles"]
    assert ep.load() is plugin
    manager = plugin_manager(plugin)  # raises PluginValidationError on a misspelled argument
    assert manager.hook.backupctl_plugin_types() == [[PluginType("database", "tarfiles")]]


def test_validate_config() -> None:
    assert plugin.backupctl_validate_config(project=make_project("/srv/site")) == []
    assert plugin.backupctl_validate_config(project=make_project(None)) == [
        "database.name is required (the folder to archive)"
    ]
    (problem,) = plugin.backupctl_validate_config(project=make_project("relative/dir"))
    assert "absolute path" in problem


def test_dump_is_a_private_tar_gz_of_the_folder(folder: Path, stem: Path) -> None:
    artifact = plugin.backupctl_dump(project=make_project(folder), target_stem=stem)
    assert artifact.path == stem.with_name(stem.name + ".tar.gz")
    assert artifact.format == "tar-gzip"
    assert artifact.size_bytes == artifact.path.stat().st_size > 0
    assert stat.S_IMODE(artifact.path.stat().st_mode) == 0o600
    assert listing(artifact.path) == [
        "./", "./index.html", "./sub/", "./sub/deeper/", "./sub/deeper/blob.bin",
        "./sub/naïve ✓.txt",
    ]  # fmt: skip
    result = plugin.backupctl_verify(artifact=artifact)
    assert result.ok and result.detail == "tar -tzf: 6 entries"


def test_verify_fails_on_a_truncated_archive(folder: Path, stem: Path) -> None:
    artifact = plugin.backupctl_dump(project=make_project(folder), target_stem=stem)
    data = artifact.path.read_bytes()
    artifact.path.write_bytes(data[: len(data) // 2])
    result = plugin.backupctl_verify(artifact=artifact)
    assert not result.ok and result.detail.startswith("tar -tzf: ")
    missing = DumpArtifact(path=stem.with_name("gone.tar.gz"), size_bytes=0, format="tar-gzip")
    assert not plugin.backupctl_verify(artifact=missing).ok


def test_missing_folder_is_a_permanent_error_and_leaves_no_file(tmp_path: Path, stem: Path) -> None:
    with pytest.raises(PluginError, match="folder not found") as raised:
        plugin.backupctl_dump(project=make_project(tmp_path / "nope"), target_stem=stem)
    assert raised.value.retryable is False
    assert not stem.parent.exists() or not list(stem.parent.iterdir())


def test_check(folder: Path, tmp_path: Path) -> None:
    (ok,) = plugin.backupctl_check(project=make_project(folder))
    assert ok.status == "pass"
    (missing,) = plugin.backupctl_check(project=make_project(tmp_path / "nope"))
    assert missing.status == "fail" and "folder not found" in missing.detail


def test_decompress_and_guide(folder: Path, stem: Path, tmp_path: Path) -> None:
    artifact = plugin.backupctl_dump(project=make_project(folder), target_stem=stem)
    plain = plugin.backupctl_decompress(path=artifact.path)
    assert plain == artifact.path.with_suffix("")  # x.tar.gz -> x.tar
    assert plain is not None and stat.S_IMODE(plain.stat().st_mode) == 0o600
    assert plugin.backupctl_decompress(path=tmp_path / "other.sql.gz") is None

    guide = plugin.backupctl_restore_guide(project=make_project(folder), dump_file=artifact.path)
    restored = folder.with_name("site.restored")
    subprocess.run(guide[0], shell=True, check=True)  # the guide is for a shell: test it so
    subprocess.run(guide[1], shell=True, check=True)
    assert (restored / "sub" / "deeper" / "blob.bin").read_bytes() == bytes(range(256)) * 64
    assert guide[2].startswith("# ")
