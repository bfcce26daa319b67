"""``backupctl restore``: files only, never an import (SPEC non-goal)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from backupctl_core.cli.completion import complete_projects
from backupctl_core.cli.context import CliContext
from backupctl_core.domain.drill import manifest_path
from backupctl_core.domain.errors import BackupctlError, UsageError
from backupctl_core.domain.restore import (
    RestoreStep,
    dumps_among,
    missing_after_restore,
    plan_restore,
)

if TYPE_CHECKING:  # the plugin manager is loaded by the command, not at import
    from backupctl_core.plugins import ProjectPluginSet


def _prepare_target(target: Path) -> Path:
    target = target.absolute()
    if target.exists():
        if not target.is_dir():
            raise BackupctlError(f"restore target {target} exists and is not a folder")
        if any(target.iterdir()):
            raise BackupctlError(f"restore target {target} is not empty")
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    return target.resolve()


def _owner(text: str | None) -> tuple[int, int] | None:
    """``--owner UID[:GID]`` as numbers (GID -1: left as it is); checked before any restore."""
    if text is None:
        return None
    match = re.fullmatch(r"(\d+)(?::(\d+))?", text.strip())
    if match is None:
        raise UsageError(
            f'--owner: expected UID or UID:GID as numbers (e.g. "$(id -u):$(id -g)"), got {text!r}'
        )
    uid, gid = int(match[1]), int(match[2]) if match[2] else -1
    mine = uid == os.geteuid() and gid in (-1, os.getegid(), *os.getgroups())
    if os.geteuid() != 0 and not mine:
        raise UsageError(
            f"--owner {text}: only root can give files to another user"
            " (docker exec runs as root when -u is not given)"
        )
    return uid, gid


def _give_to(target: Path, uid: int, gid: int) -> None:
    """``target`` and everything below it to ``uid:gid``; symlinks themselves, never
    what they point to."""
    os.lchown(target, uid, gid)
    for folder, dirs, files in os.walk(target):  # does not descend into symlinked folders
        for name in (*dirs, *files):
            os.lchown(os.path.join(folder, name), uid, gid)


def _below(target: Path, snapshot_path: str) -> Path:
    """Where a snapshot's absolute path lands below the restore target."""
    return target / snapshot_path.lstrip("/")


def _inside(path: Path, target: Path) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(target):
        raise BackupctlError(f"refusing to write outside the restore target: {path}")
    return resolved


@click.command()
@click.argument("project", shell_complete=complete_projects)
@click.argument("snapshot")
@click.argument("target", type=click.Path(path_type=Path, file_okay=False))
@click.option("--only", type=click.Choice(["db", "assets"]), help="Only the dump or the assets.")
@click.option("--decompress", is_flag=True, help="Decrypt and decompress dumps next to them.")
@click.option("--guide", is_flag=True, help="Print the commands that import the dump.")
@click.option(
    "--owner",
    metavar="UID[:GID]",
    help="Give TARGET and all it holds to this user (as root, e.g. in Docker).",
)
@click.pass_obj
def restore(
    context: CliContext,
    project: str,
    snapshot: str,
    target: Path,
    only: str | None,
    decompress: bool,
    guide: bool,
    owner: str | None,
) -> None:
    """Extract SNAPSHOT (an id or 'latest') of PROJECT into the empty folder TARGET."""
    new_owner = _owner(owner)
    settings = context.checked_project(project)
    plugins = context.registry.for_project(settings, context.config.settings)
    steps = plan_restore(plugins.snapshots(), snapshot, only, project)  # type: ignore[arg-type]
    target = _prepare_target(target)
    try:
        _restore_into(plugins, steps, target, project, decompress, guide)
    finally:  # what was written, also when the restore failed half-way
        if new_owner is not None:
            _give_to(target, *new_owner)
            click.echo(f"owner of {target} and all it holds: {owner}")


def _restore_into(
    plugins: ProjectPluginSet,
    steps: list[RestoreStep],
    target: Path,
    project: str,
    decompress: bool,
    guide: bool,
) -> None:
    snapshot_of: dict[Path, str] = {}  # each restored file -> the snapshot it came from
    for step in steps:
        click.echo(f"restoring snapshot {step.snapshot_id} into {target}")
        for path in plugins.restore(step.snapshot_id, target, step.include):
            snapshot_of.setdefault(path, step.snapshot_id)
    restored = sorted(snapshot_of)  # a plugin may report a file twice; handle it once
    dumps = dumps_among(restored, project)
    click.echo(f"{len(restored)} file(s) restored, {len(dumps)} dump(s)")
    missing = missing_after_restore(steps, lambda path: os.path.lexists(_below(target, path)))
    if missing:
        raise BackupctlError(
            f"the restore is incomplete: {len(missing)} path(s) of the snapshot are not in"
            f" {target}: {', '.join(missing)}"
        )
    for dump in dumps:
        # A directory dump came with its files: the snapshot of the first one.
        snapshot_id = snapshot_of.get(dump) or next(
            snapshot_of[path] for path in restored if dump in path.parents
        )
        if not (decompress or guide):
            click.echo(f"  dump: {dump}")
            continue
        if decompress and dump.suffix == ".gpg":
            dump = _inside(plugins.decrypt(dump), target)
            click.echo(f"  decrypted: {dump}")
            manifest = manifest_path(dump)
            encrypted = manifest.with_name(manifest.name + ".gpg")
            if encrypted.exists():  # the guide reads the database's settings from it
                _inside(plugins.decrypt(encrypted), target)
        if decompress:
            plain = plugins.decompress(dump)
            if plain is not None:
                click.echo(f"  decompressed: {_inside(plain, target)}")
        if guide:
            if dump.suffix == ".gpg":
                click.echo(f"  {dump.name} is encrypted: restore with --decompress to decrypt it")
                continue
            click.echo(f"\nTo import {dump.name}:")
            for command in plugins.restore_guide(dump, snapshot_id):
                click.echo(f"  {command}")
