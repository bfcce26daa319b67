"""The plugin manager: entry points + built-in plugins, narrowed per project.

``get_plugin_manager()`` loads every ``backupctl`` entry point, then the
built-in plugins, so core features travel through the same hooks as
third-party ones. A plugin that fails to import or to register is recorded
as broken, by name, and never takes unrelated commands down with it.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import pluggy
from attrs import define, field

from backupctl_core import hookspecs
from backupctl_core.domain.artifacts import (
    CacheInfo,
    CheckResult,
    DumpArtifact,
    PluginType,
    PruneResult,
    Reclaim,
    Snapshot,
    SyncResult,
    VerifyResult,
)
from backupctl_core.domain.drill import DumpManifest, ScratchDatabase
from backupctl_core.domain.errors import ConfigError, PluginError
from backupctl_core.domain.monitor import Ping
from backupctl_core.domain.settings import GlobalSettings, ProjectSettings

log = logging.getLogger("backupctl.plugins")

ENTRY_POINT_GROUP = "backupctl"
# A validate_config line starting with this is a warning: config validate prints it,
# nothing fails (e.g. a monitor that cannot ping, which never fails a backup either).
WARNING = "warning: "
# Modules inside backupctl-core registered like any third-party plugin.
BUILTIN_PLUGINS: tuple[str, ...] = ("backupctl_core.builtin.gpg",)

# Which distribution to install for a type nobody provides yet.
KNOWN_DISTRIBUTIONS = {
    ("database", "postgres"): "backupctl-postgres",
    ("database", "mysql"): "backupctl-mysql",
    ("database", "mongo"): "backupctl-mongo",
    ("database", "sqlite"): "backupctl-sqlite",
    ("storage", "restic"): "backupctl-restic",
    ("storage", "borg"): "backupctl-borg",
    ("notification", "slack"): "backupctl-slack",
    ("notification", "email"): "backupctl-email",
    ("notification", "webhook"): "backupctl-webhook",
    ("monitor", "uptime-kuma"): "backupctl-uptime-kuma",
    ("monitor", "healthchecks"): "backupctl-healthchecks",
    ("encryption", "gpg"): "backupctl-core",
}


@define
class PluginInfo:
    name: str
    distribution: str
    version: str
    types: list[PluginType] = field(factory=list)
    hooks: list[str] = field(factory=list)
    error: str | None = None
    plugin: object | None = field(default=None, repr=False)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "provides": [f"{t.kind}:{t.name}" for t in self.types],
            "hooks": self.hooks,
        }
        if self.error:
            data["error"] = self.error
        return data


def _entry_point_dist(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"] or dist.name, dist.version


class PluginRegistry:
    """The loaded plugins and which one provides each (kind, name).

    It may start with some entry points not loaded yet (``pending``: a command that
    needs a few plugins imports only those); asking for a type none of the loaded
    ones provides, or for the whole list (``infos``), loads the rest first."""

    def __init__(
        self,
        manager: pluggy.PluginManager,
        infos: list[PluginInfo],
        pending: Sequence[EntryPoint] = (),
    ) -> None:
        self.manager = manager
        self._infos = infos
        self._pending = list(pending)
        self._providers: dict[tuple[str, str], PluginInfo] = {}
        for info in infos:
            self._add(info)

    def _add(self, info: PluginInfo) -> None:
        for ptype in info.types:
            self._providers.setdefault((ptype.kind, ptype.name), info)

    def _load_pending(self) -> None:
        pending, self._pending = self._pending, []
        for ep in pending:
            info = _register_entry_point(self.manager, ep)
            self._infos.append(info)
            self._add(info)

    @property
    def infos(self) -> list[PluginInfo]:
        """Every installed plugin (all loaded now)."""
        self._load_pending()
        return self._infos

    @property
    def broken(self) -> list[PluginInfo]:
        return [info for info in self.infos if info.error]

    def provider(self, kind: str, name: str) -> PluginInfo | None:
        found = self._providers.get((kind, name))
        if found is None and self._pending:
            self._load_pending()
            found = self._providers.get((kind, name))
        return found

    def types(self, kind: str) -> list[str]:
        self._load_pending()
        return sorted(name for (k, name) in self._providers if k == kind)

    def require(self, kind: str, name: str, key: str) -> PluginInfo:
        info = self.provider(kind, name)
        if info is not None:
            return info
        dist = KNOWN_DISTRIBUTIONS.get((kind, name))
        hint = f"pip install {dist}" if dist else "install a plugin that provides it"
        known = ", ".join(self.types(kind)) or "none installed"
        broken = next((b for b in self.broken if b.name == name), None)
        extra = f" (plugin '{name}' is installed but broken: {broken.error})" if broken else ""
        raise ConfigError(
            f"{key}: no installed plugin provides {kind} type '{name}'{extra};"
            f" {hint} (available: {known})"
        )

    def project_plugins(self, project: ProjectSettings) -> dict[str, PluginInfo]:
        """The plugins a project enables, by role; ``ConfigError`` if one is missing."""
        prefix = f"projects[{project.name}]"
        enabled: dict[str, PluginInfo] = {
            "storage": self.require("storage", project.storage.type, f"{prefix}.storage.type"),
        }
        if project.database is not None:
            enabled["database"] = self.require(
                "database", project.database.type, f"{prefix}.database.type"
            )
        if project.encryption_enabled and project.encryption is not None:
            enabled["encryption"] = self.require(
                "encryption", project.encryption.type, f"{prefix}.encryption.type"
            )
        if project.notification is not None and project.notification.type != "none":
            enabled["notification"] = self.require(
                "notification", project.notification.type, f"{prefix}.notification.type"
            )
        if project.monitor is not None:
            enabled["monitor"] = self.require(
                "monitor", project.monitor.type, f"{prefix}.monitor.type"
            )
        return enabled

    def validate(self, project: ProjectSettings, settings: GlobalSettings) -> list[str]:
        """Problems the project's own plugins find with its config (errors only)."""
        return [p for p in self._validation(project, settings) if not p.startswith(WARNING)]

    def validation_warnings(self, project: ProjectSettings, settings: GlobalSettings) -> list[str]:
        """What the plugins found worth saying but not fatal (``warning: ...`` lines)."""
        found = self._validation(project, settings)
        return [p.removeprefix(WARNING) for p in found if p.startswith(WARNING)]

    def _validation(self, project: ProjectSettings, settings: GlobalSettings) -> list[str]:
        problems: list[str] = []
        for info in self.project_plugins(project).values():
            caller = self.caller_for(info, "backupctl_validate_config")
            for found in caller(project=project, settings=settings):
                problems.extend(found or [])
        return problems

    def for_project(self, project: ProjectSettings, settings: GlobalSettings) -> ProjectPluginSet:
        return ProjectPluginSet(self, project, settings, self.project_plugins(project))

    def caller_for(self, info: PluginInfo, hook_name: str) -> Any:
        """A caller for ``hook_name`` that reaches ``info``'s plugin and no other."""
        others = [p for p in self.manager.get_plugins() if p is not info.plugin]
        return self.manager.subset_hook_caller(hook_name, remove_plugins=others)


