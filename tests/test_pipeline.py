"""The pipeline with test plugins loaded through the real plugin manager, a
real SQLite audit store, real lock files and real shell hooks."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backupctl_core.domain.errors import LockHeldError, PluginError
from backupctl_core.domain.events import daily_summary_event
from backupctl_core.domain.records import RunStatus
from backupctl_core.domain.stages import Stage
from backupctl_core.runtime.lock import ProjectLock
from backupctl_core.runtime.runner import run_project
from tests.support.recording_plugin import recorder
from tests.support.workspace import Workspace, recording_registry


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    recorder.reset()
    return Workspace(tmp_path)


def project(name: str = "app", **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": name,
        "database": {"type": "recording", "name": "appdb", "password": "s3cr3t-pw"},
        "restic": {"repository_path": "/repo/app", "password": "repo-pw"},
    }
    data.update(overrides)
    return data


def now() -> datetime:
    return datetime.now(UTC)


def run(ws: Workspace, name: str = "app", **kwargs: object):
    config = ws.load()
    store = ws.store()
    stages: list[Stage] = []
    outcome = run_project(
        config,
        config.project(name),
        recording_registry(),
        store,
        on_stage=stages.append,
        **kwargs,  # type: ignore[arg-type]
    )
    return outcome, stages, store


def test_stages_run_in_spec_order_and_are_recorded(ws: Workspace) -> None:
    ws.write_config([project(hooks={"pre_backup": "true", "post_backup": "true"})])
    seen_in_db: list[str | None] = []

    def read_stage(**_: object) -> None:
        seen_in_db.append(store_ref[0].history("app", 1)[0].current_stage)

    store_ref = [ws.store()]
    recorder.during["dump"] = read_stage
    recorder.during["sync"] = read_stage
    outcome, stages, store = run(ws)

    assert outcome.ok
    assert stages == [
        Stage.NOTIFY_STARTED, Stage.PRE_HOOK, Stage.DUMP, Stage.VERIFY, Stage.SYNC,
        Stage.PRUNE, Stage.CLEANUP, Stage.POST_HOOK, Stage.FINALIZE, Stage.NOTIFY_RESULT,
    ]  # fmt: skip
    # current_stage was written to the audit row while each stage ran
    assert seen_in_db == ["dump", "sync"]
    assert recorder.hooks_called == ["dump", "verify", "sync", "prune"]
    row = store.history("app", 1)[0]
    assert row.status is RunStatus.SUCCESS
    assert row.current_stage == "finalize"
    assert row.completed_at is not None and row.duration_ms is not None
    assert row.verified is True and row.encrypted is False
    assert row.snapshot_id == recorder.snapshots[0].snapshot_id
    assert row.prune_snapshots_removed == 1
    assert row.dump_size_bytes == len("dump of appdb\n")


def test_plugins_run_sessions_span_the_dump_to_the_last_step(ws: Workspace) -> None:
    ws.write_config([project()])
    outcome, _, _ = run(ws)
    assert outcome.ok
    assert recorder.session_log == [
        "open before 0 calls",
        "close after ['dump', 'verify', 'sync', 'prune']",
    ]


def test_a_run_session_that_fails_to_open_costs_only_a_warning(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    ws.write_config([project()])
    recorder.session_error = OSError("no control socket here")
    outcome, _, _ = run(ws)
    assert outcome.ok and recorder.hooks_called == ["dump", "verify", "sync", "prune"]
    assert "plugin 'restic': run session not opened: no control socket here" in (caplog.text)


def test_combined_mode_syncs_dump_and_assets_in_one_snapshot(ws: Workspace, tmp_path: Path) -> None:
    asset = tmp_path / "uploads"
    asset.mkdir()
    ws.write_config([project(assets={"paths": [str(asset)]})])
    outcome, _, _ = run(ws)
    assert outcome.ok
    (sync_call,) = [kw for name, kw in recorder.calls if name == "sync"]
    assert sync_call["tags"] == ["project:app", "backupctl:combined"]
    assert sync_call["paths"][1] == asset
    assert sync_call["paths"][0].name.startswith("app_backup_")


def test_separate_mode_makes_one_snapshot_per_source(ws: Workspace, tmp_path: Path) -> None:
    assets = [tmp_path / "a", tmp_path / "b"]
    for path in assets:
        path.mkdir()
    restic = {"repository_path": "/r", "password": "x", "snapshot_mode": "separate"}
    ws.write_config([project(assets={"paths": [str(p) for p in assets]}, restic=restic)])
    outcome, _, store = run(ws)
    assert outcome.ok
    tags = [kw["tags"] for name, kw in recorder.calls if name == "sync"]
    assert tags == [
        ["project:app", "backupctl:db"],
        ["project:app", f"backupctl:assets:{assets[0]}"],
        ["project:app", f"backupctl:assets:{assets[1]}"],
    ]
    row = store.history("app", 1)[0]
    assert row.snapshot_id == recorder.snapshots[0].snapshot_id  # the dump's snapshot
    assert row.files_new == 3 and row.bytes_added == 300


def test_a_partial_separate_mode_run_fails_naming_what_is_stored_and_what_is_not(
    ws: Workspace, tmp_path: Path
) -> None:
    assets = [tmp_path / "a", tmp_path / "b"]
    for path in assets:
        path.mkdir()

    def box_full(tags: list[str], **_: object) -> None:
        if tags[-1].endswith(str(assets[1])):
            raise PluginError("disk quota exceeded", retryable=False)

    recorder.during["sync"] = box_full
    restic = {"repository_path": "/r", "password": "repo-pw-7", "snapshot_mode": "separate"}
    ws.write_config([project(assets={"paths": [str(p) for p in assets]}, restic=restic)])
    outcome, _, store = run(ws)
    assert not outcome.ok
    db_snapshot, a_snapshot = (r.snapshot_id for r in recorder.snapshots)
    row = store.history("app", 1)[0]
    assert row.error_stage == "sync"
    assert row.error_message == (
        f"disk quota exceeded; stored: db ({db_snapshot}), assets:{assets[0]} ({a_snapshot});"
        f" not stored: assets:{assets[1]}"
    )


def test_files_only_project_skips_dump_verify_encrypt(ws: Workspace, tmp_path: Path) -> None:
    asset = tmp_path / "docs"
    asset.mkdir()
    ws.write_config(
        [{"name": "files", "assets": {"paths": [str(asset)]}, "restic": {"repository_path": "/r"}}]
    )
    outcome, stages, store = run(ws, "files")
    assert outcome.ok
    assert Stage.DUMP not in stages and Stage.VERIFY not in stages
    assert recorder.hooks_called == ["sync", "prune"]
    row = store.history("files", 1)[0]
    assert row.dump_size_bytes is None and row.verified is False


def test_missing_asset_paths_are_skipped_with_a_warning(
    ws: Workspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    present = tmp_path / "present"
    present.mkdir()
    missing = tmp_path / "missing"
    ws.write_config(
        [
            project(
                assets={"paths": [str(present), str(missing)]},
                notification={"type": "recording"},
            )
        ]
    )
    outcome, _, store = run(ws)
    assert outcome.ok
    (sync_call,) = [kw for name, kw in recorder.calls if name == "sync"]
    assert missing not in sync_call["paths"] and present in sync_call["paths"]
    warning = f"1 asset path missing: {missing}"
    assert f"{warning} (skipped)" in caplog.text
    # Never a silent success: SPEC's warning event, the row, the success message.
    events = {event.type.value: event for event in recorder.events}
    assert list(events) == ["backup_started", "backup_warning", "backup_success"]
    assert warning in events["backup_warning"].text
    assert events["backup_warning"].data["missing_asset_paths"] == [str(missing)]
    assert f"⚠️ Warning: {warning}" in events["backup_success"].text
    assert events["backup_success"].data["warning"] == warning
    assert store.history("app", 1)[0].warning_message == warning
    summary = daily_summary_event(store.finished_since(outcome.record.started_at), now())
    assert f"⚠️ {warning}" in summary.text


def test_a_run_with_every_asset_path_present_has_no_warning(ws: Workspace, tmp_path: Path) -> None:
    ws.write_config(
        [project(assets={"paths": [str(tmp_path)]}, notification={"type": "recording"})]
    )
    outcome, _, store = run(ws)
    assert outcome.ok and store.history("app", 1)[0].warning_message is None
    assert [e.type.value for e in recorder.events] == ["backup_started", "backup_success"]
    assert "warning" not in recorder.events[-1].data


def test_files_only_project_with_no_existing_path_fails_at_sync(ws: Workspace) -> None:
    ws.write_config(
        [{"name": "files", "assets": {"paths": ["/nope/x"]}, "restic": {"repository_path": "/r"}}]
    )
    outcome, _, store = run(ws, "files")
    assert not outcome.ok
    row = store.history("files", 1)[0]
    assert row.error_stage == "sync" and "nothing to back up" in (row.error_message or "")


def test_failing_pre_hook_fails_the_run_before_the_dump(ws: Workspace) -> None:
    ws.write_config([project(hooks={"pre_backup": "echo stopping; exit 7"})])
    outcome, stages, store = run(ws)
    assert not outcome.ok
    assert recorder.hooks_called == []
    row = store.history("app", 1)[0]
    assert row.status is RunStatus.FAILED and row.error_stage == "pre_hook"
    assert "exited with 7" in (row.error_message or "")
    assert Stage.POST_HOOK not in stages  # the pre-hook never succeeded


def test_pre_hook_timeout_fails_the_run(ws: Workspace) -> None:
    ws.write_config([project(hooks={"pre_backup": "sleep 30", "timeout_seconds": 1})])
    outcome, _, store = run(ws)
    assert not outcome.ok
    assert "timed out after 1s" in (store.history("app", 1)[0].error_message or "")


def test_a_hook_that_leaves_a_background_process_does_not_stall_the_run(
    ws: Workspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The hook's exit ends the wait; its children are not waited for. (The run used
    to wait for the child, holding the output pipe, until the hook timeout.)"""
    caplog.set_level("INFO", logger="backupctl.hook")
    pid_file = tmp_path / "child.pid"
    hook = f"sleep 60 & echo $! > {pid_file}; echo service started; read line || echo stdin closed"
    ws.write_config([project(hooks={"pre_backup": hook, "timeout_seconds": 20})])
    try:
        outcome, _, _ = run(ws)
        assert outcome.ok, outcome.record.error_message
        assert outcome.record.duration_ms is not None and outcome.record.duration_ms < 15_000
        assert "hook: service started" in caplog.text and "hook: stdin closed" in caplog.text
        child = int(pid_file.read_text())
        assert os.getpgid(child) != os.getpgid(0)  # the hook's own process group
    finally:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_post_hook_runs_after_a_failure_and_sees_the_status(ws: Workspace, tmp_path: Path) -> None:
    marker = tmp_path / "post.txt"
    ws.write_config([project(hooks={"post_backup": f"echo $BACKUPCTL_STATUS > {marker}"})])
    recorder.fail("sync", PluginError("disk on fire", retryable=False))
    outcome, _, _ = run(ws)
    assert not outcome.ok
    assert marker.read_text().strip() == "failed"


