"""``GET /metrics``: the audit store as Prometheus metrics (text format 0.0.4).

Values are read from the audit store at every scrape, so they survive restarts and
include runs started from the CLI. prometheus_client is imported with this module,
which the service imports on the first scrape: no other command pays for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from backupctl_core.audit.store import AuditStore
from backupctl_core.domain.drill import DrillSummary
from backupctl_core.domain.errors import BackupctlError
from backupctl_core.domain.records import RunRecord, RunStatus

log = logging.getLogger("backupctl.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FINISHED = (RunStatus.SUCCESS, RunStatus.FAILED)

# name -> help; every per-project metric has the label ``project``
LAST_SUCCESS = "backupctl_last_success_timestamp_seconds"
LAST_RUN = "backupctl_last_run_timestamp_seconds"
LAST_DURATION = "backupctl_last_run_duration_seconds"
LAST_DUMP_SIZE = "backupctl_last_dump_size_bytes"
LAST_BYTES_ADDED = "backupctl_last_bytes_added"
LAST_DRILL = "backupctl_last_drill_timestamp_seconds"
LAST_DRILL_SUCCESS = "backupctl_last_drill_success_timestamp_seconds"
HELP = {
    LAST_SUCCESS: "When the project's newest successful run ended (Unix time).",
    LAST_RUN: "When the project's newest finished run (success or failed) ended (Unix time).",
    LAST_DURATION: "How long the project's newest finished run took.",
    LAST_DUMP_SIZE: "Dump size of the project's newest successful run (projects with a database).",
    LAST_BYTES_ADDED: "Bytes the project's newest successful run added to the repository.",
    LAST_DRILL: "When the project's newest restore drill (passed or failed) started (Unix time).",
    LAST_DRILL_SUCCESS: "When the project's newest passed restore drill started (Unix time).",
}


class AuditCollector(Collector):
    """The metric families of one scrape, for the projects ``projects()`` names now
    (a config reload changes them); ``running(project)`` says whether one runs."""

    def __init__(
        self,
        store: AuditStore,
        projects: Callable[[], Sequence[str]],
        running: Callable[[str], bool],
    ) -> None:
        self.store = store
        self.projects = projects
        self.running = running

    def describe(self) -> Iterator[Metric]:
        """Names only, so that registering does not query the store."""
        for name, text in HELP.items():
            yield GaugeMetricFamily(name, text, labels=["project"])
        yield CounterMetricFamily("backupctl_runs", "", labels=["project", "status"])
        yield GaugeMetricFamily("backupctl_running", "", labels=["project"])
        yield GaugeMetricFamily("backupctl_audit_store_up", "")

    def collect(self) -> Iterator[Metric]:
        names = list(self.projects())
        running = GaugeMetricFamily(
            "backupctl_running", "1 while a backup of the project runs, else 0.",
            labels=["project"],
        )  # fmt: skip
        for name in names:
            running.add_metric([name], 1.0 if self.running(name) else 0.0)
        yield running
        up = GaugeMetricFamily(
            "backupctl_audit_store_up",
            "1 when the audit store answers and is migrated; 0 and no run metrics otherwise.",
        )
        try:
            self.store.ensure_migrated()
            latest = self.store.latest_by_status(names, FINISHED)
            counts = self.store.status_counts(names)
            drills = self.store.latest_drills(names)
        except BackupctlError as error:
            log.debug("metrics without the audit store: %s", error.message)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from self._runs(names, latest, counts, drills)

    @staticmethod
    def _runs(
        names: list[str],
        latest: dict[str, dict[RunStatus, RunRecord]],
        counts: dict[str, dict[RunStatus, int]],
        drills: dict[str, DrillSummary],
    ) -> Iterator[Metric]:
        gauges = {name: GaugeMetricFamily(name, text, labels=["project"])
                  for name, text in HELP.items()}  # fmt: skip
        runs = CounterMetricFamily(
            "backupctl_runs", "Finished runs of the project, by status.",
            labels=["project", "status"],
        )  # fmt: skip
        for name in names:
            for status in FINISHED:
                runs.add_metric([name, status.value], counts.get(name, {}).get(status, 0))
            newest = latest.get(name, {})
            success = newest.get(RunStatus.SUCCESS)
            last = max(newest.values(), key=lambda r: r.started_at, default=None)
            drill = drills.get(name)
            passed = drill.last_success if drill else None
            values: dict[str, float | None] = {
                LAST_SUCCESS: _ended(success),
                LAST_RUN: _ended(last),
                LAST_DURATION: _seconds(last.duration_ms if last else None),
                LAST_DUMP_SIZE: success.dump_size_bytes if success else None,
                LAST_BYTES_ADDED: success.bytes_added if success else None,
                LAST_DRILL: drill.started_at.timestamp() if drill else None,
                LAST_DRILL_SUCCESS: passed.timestamp() if passed else None,
            }
            for metric, value in values.items():
                if value is not None:  # no sample rather than a made-up 0
                    gauges[metric].add_metric([name], float(value))
        yield from gauges.values()
        yield runs


def _ended(record: RunRecord | None) -> float | None:
    if record is None:
        return None
    return (record.completed_at or record.started_at).timestamp()


def _seconds(ms: int | None) -> float | None:
    return ms / 1000 if ms is not None else None


class Metrics:
    """A ``CollectorRegistry`` of its own (not prometheus_client's global one)."""

    def __init__(
        self,
        store: AuditStore,
        projects: Callable[[], Sequence[str]],
        running: Callable[[str], bool],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(AuditCollector(store, projects, running))

    def render(self) -> str:
        return generate_latest(self.registry).decode()