class ProjectPluginSet:
    """The pipeline's ``ProjectPlugins`` port, backed by one project's plugins."""

    def __init__(
        self,
        registry: PluginRegistry,
        project: ProjectSettings,
        settings: GlobalSettings,
        enabled: dict[str, PluginInfo],
    ) -> None:
        self.registry = registry
        self.project = project
        self.settings = settings
        self.enabled = enabled

    def _call(self, role: str, hook_name: str, **kwargs: Any) -> Any:
        info = self.enabled.get(role)
        if info is None:
            raise PluginError(f"this project has no {role} plugin", retryable=False)
        caller = self.registry.caller_for(info, hook_name)
        result = caller(project=self.project, settings=self.settings, **kwargs)
        if result is None:
            raise PluginError(
                f"plugin '{info.name}' does not implement {hook_name}", retryable=False
            )
        return result

    def dump(self, target_stem: Path) -> DumpArtifact:
        result: DumpArtifact = self._call("database", "backupctl_dump", target_stem=target_stem)
        return result

    def verify(self, artifact: DumpArtifact) -> VerifyResult:
        result: VerifyResult = self._call("database", "backupctl_verify", artifact=artifact)
        return result

    def encrypt(self, artifact: DumpArtifact) -> DumpArtifact:
        result: DumpArtifact = self._call("encryption", "backupctl_encrypt", artifact=artifact)
        return result

    def sync(self, paths: Sequence[Path], tags: Sequence[str]) -> SyncResult:
        result: SyncResult = self._call("storage", "backupctl_sync", paths=paths, tags=tags)
        return result

    def prune(self, reclaim: Reclaim) -> PruneResult:
        result: PruneResult = self._call("storage", "backupctl_prune", reclaim=reclaim)
        return result

    @contextmanager
    def run_session(self) -> Iterator[None]:
        """Every enabled plugin's ``backupctl_run_session``, held open while inside."""
        with ExitStack() as stack:
            for info in {id(info): info for info in self.enabled.values()}.values():
                caller = self.registry.caller_for(info, "backupctl_run_session")
                stack.enter_context(_harmless(info.name, caller, self.project, self.settings))
            yield

    def unlock(self) -> str:
        result: str = self._call("storage", "backupctl_unlock")
        return result

    def snapshots(self) -> list[Snapshot]:
        result: list[Snapshot] = self._call("storage", "backupctl_snapshots")
        return result

    def cache(self, clear: bool = False) -> CacheInfo:
        """The storage plugin's local cache for this project; ``clear`` removes it."""
        result: CacheInfo = self._call("storage", "backupctl_cache", clear=clear)
        return result

    def passthrough(self) -> tuple[dict[str, str], list[str]]:
        """``(env, argv)`` to run the storage tool itself on this project's repository."""
        env, argv = self._call("storage", "backupctl_passthrough")
        return dict(env), list(argv)

    def restore(self, snapshot_id: str, target: Path, include: Sequence[str] | None) -> list[Path]:
        result: list[Path] = self._call(
            "storage", "backupctl_restore", snapshot_id=snapshot_id, target=target, include=include
        )
        return result

    def decompress(self, path: Path) -> Path | None:
        """The plain file the database plugin makes of a dump, or None."""
        result: Path | None = self._optional("database", "backupctl_decompress", path=path)
        return result

    def manifest(self, artifact: DumpArtifact) -> DumpManifest | None:
        """The database plugin's manifest of ``artifact``, or None (it writes none)."""
        return self._optional("database", "backupctl_manifest", artifact=artifact)

    def scratch_database(self, name: str, workdir: Path) -> ScratchDatabase | None:
        """A scratch database for a restore drill, or None (the plugin cannot import)."""
        return self._optional("database", "backupctl_scratch_database", name=name, workdir=workdir)

    def snapshot_stats(self, snapshot_id: str) -> tuple[int, int] | None:
        """``(files, bytes)`` a full restore of the snapshot brings back, or None."""
        return self._optional("storage", "backupctl_snapshot_stats", snapshot_id=snapshot_id)

    def _optional(self, role: str, hook_name: str, **kwargs: Any) -> Any:
        info = self.enabled.get(role)
        if info is None:
            return None
        caller = self.registry.caller_for(info, hook_name)
        return caller(project=self.project, settings=self.settings, **kwargs)

    def restore_guide(self, dump_file: Path, snapshot_id: str) -> list[str]:
        result: list[str] = self._call(
            "database", "backupctl_restore_guide", dump_file=dump_file, snapshot_id=snapshot_id
        )
        return result

    def decrypt(self, path: Path, kind: str = "gpg") -> Path:
        info = self.registry.require("encryption", kind, f"{path.name}")
        result: Path | None = self.registry.caller_for(info, "backupctl_decrypt")(
            project=self.project, settings=self.settings, path=path
        )
        if result is None:
            raise PluginError(f"plugin '{info.name}' cannot decrypt {path.name}", retryable=False)
        return result

    def monitor_ping(self, ping: Ping) -> None:
        """Send ``ping`` to the project's monitor (none: nothing); raise on failure."""
        info = self.enabled.get("monitor")
        if info is None or self.project.monitor is None:
            return
        self.registry.caller_for(info, "backupctl_monitor_ping")(
            project=self.project, settings=self.settings, monitor=self.project.monitor, ping=ping
        )

    def checks(self) -> list[CheckResult]:
        """``backupctl_check`` of every plugin the project enables."""
        results: list[CheckResult] = []
        for info in self.enabled.values():
            caller = self.registry.caller_for(info, "backupctl_check")
            for found in caller(project=self.project, settings=self.settings):
                results.extend(found or [])
        return results


