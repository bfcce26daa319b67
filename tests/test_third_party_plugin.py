"""A third-party plugin from a folder of its own (examples/backupctl-example-tar, not
under plugins/ and not on this tree's import path), pip-installed like any package,
runs a real backup and restore through the installed ``backupctl`` executable.

It goes into a fresh virtualenv built from the local backupctl-core and
backupctl-restic wheels, not into the shared .venv: installing there would add a
``tarfiles`` plugin to every other test and session using that venv while this one
runs (``backupctl plugins`` output, exact plugin lists), and a test killed half-way
would leave it installed. A fresh venv also proves the example needs nothing but
what backupctl-core installs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.workspace import Workspace
from tests.test_distributions import CORE, ROOT, Venv, install_wheels, wheelhouse

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "backupctl-example-tar"
_IGNORE = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".pytest_cache")


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example's folder: pip builds a folder in place (``build/``,
    ``*.egg-info``) and pytest writes ``__pycache__``; the working tree stays clean."""
    dest = tmp_path_factory.mktemp("example") / EXAMPLE.name
    return Path(shutil.copytree(EXAMPLE, dest, ignore=_IGNORE))


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, example: Path) -> Venv:
    built = wheelhouse(tmp_path_factory, [CORE, "backupctl-restic"])
    env = Venv.create(tmp_path_factory.mktemp("third-party") / "venv")
    install_wheels(env, built, [CORE, "backupctl-restic"])
    env.pip("install", "--quiet", f"{example}[test]")  # not -e: a regular install
    return env


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The folder the example plugin archives."""
    root = tmp_path / "site"
    (root / "uploads" / "2024").mkdir(parents=True)
    (root / "index.html").write_text("<h1>hello</h1>\n")
    (root / "uploads" / "2024" / "photo ✓.jpg").write_bytes(bytes(range(256)) * 400)
    (root / "uploads" / ".hidden").write_text("dotfiles too\n")
    return root


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_plugin_is_installed_from_its_own_distribution(venv: Venv) -> None:
    plugins = venv.plugins()
    assert set(plugins) == {"tarfiles", "restic", "gpg"}
    assert plugins["tarfiles"]["distribution"] == "backupctl-example-tar"
    assert plugins["tarfiles"]["provides"] == ["database:tarfiles"]
    installed = venv.module_file("backupctl_example_tar")
    assert installed.is_relative_to(venv.path) and "site-packages" in installed.parts


def test_the_example_passes_its_own_tests(venv: Venv, example: Path) -> None:
    # Its own pyproject's pytest settings: no conftest or option of this repository.
    done = venv.run(str(venv.bin / "pytest"), "-q", "-p", "no:cacheprovider", str(example))
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_backup_and_restore_through_the_third_party_plugin(
    venv: Venv, tmp_path: Path, site: Path
) -> None:
    ws = Workspace(tmp_path)
    ws.write_env(RESTIC_PASSWORD="tar-pw")
    ws.write_config(
        [{"name": "site",
          "database": {"type": "tarfiles", "name": str(site)},
          "restic": {"repository_path": str(tmp_path / "repo"), "password": "${RESTIC_PASSWORD}"}}]
    )  # fmt: skip

    def backupctl(*args: str) -> subprocess.CompletedProcess[str]:
        done = venv.backupctl(*ws.cli_args(), *args)
        assert done.returncode == 0, f"backupctl {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done

    assert backupctl("config", "validate").stdout.strip() == "config OK: 1 project(s): site"
    backupctl("db", "migrate")  # before the dry run: it checks the audit store too
    dry = json.loads(backupctl("run", "site", "--dry-run", "--json").stdout)
    assert dry["ready"] and {"name": "database", "status": "pass",
                             "detail": f"folder {site} readable"} in dry["checks"]  # fmt: skip
    run = backupctl("run", "site")
    assert run.stdout.startswith("site: started\nsite: success — snapshot ")

    (record,) = json.loads(backupctl("status", "site", "--json").stdout)
    assert record["status"] == "success" and record["verified"] is True
    assert record["dump_path"].endswith(".tar.gz") and record["dump_size_bytes"] > 0
    (snapshot,) = json.loads(backupctl("snapshots", "site", "--json").stdout)
    assert snapshot["id"] == record["snapshot_id"]

    target = tmp_path / "restored"
    restore = backupctl("restore", "site", "latest", str(target), "--decompress", "--guide")
    assert "1 file(s) restored, 1 dump(s)" in restore.stdout
    (dump,) = target.rglob("site_backup_*.tar.gz")
    assert f"decompressed: {dump.with_suffix('')}" in restore.stdout  # the plugin's .tar
    assert dump.with_suffix("").stat().st_size > dump.stat().st_size
    listing = subprocess.run(
        ["tar", "-tzf", str(dump)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "./uploads/2024/photo ✓.jpg" in listing and "./uploads/.hidden" in listing
    assert f"tar -xzf {dump}" in restore.stdout  # the plugin's restore guide

    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xzf", str(dump), "-C", str(unpacked)], check=True)
    assert tree(unpacked) == tree(site)


def test_a_plugin_s_own_tests_pass_with_only_the_core_kit_and_the_plugin(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """issue 19: ``cd plugins/backupctl-mysql && pytest`` in a venv holding only
    backupctl-core[testing] and backupctl-mysql: the plugin's tests need nothing of
    this repository (no ``tests.support``, no root conftest), only the fixtures that
    ``backupctl_core.testing`` registers through ``pytest11`` (``mariadb_db``, …)."""
    built = wheelhouse(tmp_path_factory, [CORE, "backupctl-mysql"])
    env = Venv.create(tmp_path_factory.mktemp("plugin-alone") / "venv")
    links = str(built[CORE].wheel.parent)
    env.pip("install", "--quiet", "--find-links", links,
            f"{built[CORE].wheel}[testing]", str(built["backupctl-mysql"].wheel))  # fmt: skip
    source = ROOT / "plugins" / "backupctl-mysql"
    alone = tmp_path_factory.mktemp("mysql-plugin") / "backupctl-mysql"
    alone.mkdir()
    shutil.copy2(source / "pyproject.toml", alone / "pyproject.toml")  # its pytest settings
    shutil.copytree(source / "tests", alone / "tests", ignore=_IGNORE)
    done = env.run(str(env.bin / "pytest"), "-q", "-p", "no:cacheprovider", cwd=alone, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout and "error" not in done.stdout
