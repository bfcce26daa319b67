"""Wiring a restore drill: restore into a scratch folder, decrypt, import into a
scratch database, compare, clean up, record, notify.

The comparisons live in ``domain.drill``; this module owns the files: the scratch
folder is removed whatever the result, as the scratch database is dropped.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

from backupctl_core.audit.store import AuditStore
from backupctl_core.config.loader import AppConfig
from backupctl_core.domain.drill import (
    DrillReport,
    DumpManifest,
    import_and_compare,
    is_manifest,
    manifest_path,
    scratch_database_name,
)
from backupctl_core.domain.errors import BackupctlError, PluginError
from backupctl_core.domain.events import drill_event
from backupctl_core.domain.restore import (
    dumps_among,
    missing_after_restore,
    plan_restore,
)
from backupctl_core.domain.settings import ProjectSettings
from backupctl_core.plugin_kit import make_private_dir
from backupctl_core.plugins import PluginRegistry, ProjectPluginSet
from backupctl_core.runtime.notifier import Notifier

log = logging.getLogger("backupctl.drill")
DRILL_ROOT = ".drill"


def run_drill(
    config: AppConfig,
    project: ProjectSettings,
    registry: PluginRegistry,
    store: AuditStore,
    snapshot: str = "latest",
    on_step: Callable[[str], None] = lambda step: None,
) -> DrillReport:
    """Drill, record the result in the audit store, notify: ``drill`` and ``serve``.

    A store that cannot take the row does not change the result: it is logged."""
    settings = config.settings
    plugins = registry.for_project(project, settings)
    report = drill_project(project, plugins, settings.backup_base_dir, snapshot, on_step)
    completed = datetime.now(UTC)
    log.info("%s: restore drill %s", project.name, report.summary())
    try:
        store.record_drill(report, completed)
    except BackupctlError as error:
        log.warning("%s: drill not recorded: %s", project.name, error.message)
    event = drill_event(report, completed.astimezone(ZoneInfo(settings.timezone)))
    Notifier(config, registry).for_project(project)(event)
    return report


def drill_project(
    project: ProjectSettings,
    plugins: ProjectPluginSet,
    base_dir: Path,
    snapshot: str = "latest",
    on_step: Callable[[str], None] = lambda step: None,
) -> DrillReport:
    """Drill ``snapshot`` of ``project``; nothing of it is left behind on disk."""
    started = datetime.now(UTC)
    tick = time.monotonic()
    report = DrillReport(project.name, "", started)
    workdir = make_private_dir(base_dir / DRILL_ROOT / f"{project.name}-{os.getpid()}")
    try:
        _drill(report, project, plugins, workdir, snapshot, started, on_step)
    except (BackupctlError, PluginError) as error:
        report.add("restore", False, getattr(error, "message", str(error)))
    except OSError as error:
        report.add("restore", False, str(error))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if workdir.exists():
            report.add("cleanup", False, f"scratch folder {workdir} not removed")
        report.duration_ms = int((time.monotonic() - tick) * 1000)
    return report


def _drill(
    report: DrillReport,
    project: ProjectSettings,
    plugins: ProjectPluginSet,
    workdir: Path,
    snapshot: str,
    started: datetime,
    on_step: Callable[[str], None],
) -> None:
    steps = plan_restore(plugins.snapshots(), snapshot, None, project.name)
    report.snapshot_id = ",".join(dict.fromkeys(step.snapshot_id for step in steps))
    restored: list[Path] = []
    missing: list[str] = []
    counted = [0, 0, 0, 0]  # entries restored, bytes, entries and bytes the storage holds
    uncounted = False
    for number, step in enumerate(steps):
        # One folder per snapshot: separate mode's snapshots share parent folders,
        # and each must be compared with its own count.
        target = make_private_dir(workdir / "restore" / str(number))
        on_step(f"restoring snapshot {step.snapshot_id}")
        restored += plugins.restore(step.snapshot_id, target, step.include)
        missing += missing_after_restore([step], partial(_restored_below, target))
        entries, size = _tree_size(target)
        counted[0] += entries
        counted[1] += size
        stats = plugins.snapshot_stats(step.snapshot_id)
        uncounted = uncounted or stats is None
        if stats is not None:
            counted[2] += stats[0]
            counted[3] += stats[1]
    report.restored_bytes = counted[1]
    if missing:
        report.add("restore", False, f"{len(missing)} path(s) missing: {', '.join(missing)}")
        return
    report.add("restore", True, f"{counted[0]} entries, {counted[1]} bytes")
    if uncounted:
        report.add("files", False, "the storage plugin cannot count a snapshot's entries")
        return
    same = counted[:2] == counted[2:]
    report.add(
        "files",
        same,
        f"{counted[0]} entries, {counted[1]} bytes as in the snapshot"
        if same
        else f"restored {counted[0]} entries, {counted[1]} bytes; the snapshot holds"
        f" {counted[2]} entries, {counted[3]} bytes",
    )
    if project.database is None:
        return
    dumps = dumps_among(restored, project.name)
    if len(dumps) != 1:
        report.add("dump", False, f"the snapshot holds {len(dumps)} dump(s), expected one")
        return
    dump = dumps[0]
    manifest = _read_manifest(plugins, dump)
    if dump.suffix == ".gpg":
        on_step(f"decrypting {dump.name}")
        dump = plugins.decrypt(dump)
    name = scratch_database_name(project.database.name or project.name, started)
    scratch = plugins.scratch_database(name, make_private_dir(workdir / "scratch"))
    checks = project.drill.checks if project.drill else ()
    import_and_compare(report, scratch, dump, manifest, checks, on_step)


def _read_manifest(plugins: ProjectPluginSet, dump: Path) -> DumpManifest | None:
    plain_dump = dump.with_suffix("") if dump.suffix == ".gpg" else dump
    path = manifest_path(plain_dump)
    encrypted = path.with_name(path.name + ".gpg")
    if encrypted.exists():
        path = plugins.decrypt(encrypted)
    if not path.exists() or not is_manifest(path.name):
        return None
    return DumpManifest.from_json(path.read_text(encoding="utf-8"))


def _restored_below(target: Path, snapshot_path: str) -> bool:
    return os.path.lexists(target / snapshot_path.lstrip("/"))


def _tree_size(root: Path) -> tuple[int, int]:
    """Entries below ``root`` (folders, files, links: what restic's restore-size
    counts) and the total size of the regular files."""
    entries = size = 0
    for folder, folders, names in os.walk(root):
        entries += len(folders) + len(names)
        for name in names:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink():
                size += path.stat().st_size
    return entries, size