def _hook_names(manager: pluggy.PluginManager, plugin: object) -> list[str]:
    return sorted(caller.name for caller in manager.get_hookcallers(plugin) or [])


def _register(
    manager: pluggy.PluginManager, name: str, load: Any, dist: str, version: str
) -> PluginInfo:
    info = PluginInfo(name=name, distribution=dist, version=version)
    try:
        plugin = load()
        manager.register(plugin, name=name)
    except pluggy.PluginValidationError as error:
        info.error = f"invalid hook implementation: {error}"
        return info
    except Exception as error:  # an import error in one plugin must not break the CLI
        info.error = f"{type(error).__name__}: {error}"
        return info
    info.plugin = plugin
    info.hooks = _hook_names(manager, plugin)
    try:
        for found in manager.subset_hook_caller(
            "backupctl_plugin_types",
            remove_plugins=[p for p in manager.get_plugins() if p is not plugin],
        )():
            info.types.extend(found or [])
    except Exception as error:
        info.error = f"backupctl_plugin_types failed: {error}"
        manager.unregister(plugin)
        info.plugin = None
    return info


def named_types(projects: Iterable[ProjectSettings], settings: GlobalSettings) -> set[str]:
    """Every plugin type the projects (and the global notification channel) name:
    the roles ``PluginRegistry.project_plugins`` looks up, plus the built-in gpg."""
    names = {settings.notification_type, "gpg"}
    for project in projects:
        names.add(project.storage.type)
        for block in (project.database, project.encryption, project.notification,
                      project.monitor):  # fmt: skip
            if block is not None:
                names.add(block.type)
    return names


