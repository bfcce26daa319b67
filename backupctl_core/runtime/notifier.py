"""Delivering events: the project's channel, else the fallback file.

A delivery failure is never a backup failure: the event goes to the JSONL
fallback and is delivered by ``replay`` on the next start (or ``backupctl
recover``). Delivered entries are removed, so nothing is sent twice.
"""

from __future__ import annotations

import logging
from typing import Any
from zoneinfo import ZoneInfo

from backupctl_core.config.loader import AppConfig, env_notification
from backupctl_core.domain.errors import ConfigError
from backupctl_core.domain.events import Event, EventType, failed_event, success_event
from backupctl_core.domain.records import RunStatus
from backupctl_core.domain.settings import NotificationSettings, ProjectSettings, mask
from backupctl_core.plugins import PluginRegistry, secret_config_keys
from backupctl_core.runtime.fallback import FallbackLog
from backupctl_core.runtime.original_fallback import ORIGINAL_PREFIX, record_from_original

log = logging.getLogger("backupctl.notify")
KIND = "notification"


def _event_json(event: Event) -> dict[str, Any]:
    return {"type": event.type.value, "project": event.project, "text": event.text,
            "data": event.data}  # fmt: skip


def _event_from(data: dict[str, Any]) -> Event:
    return Event(EventType(data["type"]), data["project"], data["text"], data.get("data") or {})


class Notifier:
    def __init__(self, config: AppConfig, registry: PluginRegistry) -> None:
        self.config = config
        self.registry = registry
        self.fallback = FallbackLog(config.settings.fallback_file)

    def channel(self, project: ProjectSettings | None) -> NotificationSettings:
        if project is not None and project.notification is not None:
            return project.notification
        return env_notification(self.config.settings)

    def deliver(self, project: ProjectSettings | None, event: Event) -> None:
        """Send now; raise on failure."""
        channel = self.channel(project)
        if channel.type == "none":
            return
        info = self.registry.require("notification", channel.type, "notification.type")
        self.registry.caller_for(info, "backupctl_notify")(
            project=project, settings=self.config.settings, event=event, notification=channel
        )

    def send(self, project: ProjectSettings | None, event: Event) -> bool:
        """Send, or keep for later: True when delivered (or nothing to deliver)."""
        try:
            self.deliver(project, event)
            return True
        except Exception as error:
            # Only the channel's credentials: masking every value hid the SMTP host,
            # port and user an operator needs to fix the failure.
            channel = self.channel(project)
            keys = secret_config_keys("notification", channel.type, channel.config)
            secrets = [str(v) for k, v in channel.config.items() if v and k in keys]
            log.warning(
                "%s: %s notification not delivered (%s); kept in %s",
                event.project, event.type.value, mask(str(error), secrets), self.fallback.path,
            )  # fmt: skip
            self.fallback.append(
                KIND,
                {"project": project.name if project else None, "event": _event_json(event)},
            )
            return False

    def for_project(self, project: ProjectSettings) -> Any:
        """The pipeline's ``notify`` callable for one project."""
        return lambda event: self.send(project, event)

    def replay(self) -> tuple[int, int]:
        """Deliver pending notifications; (delivered, still pending)."""

        def deliver(entry: dict[str, Any]) -> None:
            name = entry.get("project")
            project = None
            if name is not None:
                try:
                    project = self.config.project(name)
                except ConfigError:
                    project = None  # removed from the config: use the global channel
            self.deliver(project, _event_from(entry["event"]))

        ours = self.fallback.replay(KIND, deliver)
        theirs = self.fallback.replay(ORIGINAL_PREFIX + KIND, self._deliver_original)
        return ours[0] + theirs[0], ours[1] + theirs[1]

    def _deliver_original(self, entry: dict[str, Any]) -> None:
        """The original tool's undelivered notice: its run result, as our event."""
        record = record_from_original(entry["payload"]["result"])
        try:
            project: ProjectSettings | None = self.config.project(record.project_name)
        except ConfigError:
            project = None
        zone = ZoneInfo(self.config.settings.timezone)
        local_end = (record.completed_at or record.started_at).astimezone(zone)
        if record.status is RunStatus.SUCCESS:
            db_name = project.database.name if project and project.database else None
            event = success_event(record, db_name, local_end)
        else:
            event = failed_event(record, self.config.settings.retry_count, local_end)
        self.deliver(project, event)
