"""Shared helpers for the bench scripts: paths, machine line, workspaces, timing.

Not a benchmark itself. Every script puts the repository root on ``sys.path``
(so ``tests.support`` - the PostgreSQL cluster and SFTP server helpers - and
``backupctl_core`` import) and runs the installed ``.venv/bin/backupctl``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

VENV_BIN = REPO / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
BACKUPCTL = str(VENV_BIN / "backupctl")
PATCHED_CLI = str(Path(__file__).resolve().parent / "_patched_cli.py")
MIB = 1024 * 1024

# Children run with cached bytecode, like a pip-installed backupctl (pip compiles
# .pyc files). This sandbox sets PYTHONDONTWRITEBYTECODE=1, with which an editable
# checkout recompiles every backupctl module on every start. The cache goes to a
# prefix directory, so the checkout itself gets no __pycache__ folders.
NO_PYC_ENV = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
NO_PYC_ENV.pop("PYTHONPYCACHEPREFIX", None)
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault("PYTHONPYCACHEPREFIX", "/tmp/backupctl-bench-pycache")


def _first_line(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except OSError:
        return f"{argv[0]}: not installed"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else f"{argv[0]}: ?"


def machine_line(*tools: Sequence[str]) -> str:
    """``# date host: kernel, CPU, cores, RAM; tool versions; Python``."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    versions = "; ".join(_first_line(tool) for tool in tools)
    load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return (
        f"# {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  {platform.node()}:"
        f" {platform.system()} {platform.release()}, {model}, {os.cpu_count()} cores,"
        f" {ram:.0f} GB RAM; {versions}{'; ' if versions else ''}"
        f"Python {platform.python_version()}; {load}"
    )


RESTIC_VERSION = ("restic", "version")
PG_DUMP_VERSION = ("pg_dump", "--version")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """``min-max`` of a series, for the tables."""
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    cwd: Path | None = None,
    quiet: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure show its output and stop the benchmark."""
    result = subprocess.run(
        [str(a) for a in argv], env=env, cwd=cwd, text=True, check=False,
        stdout=subprocess.PIPE if quiet else None, stderr=subprocess.PIPE if quiet else None,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if check and result.returncode != 0:
        raise SystemExit(
            f"command failed (exit {result.returncode}): {' '.join(map(str, argv))}\n"
            f"{result.stdout or ''}{result.stderr or ''}"
        )
    return result


def timed(argv: Sequence[str], **kwargs: Any) -> float:
    """Wall seconds of one command (it must succeed)."""
    started = time.perf_counter()
    run(argv, **kwargs)
    return time.perf_counter() - started


def dir_size(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


class Workspace:
    """A backupctl workspace: ``config/projects.yml``, ``.env``, base dir."""

    def __init__(self, root: Path, **env: str) -> None:
        self.root = root
        self.base_dir = root / "backups"
        self.config_path = root / "config" / "projects.yml"
        self.env_path = root / ".env"
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.env: dict[str, str] = {
            "BACKUP_BASE_DIR": str(self.base_dir),
            "TIMEZONE": "UTC",
            "BACKUP_RETRY_COUNT": "0",
            "BACKUP_RETRY_DELAY_MS": "0",
            "NOTIFICATION_TYPE": "none",
            "RESTIC_PASSWORD": "bench-restic-password",
        }
        self.write_env(**env)

    def write_env(self, **extra: str) -> None:
        self.env.update(extra)
        self.env_path.write_text("".join(f"{k}={v}\n" for k, v in self.env.items()))

    def write_config(self, projects: list[dict[str, Any]]) -> None:
        from ruamel.yaml import YAML

        with self.config_path.open("w") as handle:
            YAML().dump({"projects": projects}, handle)

    def args(self) -> list[str]:
        return ["--config", str(self.config_path), "--env-file", str(self.env_path)]

    def backupctl(
        self, *args: str, check: bool = True, prefix: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        """``backupctl ARGS``, or ``PREFIX ARGS`` (e.g. bench/_patched_cli.py ... --)."""
        return run(self.backupctl_argv(*args, prefix=prefix), check=check)

    def backupctl_argv(self, *args: str, prefix: Sequence[str] = ()) -> list[str]:
        return [*(prefix or [BACKUPCTL]), *self.args(), *args]

    def load(self) -> Any:
        from backupctl_core.config.loader import load_config

        return load_config(self.config_path, self.env_path)

    def restic_env(self, project: str) -> tuple[dict[str, str], list[str]]:
        """restic's environment and argv prefix for a project, as the plugin builds them."""
        from backupctl_restic.repository import restic_environment

        config = self.load()
        env, argv = restic_environment(config.project(project), config.settings)
        return env, argv


def need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        raise SystemExit(f"missing programs: {', '.join(missing)}")


def print_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None
) -> None:
    """A plain text table; ``align`` is one of l/r per column (default: first l)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    align = align or "l" + "r" * (len(header) - 1)
    for row in cells:
        padded = [
            cell.ljust(width) if side == "l" else cell.rjust(width)
            for cell, width, side in zip(row, widths, align, strict=True)
        ]
        print("  ".join(padded).rstrip())
