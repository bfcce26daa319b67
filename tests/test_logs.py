"""Log files under the backup folder, rotated by size, old days removed."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from datetime import date
from logging.handlers import RotatingFileHandler
from pathlib import Path

import pytest
from click.testing import CliRunner

from backupctl_core.cli.main import cli
from backupctl_core.domain.settings import GlobalSettings
from backupctl_core.runtime.logs import add_file_log, parse_size
from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace


@pytest.fixture(autouse=True)
def detach_file_handlers() -> object:
    yield
    logger = logging.getLogger("backupctl")
    for handler in [h for h in logger.handlers if isinstance(h, RotatingFileHandler)]:
        logger.removeHandler(handler)
        handler.close()


def test_parse_size() -> None:
    assert parse_size("10m") == 10 * 1024**2
    assert parse_size("500K") == 500 * 1024
    assert parse_size("1g") == 1024**3
    assert parse_size("4096") == 4096
    with pytest.raises(ValueError, match="LOG_MAX_SIZE"):
        parse_size("lots")


def test_file_log_rotates_and_keeps_max_files(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        (folder / f"backupctl-{day}.log").write_text("old\n")
    settings = GlobalSettings(
        backup_base_dir=tmp_path, log_dir=folder, log_max_size="1k", log_max_files=2
    )
    path = add_file_log(settings)
    assert path == folder / f"backupctl-{date.today().isoformat()}.log"
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in folder.glob("backupctl-2026-01-0*.log")) == [
        "backupctl-2026-01-03.log"
    ]  # today + 1 older day = LOG_MAX_FILES
    log = logging.getLogger("backupctl.test")
    for n in range(100):
        log.info("line %d %s", n, "x" * 40)
    assert path.stat().st_size <= 1024
    assert (folder / (path.name + ".1")).exists()  # rotated by size
    assert add_file_log(settings) == path  # attaching twice adds no second handler
    handlers = [h for h in logging.getLogger("backupctl").handlers
                if isinstance(h, RotatingFileHandler)]  # fmt: skip
    assert len(handlers) == 1


def test_a_run_writes_the_day_log_and_quiet_console(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    ws.write_env(RESTIC_PASSWORD="log-pw-1234", LOG_LEVEL="INFO")
    make_sqlite_db(tmp_path / "shop.sqlite")
    ws.write_config(
        [sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo",
                        assets={"paths": [str(tmp_path / "missing")]})]
    )  # fmt: skip
    runner = CliRunner()
    assert runner.invoke(cli, [*ws.cli_args(), "db", "migrate"]).exit_code == 0
    result = runner.invoke(cli, [*ws.cli_args(), "run", "shop"])
    assert result.exit_code == 0, result.output
    log_file = ws.base_dir / ".logs" / f"backupctl-{date.today().isoformat()}.log"
    text = log_file.read_text()
    assert f"1 asset path missing: {tmp_path / 'missing'} (skipped)" in text
    # a successful run is in the log too, not only its warnings (issue 21, item 11)
    assert "shop: backup started (run " in text and "shop: backup success (run " in text
    # times in TIMEZONE with their offset, as in status and messages (were the machine's)
    from datetime import datetime
    from zoneinfo import ZoneInfo

    offset = datetime.now(ZoneInfo("Europe/Berlin")).isoformat(timespec="seconds")[-6:]
    first = text.splitlines()[0]
    assert first.split(" ")[1].endswith(offset), first
    assert "log-pw-1234" not in text
    verbose = runner.invoke(cli, [*ws.cli_args(), "-v", "run", "shop"])
    assert "Dump (3/11)" in verbose.stdout  # progress lines with -v
    assert "Dump (3/11)" not in result.stdout  # quiet by default


def test_files_and_folders_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """Under umask 000 the folders a run creates were 0777, the lock file 0666 and
    rotated log files 0644."""
    ws = Workspace(tmp_path)
    ws.base_dir = tmp_path / "deep" / "backups"  # two folders the run must create
    ws.write_env(
        BACKUP_BASE_DIR=str(ws.base_dir), RESTIC_PASSWORD="umask-pw-1234", LOG_MAX_SIZE="300",
        LOG_MAX_FILES="3",
    )  # fmt: skip
    make_sqlite_db(tmp_path / "shop.sqlite")
    ws.write_config([sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo",
                                    hooks={"pre_backup": f"stat -c %a {ws.base_dir}/shop/.lock"
                                           f" > {tmp_path}/lock-mode"})])  # fmt: skip
    backupctl = str(Path(sys.executable).with_name("backupctl"))
    for args in (["db", "migrate"], ["run", "shop"], ["-v", "run", "shop"], ["run", "shop"]):
        done = subprocess.run(
            [backupctl, *ws.cli_args(), *args], capture_output=True, text=True,
            preexec_fn=lambda: os.umask(0),
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "lock-mode").read_text().strip() == "600"
    for folder in (tmp_path / "deep", ws.base_dir, ws.base_dir / "shop", ws.base_dir / ".logs"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    logs = list((ws.base_dir / ".logs").iterdir())
    assert any(p.name.endswith(".log.1") for p in logs)  # rotated at least once
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in logs} == {p.name: 0o600 for p in logs}