def test_lock_is_held_during_the_run_and_released_after(ws: Workspace) -> None:
    ws.write_config([project()])
    lock_dir = ws.base_dir / "app"
    held: list[bool] = []

    def try_lock(**_: object) -> None:
        try:
            ProjectLock(lock_dir, "app").acquire()
            held.append(False)
        except LockHeldError as error:
            held.append(True)
            assert f"PID {__import__('os').getpid()}" in error.message

    recorder.during["sync"] = try_lock
    outcome, _, _ = run(ws)
    assert outcome.ok and held == [True]
    assert not (lock_dir / ".lock").exists()


def test_lock_is_released_when_a_stage_fails(ws: Workspace) -> None:
    ws.write_config([project()])
    recorder.fail("dump", PluginError("boom", retryable=False))
    outcome, _, _ = run(ws)
    assert not outcome.ok
    lock = ProjectLock(ws.base_dir / "app", "app")
    lock.acquire()
    lock.release()


def test_lock_is_released_when_the_audit_store_raises(ws: Workspace) -> None:
    ws.write_config([project()])
    config = ws.load()
    store = ws.store()
    store.finish_run = lambda record: (_ for _ in ()).throw(RuntimeError("db gone"))  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        run_project(config, config.project("app"), recording_registry(), store)
    assert not (ws.base_dir / "app" / ".lock").exists()


