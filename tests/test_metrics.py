"""``GET /metrics``: scraped from a real ``backupctl serve`` after real runs (the
sqlite dumper, a local restic repository), parsed with prometheus_client's own
parser, and compared with the audit rows; ``backupctl_running`` during a CLI run;
``backupctl_audit_store_up`` 0 while the store is down or not migrated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from backupctl_core.domain.records import RunRecord, RunStatus
from backupctl_core.plugins import get_plugin_manager
from backupctl_core.runtime.http_api import Text
from backupctl_core.runtime.runner import PAUSE_ENV
from backupctl_core.runtime.service import BackupService
from backupctl_core.testing.notify_servers import free_port
from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace

BACKUPCTL = str(Path(sys.executable).with_name("backupctl"))
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def backupctl(ws: Workspace, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BACKUPCTL, *ws.cli_args(), *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, **env},
    )  # fmt: skip


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path)
    workspace.write_env(RESTIC_PASSWORD="metrics-pw")
    make_sqlite_db(tmp_path / "shop.sqlite")
    workspace.write_config(
        [
            sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo"),
            sqlite_project("gone", tmp_path / "missing.sqlite", tmp_path / "repo2"),
            sqlite_project("idle", tmp_path / "shop.sqlite", tmp_path / "repo3"),
        ]
    )
    assert backupctl(workspace, "db", "migrate").returncode == 0
    return workspace


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def of(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def project_names(samples: Samples, name: str) -> set[str]:
    return {dict(labels)["project"] for (metric, labels) in samples if metric == name}


@pytest.fixture
def serve(ws: Workspace) -> Iterator[int]:
    """A real ``backupctl serve`` on a free port; yields the port."""
    port = free_port()
    ws.write_env(APP_PORT=str(port))
    process = subprocess.Popen(
        [BACKUPCTL, *ws.cli_args(), "serve"], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).close()
                break
            except urllib.error.HTTPError:
                break  # it answers: 503, as project "gone" has no database to back up
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        yield port
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        return response.headers["Content-Type"], parse(response.read().decode())


def ended(record: RunRecord) -> float:
    assert record.completed_at is not None
    return record.completed_at.timestamp()


def test_metrics_from_a_running_serve_match_the_audit_rows(ws: Workspace, serve: int) -> None:
    for project in ("shop", "shop", "gone"):
        backupctl(ws, "run", project)
    assert backupctl(ws, "drill", "shop").returncode == 0  # a drill is not a run
    (ws.root / "shop.sqlite").rename(ws.root / "away.sqlite")
    backupctl(ws, "run", "shop")  # shop's newest run fails
    content_type, samples = scrape(serve)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"

    store = ws.store()
    shop = store.history("shop")
    (gone,) = store.history("gone")
    assert [r.status for r in shop] == [RunStatus.FAILED, RunStatus.SUCCESS, RunStatus.SUCCESS]
    assert gone.status is RunStatus.FAILED
    failed, success = shop[0], shop[1]
    assert success.dump_size_bytes and success.bytes_added is not None
    assert failed.duration_ms is not None and ended(failed) > ended(success)
    expected = {
        "backupctl_last_success_timestamp_seconds": ended(success),
        "backupctl_last_run_timestamp_seconds": ended(failed),
        "backupctl_last_run_duration_seconds": failed.duration_ms / 1000,
        "backupctl_last_dump_size_bytes": success.dump_size_bytes,
        "backupctl_last_bytes_added": success.bytes_added,
    }
    for name, value in expected.items():
        assert of(samples, name, project="shop") == pytest.approx(value, abs=1e-6), name
    (drill,) = store.drill_history("shop")
    for name in ("backupctl_last_drill_timestamp_seconds",
                 "backupctl_last_drill_success_timestamp_seconds"):  # fmt: skip
        assert of(samples, name, project="shop") == pytest.approx(drill.started_at.timestamp())
    assert project_names(samples, "backupctl_last_drill_timestamp_seconds") == {"shop"}
    assert of(samples, "backupctl_runs_total", project="shop", status="success") == 2
    assert of(samples, "backupctl_runs_total", project="shop", status="failed") == 1
    # a project that only failed: its last run, but no success and no dump size
    assert of(samples, "backupctl_runs_total", project="gone", status="failed") == 1
    assert of(samples, "backupctl_last_run_timestamp_seconds", project="gone") == pytest.approx(
        ended(gone), abs=1e-6
    )
    assert of(samples, "backupctl_last_run_duration_seconds", project="gone") == (
        pytest.approx((gone.duration_ms or 0) / 1000)
    )
    assert of(samples, "backupctl_last_success_timestamp_seconds", project="gone") is None
    assert of(samples, "backupctl_last_dump_size_bytes", project="gone") is None
    # a project that never ran: counts of 0 and nothing made up
    assert of(samples, "backupctl_runs_total", project="idle", status="success") == 0
    assert project_names(samples, "backupctl_last_run_timestamp_seconds") == {"shop", "gone"}
    for project in ("shop", "gone", "idle"):
        assert of(samples, "backupctl_running", project=project) == 0
    assert of(samples, "backupctl_audit_store_up") == 1

    # the values come from the store: another run shows at the next scrape
    backupctl(ws, "run", "gone")
    _, again = scrape(serve)
    assert of(again, "backupctl_runs_total", project="gone", status="failed") == 2
    assert of(again, "backupctl_runs_total", project="shop", status="failed") == 1


def test_running_is_1_while_a_cli_run_holds_the_project(ws: Workspace, tmp_path: Path) -> None:
    service = BackupService(ws.config_path, ws.env_path, get_plugin_manager())
    marker = tmp_path / "paused"
    process = subprocess.Popen(
        [BACKUPCTL, *ws.cli_args(), "run", "shop"],
        env={**os.environ, PAUSE_ENV: "sync", PAUSE_ENV + "_MARKER": str(marker)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        samples = metrics(service)
        assert of(samples, "backupctl_running", project="shop") == 1
        assert of(samples, "backupctl_running", project="idle") == 0
        # the run is in the store as started: not counted until it finishes
        assert of(samples, "backupctl_runs_total", project="shop", status="success") == 0
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert (ws.base_dir / "shop" / ".lock").exists()  # left by the killed run
    assert of(metrics(service), "backupctl_running", project="shop") == 0
    service.store.close()


def metrics(service: BackupService) -> Samples:
    status, body = service.route("/metrics")
    assert status == 200 and isinstance(body, Text)
    return parse(body.body)


def test_a_store_that_is_down_is_audit_store_up_0_not_an_error(ws: Workspace) -> None:
    ws.write_env(AUDIT_DB_HOST="127.0.0.1", AUDIT_DB_PORT=str(free_port()))
    service = BackupService(ws.config_path, ws.env_path, get_plugin_manager())
    samples = metrics(service)
    assert of(samples, "backupctl_audit_store_up") == 0
    assert of(samples, "backupctl_running", project="shop") == 0
    assert {name for name, _ in samples} == {"backupctl_audit_store_up", "backupctl_running"}
    assert service.route("/status")[0] == 503  # the JSON endpoints say so their way


def test_an_unmigrated_store_is_audit_store_up_0(ws: Workspace) -> None:
    ws.write_env(AUDIT_DB_SQLITE_PATH=str(ws.root / "fresh" / "audit.db"))
    service = BackupService(ws.config_path, ws.env_path, get_plugin_manager())
    assert of(metrics(service), "backupctl_audit_store_up") == 0
    service.store.migrate()
    after = metrics(service)
    assert of(after, "backupctl_audit_store_up") == 1
    assert of(after, "backupctl_runs_total", project="shop", status="success") == 0