def _register_entry_point(manager: pluggy.PluginManager, ep: EntryPoint) -> PluginInfo:
    dist, version = _entry_point_dist(ep)
    info = _register(manager, ep.name, ep.load, dist, version)
    if info.error:
        log.warning("plugin %s (%s) is broken: %s", info.name, info.distribution, info.error)
    return info


def get_plugin_manager(
    entry_point_list: Iterable[EntryPoint] | None = None,
    builtins: Sequence[str] = BUILTIN_PLUGINS,
    wanted: Collection[str] | None = None,
) -> PluginRegistry:
    """Load plugins: installed entry points first, then the built-in ones.

    With ``wanted`` (type names, e.g. a config's ``postgres`` and ``restic``), only
    the entry points of those names load now (a plugin is usually named after its
    type); the others when something asks for them (``PluginRegistry``). Importing
    every installed plugin costs a ``backupctl run`` ~30 ms."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    eps = list(
        entry_point_list if entry_point_list is not None else entry_points(group=ENTRY_POINT_GROUP)
    )
    now = eps if wanted is None else [ep for ep in eps if ep.name in wanted]
    later = [ep for ep in eps if ep not in now]
    infos = [_register_entry_point(manager, ep) for ep in now]
    from backupctl_core import __version__

    for module_name in builtins:
        short = module_name.rsplit(".", 1)[-1]
        infos.append(
            _register(
                manager,
                short,
                lambda m=module_name: importlib.import_module(m),
                "backupctl-core",
                __version__,
            )
        )
    for info in infos[len(now) :]:
        if info.error:
            log.warning("plugin %s (%s) is broken: %s", info.name, info.distribution, info.error)
    return PluginRegistry(manager, infos, pending=later)


@functools.cache
def declared_type(kind: str, name: str) -> PluginType | None:
    """The ``PluginType`` (with its .env keys and secret config keys) that an installed
    plugin declares for ``kind``/``name``, without building the whole registry: the
    entry point named ``name`` first (a plugin is usually named after its type), the
    others only if it does not declare it. None when no installed plugin does."""
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name != name)
    for ep in found:
        try:
            plugin = ep.load()
            types = plugin.backupctl_plugin_types()
        except Exception:  # a broken plugin is reported by `backupctl plugins`
            continue
        for declared in types:
            if declared.kind == kind and declared.name == name:
                return declared
    return None


# Config keys that are credentials by their name, for plugins that declare none.
_SECRET_KEY_NAME = re.compile(r"password|passwd|secret|token|api_?key|credential", re.I)


def secret_config_keys(kind: str, name: str, config: Iterable[str]) -> frozenset[str]:
    """Which of ``config``'s keys hold credentials: the plugin's declared ``secrets``
    plus any key whose name says it is one."""
    declared = declared_type(kind, name) if name not in ("", "none") else None
    named = {key for key in config if _SECRET_KEY_NAME.search(key)}
    return frozenset(named) | (declared.secrets if declared else frozenset())


@contextmanager
def _harmless(
    name: str, caller: Any, project: ProjectSettings, settings: GlobalSettings
) -> Iterator[None]:
    """A plugin's run session whose failures cost only the time it would have saved."""
    session = None
    try:
        session = caller(project=project, settings=settings)
        if session is not None:
            session.__enter__()
    except Exception as error:
        log.warning("plugin '%s': run session not opened: %s", name, error)
        session = None
    try:
        yield
    finally:
        if session is not None:
            try:
                session.__exit__(None, None, None)
            except Exception as error:
                log.warning("plugin '%s': run session not closed: %s", name, error)