def test_retryable_failures_are_retried_and_counted(ws: Workspace) -> None:
    ws.write_config([project()])
    recorder.fail("sync", PluginError("flaky"), PluginError("flaky again"))
    outcome, _, store = run(ws)
    assert outcome.ok
    assert recorder.hooks_called.count("sync") == 3
    assert store.history("app", 1)[0].retry_count == 2


def test_non_retryable_failure_fails_at_once(ws: Workspace) -> None:
    ws.write_config([project()])
    recorder.fail("dump", PluginError("password authentication failed", retryable=False))
    _outcome, _, store = run(ws)
    row = store.history("app", 1)[0]
    assert recorder.hooks_called == ["dump"]
    assert row.error_stage == "dump" and row.retry_count == 0


def test_retries_give_up_after_the_configured_count(ws: Workspace) -> None:
    ws.write_config([project()])
    ws.write_env(BACKUP_RETRY_COUNT="2")
    recorder.fail("sync", *[PluginError("down", connectivity=True) for _ in range(5)])
    outcome, _, store = run(ws)
    assert not outcome.ok and outcome.connectivity_failure
    assert recorder.hooks_called.count("sync") == 3
    row = store.history("app", 1)[0]
    assert row.retry_count == 2 and row.error_stage == "sync"


def test_failed_verification_fails_the_run(ws: Workspace) -> None:
    ws.write_config([project()])
    recorder.verify_ok = False
    _outcome, _, store = run(ws)
    row = store.history("app", 1)[0]
    assert row.error_stage == "verify" and "corrupt" in (row.error_message or "")
    assert "sync" not in recorder.hooks_called


