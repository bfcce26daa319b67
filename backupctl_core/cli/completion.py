"""Shell completion of project names (click's bash/zsh/fish completion).

Enable it with e.g. ``eval "$(_BACKUPCTL_COMPLETE=bash_source backupctl)"``
(``zsh_source``, ``fish_source``). Project arguments use
``shell_complete=complete_projects``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from backupctl_core.cli.context import CliContext


def _files(ctx: click.Context) -> tuple[Path, Path, bool]:
    """The projects file and env file the command line names, as ``cli`` would pick them.

    During completion click parses the command line without running callbacks, so
    ``--config``/``--env-file`` (and their environment variables, the config default)
    are in the root context's params, not yet in a ``CliContext``.
    """
    root = ctx.find_root()
    if isinstance(root.obj, CliContext):
        return root.obj.config_path, root.obj.env_path, root.obj.env_explicit
    params = root.params
    config = params.get("config_path") or os.environ.get("BACKUPCTL_CONFIG")
    env_file = params.get("env_path")
    explicit = env_file is not None or "BACKUPCTL_ENV_FILE" in os.environ
    if env_file is None:
        env_file = os.environ.get("BACKUPCTL_ENV_FILE", ".env")
    return Path(config or "config/projects.yml"), Path(env_file), explicit


def _names_from_yaml(config_path: Path) -> list[str]:
    """Project names straight from the YAML, for a config that does not fully load
    (a ``${VAR}`` not set, say): completion should still help."""
    from ruamel.yaml import YAML

    with config_path.open(encoding="utf-8") as handle:
        raw: Any = YAML(typ="safe").load(handle)
    projects = raw.get("projects") if isinstance(raw, dict) else None
    if not isinstance(projects, list):
        return []
    return [p["name"] for p in projects if isinstance(p, dict) and isinstance(p.get("name"), str)]


def project_names(ctx: click.Context) -> list[str]:
    """Every project name in the config file (enabled or not); [] when there is none."""
    config_path, env_path, explicit = _files(ctx)
    if not config_path.is_file():
        return []
    try:
        from backupctl_core.config.loader import load_config

        return load_config(config_path, env_path, env_required=explicit).names
    except Exception:
        pass
    try:
        return _names_from_yaml(config_path)
    except Exception:
        return []


def complete_projects(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """``shell_complete`` callback: project names starting with ``incomplete``.

    Never raises: a broken or missing config completes nothing.
    """
    try:
        names = project_names(ctx)
    except Exception:
        return []
    return [
        click.shell_completion.CompletionItem(name) for name in names if name.startswith(incomplete)
    ]
