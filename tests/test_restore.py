"""restore on real restic repositories (SQLite dumper): both snapshot modes,
--only, --decompress, --guide, and the target rules."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from backupctl_core.cli.main import cli
from backupctl_core.domain.artifacts import Snapshot
from backupctl_core.domain.errors import BackupctlError
from backupctl_core.domain.restore import RestoreStep, plan_restore
from tests.support.assets import make_assets, tree
from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace

# Same-day runs: keep_daily would keep only the newest of the day.
KEEP_ALL = {"keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path)
    workspace.write_env(RESTIC_PASSWORD="restore-pw")
    make_sqlite_db(tmp_path / "shop.sqlite", rows=300)
    return workspace


def cli_ok(ws: Workspace, *args: str) -> str:
    result = CliRunner().invoke(cli, [*ws.cli_args(), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.stdout + result.stderr
    return result.stdout


def cli_fail(ws: Workspace, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*ws.cli_args(), *args], catch_exceptions=False)
    assert result.exit_code != 0
    return result.exit_code, result.stderr


def setup(ws: Workspace, tmp_path: Path, mode: str) -> Path:
    assets = make_assets(tmp_path)
    restic = {"repository_path": str(tmp_path / "repo"), "snapshot_mode": mode}
    ws.write_config(
        [sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo", restic=restic,
                        assets={"paths": [str(assets)]}, retention=KEEP_ALL)]
    )  # fmt: skip
    cli_ok(ws, "db", "migrate")
    cli_ok(ws, "run", "shop")
    return assets


def rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM items ORDER BY id").fetchall()


@pytest.mark.parametrize("mode", ["combined", "separate"])
def test_full_restore_brings_back_dump_and_assets(ws: Workspace, tmp_path: Path, mode: str) -> None:
    assets = setup(ws, tmp_path, mode)
    target = tmp_path / "out"
    out = cli_ok(ws, "restore", "shop", "latest", str(target), "--decompress")
    restored_assets = target / str(assets).lstrip("/")
    assert tree(restored_assets) == tree(assets)  # contents, modes, empty dirs, symlinks
    (plain,) = target.rglob("shop_backup_*.sqlite")
    assert rows(plain) == rows(tmp_path / "shop.sqlite")
    assert f"decompressed: {plain}" in out


@pytest.mark.parametrize("mode", ["combined", "separate"])
def test_only_db_and_only_assets(ws: Workspace, tmp_path: Path, mode: str) -> None:
    assets = setup(ws, tmp_path, mode)
    cli_ok(ws, "restore", "shop", "latest", str(tmp_path / "db"), "--only", "db")
    files = sorted(p.name for p in (tmp_path / "db").rglob("*") if p.is_file())
    assert len(files) == 2 and files[0].startswith("shop_backup_")  # the dump, its manifest
    assert files[1] == files[0] + ".manifest.json"
    cli_ok(ws, "restore", "shop", "latest", str(tmp_path / "as"), "--only", "assets")
    assert not list((tmp_path / "as").rglob("shop_backup_*"))
    assert tree((tmp_path / "as") / str(assets).lstrip("/")) == tree(assets)


def test_separate_latest_takes_the_newest_of_each_source(ws: Workspace, tmp_path: Path) -> None:
    assets = setup(ws, tmp_path, "separate")
    (assets / "docs" / "new.txt").write_text("second run\n")
    cli_ok(ws, "run", "shop")
    snapshots = json.loads(cli_ok(ws, "snapshots", "shop", "--json"))
    assert len(snapshots) == 4
    out = cli_ok(ws, "restore", "shop", "latest", str(tmp_path / "out"))
    assert out.count("restoring snapshot") == 2
    restored = (tmp_path / "out") / str(assets).lstrip("/")
    assert (restored / "docs" / "new.txt").read_text() == "second run\n"
    assert len(list((tmp_path / "out").rglob("shop_backup_*.gz"))) == 1


def test_guide_commands_work(ws: Workspace, tmp_path: Path) -> None:
    setup(ws, tmp_path, "combined")
    out = cli_ok(ws, "restore", "shop", "latest", str(tmp_path / "out"), "--guide", "--only", "db")
    commands = [line.strip() for line in out.splitlines() if line.startswith("  gunzip")]
    assert len(commands) == 1
    subprocess.run(commands[0], shell=True, check=True)
    assert rows(tmp_path / "shop.sqlite.restored") == rows(tmp_path / "shop.sqlite")


def test_restore_by_id_and_bad_references(ws: Workspace, tmp_path: Path) -> None:
    setup(ws, tmp_path, "separate")
    snapshots = json.loads(cli_ok(ws, "snapshots", "shop", "--json"))
    db_snapshot = next(s for s in snapshots if "backupctl:db" in s["tags"])
    cli_ok(ws, "restore", "shop", db_snapshot["id"], str(tmp_path / "one"))
    assert len(list((tmp_path / "one").rglob("shop_backup_*.gz"))) == 1
    code, err = cli_fail(
        ws, "restore", "shop", db_snapshot["id"], str(tmp_path / "x"), "--only", "assets"
    )
    assert code == 1 and f"snapshot {db_snapshot['id']} holds db, not assets" in err
    code, err = cli_fail(ws, "restore", "shop", "deadbeef", str(tmp_path / "y"))
    assert "no snapshot 'deadbeef'" in err


def test_target_must_be_empty_or_new(ws: Workspace, tmp_path: Path) -> None:
    setup(ws, tmp_path, "combined")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    code, err = cli_fail(ws, "restore", "shop", "latest", str(busy))
    assert code == 1 and "is not empty" in err
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    (tmp_path / "file").write_text("x")
    code, err = cli_fail(ws, "restore", "shop", "latest", str(tmp_path / "file"))
    assert "is a file" in err


def snap(id_: str, *tags: str, paths: tuple[str, ...] = ()) -> Snapshot:
    from datetime import UTC, datetime

    return Snapshot(id=id_, time=datetime.now(UTC), tags=("project:p", *tags), paths=paths)


def test_plan_restore_rules() -> None:
    combined = snap("c1", "backupctl:combined", paths=("/b/p/p_backup_1.dump", "/srv/a"))
    assert plan_restore([combined], "latest", None, "p") == [RestoreStep("c1", None)]
    assert plan_restore([combined], "latest", "db", "p") == [
        RestoreStep("c1", ("/b/p/p_backup_1.dump",))
    ]
    assert plan_restore([combined], "c1", "assets", "p") == [RestoreStep("c1", ("/srv/a",))]
    newest_first = [
        snap("a2", "backupctl:assets:/srv/a"),
        snap("d2", "backupctl:db"),
        snap("a1", "backupctl:assets:/srv/a"),
        snap("d1", "backupctl:db"),
        snap("b1", "backupctl:assets:/srv/b"),
    ]
    assert [s.snapshot_id for s in plan_restore(newest_first, "latest", None, "p")] == [
        "a2", "d2", "b1",
    ]  # fmt: skip
    assert [s.snapshot_id for s in plan_restore(newest_first, "latest", "assets", "p")] == [
        "a2", "b1",
    ]  # fmt: skip
    twins = [snap("ab12cd34", "backupctl:db"), snap("ab99ef00", "backupctl:db")]
    with pytest.raises(BackupctlError, match=r"'ab' is ambiguous \(ab12cd34, ab99ef00\)"):
        plan_restore(twins, "ab", None, "p")
    assert plan_restore(twins, "ab9", None, "p") == [RestoreStep("ab99ef00", None)]
    with pytest.raises(BackupctlError, match="has no snapshots yet"):
        plan_restore([], "latest", None, "p")
    with pytest.raises(BackupctlError, match="no db snapshots"):
        plan_restore([newest_first[0]], "latest", "db", "p")


def glob_project(ws: Workspace, tmp_path: Path, base: Path, assets: list[Path]) -> None:
    ws.write_env(BACKUP_BASE_DIR=str(base))
    ws.write_config(
        [sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo",
                        assets={"paths": [str(a) for a in assets]}, retention=KEEP_ALL)]
    )  # fmt: skip
    cli_ok(ws, "db", "migrate")
    cli_ok(ws, "run", "shop")


def test_only_restores_paths_with_glob_characters(ws: Workspace, tmp_path: Path) -> None:
    """Snapshot paths went to `restic restore --include` unescaped: `glob[1]` matched
    only `glob1`, and such a folder was silently missing (exit 0)."""
    assets = []
    for name in ("glob[1]", "st*r", "q?x", "back\\slash"):
        folder = tmp_path / "srv" / name
        folder.mkdir(parents=True)
        (folder / "f.txt").write_text(name)
        assets.append(folder)
    (tmp_path / "srv" / "glob1").mkdir()  # what the unescaped pattern would match
    glob_project(ws, tmp_path, tmp_path / "back[ups]*", assets)

    target = tmp_path / "out-assets"
    cli_ok(ws, "restore", "shop", "latest", str(target), "--only", "assets")
    for folder in assets:
        assert (target / str(folder).lstrip("/") / "f.txt").read_text() == folder.name
    target = tmp_path / "out-db"
    out = cli_ok(ws, "restore", "shop", "latest", str(target), "--only", "db")
    assert "2 file(s) restored, 1 dump(s)" in out  # was "0 file(s) restored, 0 dump(s)"


def test_missing_after_restore_names_every_expected_path_not_restored() -> None:
    from backupctl_core.domain.restore import missing_after_restore

    combined = snap("c1", "backupctl:combined", paths=("/b/p/p_backup_1.dump", "/srv/a", "/srv/b"))
    (step,) = plan_restore([combined], "latest", "assets", "p")
    assert missing_after_restore([step], lambda path: path == "/srv/a") == ["/srv/b"]
    (whole,) = plan_restore([combined], "latest", None, "p")
    assert missing_after_restore([whole], lambda path: True) == []


def test_separate_mode_backs_up_any_asset_path(ws: Workspace, tmp_path: Path) -> None:
    """A comma in an asset path made every separate-mode run fail at sync
    (`invalid tags … assets:/…/with,comma`) after the other snapshots were written."""
    folders = []
    for name in ("with,comma", "50%off"):
        folder = tmp_path / "srv" / name
        folder.mkdir(parents=True)
        (folder / "f.txt").write_text(name)
        folders.append(folder)
    restic = {"repository_path": str(tmp_path / "repo"), "snapshot_mode": "separate"}
    retention = {"keep_daily": 1, "keep_weekly": 0, "keep_monthly": 0}
    ws.write_config(
        [sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo", restic=restic,
                        assets={"paths": [str(f) for f in folders]}, retention=retention)]
    )  # fmt: skip
    cli_ok(ws, "db", "migrate")
    assert "shop: success" in cli_ok(ws, "run", "shop")
    listing = cli_ok(ws, "snapshots", "shop")
    for folder in folders:
        assert f"  assets:{folder}  " in listing  # the KIND column: the real path, decoded
    target = tmp_path / "out"
    cli_ok(ws, "restore", "shop", "latest", str(target), "--only", "assets")
    for folder in folders:
        assert (target / str(folder).lstrip("/") / "f.txt").read_text() == folder.name
    # A second run on the same day: keep_daily 1 prunes the older snapshot of each
    # of the three series (dump, each folder), and only that one.
    cli_ok(ws, "run", "shop")
    (row, _) = json.loads(cli_ok(ws, "logs", "shop", "--json"))
    assert row["prune_snapshots_removed"] == 3
    assert len(json.loads(cli_ok(ws, "snapshots", "shop", "--json"))) == 3


@pytest.mark.parametrize(
    ("retention", "kept"),
    [
        ({"keep_daily": 7}, 1),  # the day's last only: this morning's snapshot is gone
        ({"keep_daily": 7, "keep_last": 2}, 2),
        ({"keep_daily": 7, "keep_within": "1d"}, 3),
    ],
)
def test_same_day_snapshots_survive_with_keep_last_or_keep_within(
    ws: Workspace, tmp_path: Path, retention: dict[str, object], kept: int
) -> None:
    ws.write_config(
        [sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo",
                        retention={"keep_weekly": 0, "keep_monthly": 0, **retention})]
    )  # fmt: skip
    cli_ok(ws, "db", "migrate")
    for _ in range(3):
        cli_ok(ws, "run", "shop")
    found = len(json.loads(cli_ok(ws, "snapshots", "shop", "--json")))
    assert found == kept


def test_snapshots_fit_100_columns_and_show_the_audited_size(ws: Workspace, tmp_path: Path) -> None:
    """restic 0.14 records no size (always `-`), and lines were 215 characters long."""
    setup(ws, tmp_path, "combined")
    lines = cli_ok(ws, "snapshots", "shop").splitlines()
    assert lines[0].split() == ["ID", "TIME", "KIND", "SIZE", "PATHS"]
    assert all(len(line) <= 100 for line in lines)
    (record,) = json.loads(cli_ok(ws, "status", "shop", "--json"))
    size = lines[1].split("  combined  ")[1].split("  ")[0].strip()
    from backupctl_core.domain.events import human_size

    assert size == f"+{human_size(record['bytes_added'])}"  # what the run added


def owners_and_modes(target: Path) -> set[tuple[int, int, bool]]:
    """(uid, gid, readable by its owner) of ``target`` and every path below it."""
    import os
    import stat

    found = set()
    for path in [target, *target.rglob("*")]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            readable = True  # a link's own mode means nothing
        elif stat.S_ISDIR(info.st_mode):
            readable = info.st_mode & (stat.S_IRUSR | stat.S_IXUSR) == stat.S_IRUSR | stat.S_IXUSR
        else:
            readable = bool(info.st_mode & stat.S_IRUSR)
        found.add((info.st_uid, info.st_gid, readable))
    assert os.path.isdir(target)
    return found


def test_restored_files_belong_to_who_restores_or_to_owner(ws: Workspace, tmp_path: Path) -> None:
    """Restores made as root in the container were root's, 0700, on the host:
    ``--owner "$(id -u):$(id -g)"`` gives them to the host user."""
    import os

    setup(ws, tmp_path, "combined")
    mine = tmp_path / "mine"
    cli_ok(ws, "restore", "shop", "latest", str(mine), "--decompress")
    assert owners_and_modes(mine) == {(os.geteuid(), os.getegid(), True)}

    theirs = tmp_path / "theirs"
    out = cli_ok(ws, "restore", "shop", "latest", str(theirs), "--decompress", "--owner",
                 "12345:12346")  # fmt: skip
    assert owners_and_modes(theirs) == {(12345, 12346, True)}
    restored = {p.name.split(".", 1)[1] for p in theirs.rglob("shop_backup_*")}
    assert {"sqlite.gz", "sqlite"} <= restored  # the dump and what --decompress wrote
    assert f"owner of {theirs} and all it holds: 12345:12346" in out
    only_user = tmp_path / "only-user"
    cli_ok(ws, "restore", "shop", "latest", str(only_user), "--owner", "12345")
    assert owners_and_modes(only_user) == {(12345, os.getegid(), True)}


def test_owner_is_checked_before_anything_is_restored(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    setup(ws, tmp_path, "combined")
    target = tmp_path / "out"
    code, err = cli_fail(ws, "restore", "shop", "latest", str(target), "--owner", "bob")
    assert code == 1
    assert err == (
        'error: --owner: expected UID or UID:GID as numbers (e.g. "$(id -u):$(id -g)"),'
        " got 'bob'\n"
    )
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # not root: only to oneself
    code, err = cli_fail(ws, "restore", "shop", "latest", str(target), "--owner", "0:0")
    assert err == (
        "error: --owner 0:0: only root can give files to another user"
        " (docker exec runs as root when -u is not given)\n"
    )
    assert not target.exists()
