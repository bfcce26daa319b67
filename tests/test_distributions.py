"""The distributions as a user gets them: every one builds an sdist and, from that
sdist, a wheel with ``python -m build``; a fresh virtualenv holding only the wheels of
backupctl-core, backupctl-postgres and backupctl-restic gives a working CLI, and
installing one more plugin's wheel adds its type.

The virtualenv is made with ``python -m venv`` (no system site-packages) and pip fetches
the third-party dependencies (click, peewee, ...) from the package index; nothing of
this working tree is importable in it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
CORE = "backupctl-core"
PLUGINS = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())
DISTRIBUTIONS = [CORE, *PLUGINS]
# What `python -m build` leaves in a source folder, and what a checkout does not have.
_IGNORE = shutil.ignore_patterns(
    "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"
)
BUILD_TIMEOUT = 600


class Built(NamedTuple):
    wheel: Path
    sdist: Path
    log: Path


def _copy_source(name: str, dest: Path) -> Path:
    """A clean copy of the distribution's folder. ``python -m build`` writes ``build/``
    and ``*.egg-info`` into the folder it builds, and this working tree is shared."""
    if name != CORE:
        shutil.copytree(ROOT / "plugins" / name, dest, ignore=_IGNORE)
        return dest
    dest.mkdir(parents=True)
    for file in ("pyproject.toml", "README.md"):  # what the Dockerfile copies, too
        shutil.copy2(ROOT / file, dest / file)
    shutil.copytree(ROOT / "backupctl_core", dest / "backupctl_core", ignore=_IGNORE)
    return dest


def build(names: Sequence[str], out: Path, work: Path) -> dict[str, Built]:
    """``python -m build`` (sdist, then a wheel from it) for each name, in parallel."""
    out.mkdir(parents=True, exist_ok=True)
    running = {}
    for name in names:
        source = _copy_source(name, work / name)
        log = work / f"{name}.log"
        with log.open("w") as handle:
            running[name] = subprocess.Popen(
                [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
                stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work,
            )  # fmt: skip
    built = {}
    for name, proc in running.items():
        code = proc.wait(timeout=BUILD_TIMEOUT)
        log = work / f"{name}.log"
        assert code == 0, f"python -m build {name} failed:\n{log.read_text()[-3000:]}"
        stem = name.replace("-", "_")
        (wheel,) = out.glob(f"{stem}-*.whl")
        (sdist,) = out.glob(f"{stem}-*.tar.gz")
        built[name] = Built(wheel, sdist, log)
    return built


_BUILT: dict[str, Built] = {}


def wheelhouse(
    factory: pytest.TempPathFactory, names: Sequence[str] = DISTRIBUTIONS
) -> dict[str, Built]:
    """``names`` built, each once per test session (shared with other test modules)."""
    missing = [name for name in names if name not in _BUILT]
    if missing:
        out = next(iter(_BUILT.values())).wheel.parent if _BUILT else factory.mktemp("wheels")
        _BUILT.update(build(missing, out, factory.mktemp("src")))
    return _BUILT


class Venv:
    """A virtualenv outside this working tree; commands run with its ``bin`` first on PATH."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bin = path / "bin"
        drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH"}
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.env["VIRTUAL_ENV"] = str(path)
        self.env["PATH"] = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"

    @classmethod
    def create(cls, path: Path) -> Venv:
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
        return cls(path)

    def run(
        self, *argv: str, timeout: float = 120, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        # cwd: the venv's parent by default, never this working tree (no `.` on sys.path
        # by accident)
        return subprocess.run(
            list(argv), capture_output=True, text=True, env=self.env,
            cwd=cwd or self.path.parent, stdin=subprocess.DEVNULL, timeout=timeout,
        )  # fmt: skip

    def pip(self, *args: str) -> str:
        done = self.run(str(self.bin / "python"), "-m", "pip", "--no-input", *args, timeout=600)
        assert done.returncode == 0, f"pip {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def backupctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.bin / "backupctl"), *args)

    def plugins(self) -> dict[str, dict[str, object]]:
        done = self.backupctl("plugins", "--json")
        assert done.returncode == 0, done.stderr
        return {p["name"]: p for p in json.loads(done.stdout)}

    def module_file(self, module: str) -> Path:
        done = self.run(
            str(self.bin / "python"), "-c", f"import {module}; print({module}.__file__)"
        )
        assert done.returncode == 0, done.stderr
        return Path(done.stdout.strip())


def install_wheels(venv: Venv, built: dict[str, Built], names: Sequence[str]) -> None:
    """The wheels by file (so pip cannot take them from an index), dependencies from PyPI."""
    links = str(built[CORE].wheel.parent)
    venv.pip("install", "--quiet", "--find-links", links, *(str(built[n].wheel) for n in names))


# -- the built files ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    return wheelhouse(tmp_path_factory)


def _metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return archive.read(name).decode()


def _wheel_file(wheel: Path, suffix: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(suffix)]
        return archive.read(name).decode()


def test_the_core_sdist_and_wheel_hold_the_migrations_and_readme(built: dict[str, Built]) -> None:
    migrations = sorted(p.name for p in (ROOT / "backupctl_core/audit/migrations").glob("0*.py"))
    assert migrations  # the audit tables come only from these files
    with tarfile.open(built[CORE].sdist) as sdist:
        names = {Path(*Path(n).parts[1:]).as_posix() for n in sdist.getnames()}
    assert {"README.md", "pyproject.toml", "PKG-INFO"} <= names
    assert {f"backupctl_core/audit/migrations/{m}" for m in migrations} <= names
    with zipfile.ZipFile(built[CORE].wheel) as wheel:
        in_wheel = set(wheel.namelist())
    assert {f"backupctl_core/audit/migrations/{m}" for m in migrations} <= in_wheel
    assert "backupctl_core/builtin/gpg.py" in in_wheel
    assert "backupctl_core/builtin/gpg_keyring.py" in in_wheel
    # `backupctl init` writes these: a pip user has no checkout to copy them from
    assert {"backupctl_core/examples/projects.example.yml",
            "backupctl_core/examples/env.example"} <= in_wheel  # fmt: skip
    assert "backupctl = backupctl_core.cli.main:main" in _wheel_file(
        built[CORE].wheel, ".dist-info/entry_points.txt"
    )
    assert "# backupctl\n" in _metadata(built[CORE].wheel)  # the README is the description


@pytest.mark.parametrize("name", PLUGINS)
def test_every_plugin_builds_with_its_readme_entry_point_and_core_range(
    built: dict[str, Built], name: str
) -> None:
    with tarfile.open(built[name].sdist) as sdist:
        names = {Path(*Path(n).parts[1:]).as_posix() for n in sdist.getnames()}
    assert {"README.md", "pyproject.toml"} <= names
    metadata = _metadata(built[name].wheel)
    assert f"Name: {name}\n" in metadata
    assert "Requires-Dist: backupctl-core<0.2,>=0.1\n" in metadata
    assert f"\n# {name}\n" in metadata  # the README, as the long description
    assert "License-Expression: MIT\n" in metadata
    entry_points = _wheel_file(built[name].wheel, ".dist-info/entry_points.txt")
    assert entry_points.startswith("[backupctl]\n")
    assert "deprecated" not in built[name].log.read_text()  # e.g. the old license table


# -- a fresh virtualenv with core + postgres + restic --------------------------------------


@pytest.fixture(scope="module")
def venv(built: dict[str, Built], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    env = Venv.create(tmp_path_factory.mktemp("dist") / "venv")
    install_wheels(env, built, [CORE, "backupctl-postgres", "backupctl-restic"])
    yield env


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path)
    workspace.write_env(RESTIC_PASSWORD="dist-pw")
    return workspace


def postgres_project(name: str, repo: Path) -> dict[str, object]:
    return {
        "name": name,
        "database": {"type": "postgres", "host": "db.example", "name": "app", "user": "app",
                     "password": "secret"},
        "restic": {"repository_path": str(repo), "password": "${RESTIC_PASSWORD}"},
    }  # fmt: skip


def test_the_venv_runs_the_installed_wheels_not_this_tree(venv: Venv) -> None:
    assert venv.backupctl("--version").stdout.strip() == "backupctl, version 0.1.0"
    site = venv.module_file("backupctl_core").parents[1]
    assert site.name == "site-packages" and site.is_relative_to(venv.path)
    listed = json.loads(venv.pip("list", "--format=json"))
    assert {p["name"] for p in listed if p["name"].startswith("backupctl")} == {
        CORE, "backupctl-postgres", "backupctl-restic",
    }  # fmt: skip
    assert not [p for p in listed if "editable_project_location" in p]


def test_plugins_lists_exactly_what_is_installed(venv: Venv) -> None:
    plugins = venv.plugins()
    assert set(plugins) == {"postgres", "restic", "gpg"}
    assert plugins["postgres"]["distribution"] == "backupctl-postgres"
    assert plugins["postgres"]["provides"] == ["database:postgres"]
    assert plugins["restic"]["provides"] == ["storage:restic"]
    assert plugins["gpg"]["distribution"] == CORE  # built in
    assert not [p for p in plugins.values() if "error" in p]


def test_a_postgres_project_validates(venv: Venv, ws: Workspace) -> None:
    ws.write_config([postgres_project("app", ws.root / "repo")])
    done = venv.backupctl(*ws.cli_args(), "config", "validate")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "config OK: 1 project(s): app"


def test_a_mysql_project_names_the_distribution_to_install(venv: Venv, ws: Workspace) -> None:
    mysql = postgres_project("shop", ws.root / "repo")
    mysql["database"] = {"type": "mysql", "host": "db.example", "name": "shop", "user": "shop"}
    ws.write_config([postgres_project("app", ws.root / "repo"), mysql])
    done = venv.backupctl(*ws.cli_args(), "config", "validate")
    assert done.returncode == 3, done.stderr
    assert "projects[shop].database.type: no installed plugin provides database type 'mysql'" in (
        done.stderr
    )
    assert "pip install backupctl-mysql" in done.stderr
    assert "Traceback" not in done.stderr


def test_installing_a_plugin_wheel_adds_its_type(
    venv: Venv, built: dict[str, Built], ws: Workspace
) -> None:
    make_sqlite_db(ws.root / "notes.sqlite")
    ws.write_config([sqlite_project("notes", ws.root / "notes.sqlite", ws.root / "repo")])
    before = venv.backupctl(*ws.cli_args(), "config", "validate")
    assert before.returncode == 3 and "pip install backupctl-sqlite" in before.stderr

    install_wheels(venv, built, ["backupctl-sqlite"])
    try:
        plugins = venv.plugins()
        assert set(plugins) == {"postgres", "restic", "gpg", "sqlite"}
        assert plugins["sqlite"]["provides"] == ["database:sqlite"]
        assert plugins["sqlite"]["distribution"] == "backupctl-sqlite"
        done = venv.backupctl(*ws.cli_args(), "config", "validate")
        assert done.returncode == 0, done.stderr
        # A real run on the installed wheels: the migrations ship in the core wheel.
        for args in (["db", "migrate"], ["run", "notes"]):
            done = venv.backupctl(*ws.cli_args(), *args)
            assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("notes: started\nnotes: success — snapshot ")
        snapshots = json.loads(
            venv.backupctl(*ws.cli_args(), "snapshots", "notes", "--json").stdout
        )
        assert [s["tags"] for s in snapshots] == [["project:notes", "backupctl:combined"]]
    finally:  # leave the module's venv as the other tests expect it
        venv.pip("uninstall", "--quiet", "--yes", "backupctl-sqlite")
    assert set(venv.plugins()) == {"postgres", "restic", "gpg"}