def test_verification_can_be_disabled(ws: Workspace) -> None:
    ws.write_config([project(verification={"enabled": False})])
    outcome, _, store = run(ws)
    assert outcome.ok and "verify" not in recorder.hooks_called
    assert store.history("app", 1)[0].verified is False


def test_passwords_never_reach_the_audit_row(ws: Workspace) -> None:
    ws.write_config([project()])
    recorder.fail("dump", PluginError("login with s3cr3t-pw refused", retryable=False))
    run(ws)
    row = ws.store().history("app", 1)[0]
    assert "s3cr3t-pw" not in (row.error_message or "")
    assert "********" in (row.error_message or "")


def test_cleanup_removes_dumps_older_than_local_days(ws: Workspace) -> None:
    import os
    import time

    ws.write_config([project(retention={"local_days": 2})])
    folder = ws.base_dir / "app"
    folder.mkdir(parents=True)
    old = folder / "app_backup_20200101_000000_abcd.txt"
    recent = folder / "app_backup_20990101_000000_abcd.txt"
    unrelated = folder / "notes.txt"
    for path in (old, recent, unrelated):
        path.write_text("x")
    old_folder = folder / "app_backup_20200102_000000_abcd.dir"  # a database.jobs dump
    old_folder.mkdir()
    (old_folder / "toc.dat").write_text("x")
    three_days_ago = time.time() - 3 * 86400
    for path in (old, old_folder):
        os.utime(path, (three_days_ago, three_days_ago))
    outcome, _, store = run(ws)
    assert outcome.ok
    assert not old.exists() and recent.exists() and unrelated.exists()
    assert not old_folder.exists()
    assert store.history("app", 1)[0].local_files_cleaned == 2


def test_dump_files_are_named_as_reference_says(ws: Workspace) -> None:
    import re

    ws.write_config([project()])
    run(ws)
    (dump_call,) = [kw for name, kw in recorder.calls if name == "dump"]
    stem: Path = dump_call["target_stem"]
    assert stem.parent == ws.base_dir / "app"
    assert re.fullmatch(r"app_backup_\d{8}_\d{6}_[0-9a-f]{4}", stem.name)
