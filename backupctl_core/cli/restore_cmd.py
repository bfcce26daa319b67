"""``backupctl restore``: files only, never an import (SPEC non-goal)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from backupctl_core.cli.completion import complete_projects
from backupctl_core.cli.context import CliContext
from backupctl_core.domain.drill import manifest_path
from backupctl_core.domain.errors import BackupctlError
from backupctl_core.domain.restore import is_dump_path, missing_after_restore, plan_restore


def _prepare_target(target: Path) -> Path:
    target = target.absolute()
    if target.exists():
        if not target.is_dir():
            raise BackupctlError(f"restore target {target} exists and is not a folder")
        if any(target.iterdir()):
            raise BackupctlError(f"restore target {target} is not empty")
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    return target.resolve()


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
@click.pass_obj
def restore(
    context: CliContext,
    project: str,
    snapshot: str,
    target: Path,
    only: str | None,
    decompress: bool,
    guide: bool,
) -> None:
    """Extract SNAPSHOT (an id or 'latest') of PROJECT into the empty folder TARGET."""
    settings = context.checked_project(project)
    plugins = context.registry.for_project(settings, context.config.settings)
    steps = plan_restore(plugins.snapshots(), snapshot, only, project)  # type: ignore[arg-type]
    target = _prepare_target(target)
    snapshot_of: dict[Path, str] = {}  # each restored file -> the snapshot it came from
    for step in steps:
        click.echo(f"restoring snapshot {step.snapshot_id} into {target}")
        for path in plugins.restore(step.snapshot_id, target, step.include):
            snapshot_of.setdefault(path, step.snapshot_id)
    restored = sorted(snapshot_of)  # a plugin may report a file twice; handle it once
    dumps = [p for p in restored if is_dump_path(p.name, project)]
    click.echo(f"{len(restored)} file(s) restored, {len(dumps)} dump(s)")
    missing = missing_after_restore(steps, lambda path: os.path.lexists(_below(target, path)))
    if missing:
        raise BackupctlError(
            f"the restore is incomplete: {len(missing)} path(s) of the snapshot are not in"
            f" {target}: {', '.join(missing)}"
        )
    for dump in dumps:
        snapshot_id = snapshot_of[dump]
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
