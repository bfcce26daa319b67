"""``config/projects.yml`` + ``.env`` → ``AppConfig``.

Order of work: read YAML (ruamel), resolve ``${VAR}`` from .env then the
process environment, structure into attrs classes with cattrs (unknown keys
are errors), apply .env defaults, then check what types cannot say. Every
error names the file and the key path; all errors are reported at once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
from attrs import frozen
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from backupctl_core.config.converter import describe_errors, make_converter
from backupctl_core.config.env import (
    MONITOR_ENV_KEYS,
    NOTIFIER_ENV_KEYS,
    Environment,
    global_settings,
    settings_problems,
    valid_cron,
)
from backupctl_core.domain.errors import ConfigError
from backupctl_core.domain.settings import (
    EncryptionSettings,
    GlobalSettings,
    NotificationSettings,
    ProjectSettings,
)

VAR_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]*")
MAX_NAME_LENGTH = 100  # it names folders, files and restic tags


@frozen
class ConfigFile:
    projects: list[ProjectSettings]


@frozen
class AppConfig:
    projects: list[ProjectSettings]
    settings: GlobalSettings
    config_path: Path
    env_path: Path

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.projects]

    def project(self, name: str) -> ProjectSettings:
        for project in self.projects:
            if project.name == name:
                return project
        known = ", ".join(self.names) or "none"
        raise ConfigError(f"unknown project '{name}' (known projects: {known})")

    @property
    def enabled_projects(self) -> list[ProjectSettings]:
        return [p for p in self.projects if p.enabled]

    def warnings(self) -> list[str]:
        """Settings that are valid but costly (``config validate`` prints them)."""
        return [
            f"projects[{p.name}].compression.enabled: false with encryption: the encrypted"
            " dump neither deduplicates nor compresses in restic, so every run stores it"
            " whole; keep compression on for encrypted projects (docs/storage.md)"
            for p in self.projects
            if not p.compression.enabled and p.encryption_enabled
        ]


def _resolve_vars(node: Any, env: Environment, path: str, errors: list[str]) -> Any:
    if isinstance(node, dict):
        return {
            key: _resolve_vars(value, env, f"{path}.{key}" if path else str(key), errors)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_resolve_vars(item, env, f"{path}[{i}]", errors) for i, item in enumerate(node)]
    if isinstance(node, str):

        def substitute(match: re.Match[str]) -> str:
            value = env.get(match.group(1))
            if value is None:
                errors.append(
                    f"{path}: ${{{match.group(1)}}} is not set in {env.path} or the environment"
                )
                return ""
            return value

        return VAR_PATTERN.sub(substitute, node)
    return node


# A projects.yml is a few KB. Both limits stop a hostile or broken file (an "alias
# bomb": 1 KB of nested aliases expanding to billions of values) before it costs
# memory, and leave real configs, anchors and merge keys included, far below them.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 100_000


def _expanded_size(node: Any, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values ``node`` becomes once every alias is expanded, counted
    without expanding (an alias is the same node object, counted once per use)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise ConfigError("a YAML alias refers to itself (a recursive structure)")
    open_nodes.add(key)
    children: list[Any] = []
    if isinstance(node.value, list):
        for item in node.value:
            children.extend(item if isinstance(item, tuple) else (item,))
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, open_nodes)
        if total > MAX_EXPANDED_NODES:
            break
    open_nodes.discard(key)
    sizes[key] = total
    return total


def _read_yaml(path: Path) -> Any:
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; not a config")
        text = data.decode("utf-8")
        yaml = YAML(typ="safe")
        root = yaml.compose(text)
        try:
            size = _expanded_size(root, {}, set()) if root is not None else 0
        except ConfigError as error:
            raise ConfigError(f"{path}: {error.message}") from None
        if size > MAX_EXPANDED_NODES:
            raise ConfigError(
                f"{path}: YAML aliases expand to more than {MAX_EXPANDED_NODES} values;"
                " write the repeated parts out or use fewer nested aliases"
            )
        return yaml.load(text)
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file: {error}") from None


def env_notification(settings: GlobalSettings) -> NotificationSettings:
    """The channel ``NOTIFICATION_TYPE`` and its .env settings describe."""
    keys = NOTIFIER_ENV_KEYS.get(settings.notification_type, {})
    config = {key: settings.notification_env[var] for key, var in keys.items()
              if var in settings.notification_env}  # fmt: skip
    return NotificationSettings(type=settings.notification_type, config=config)


def _with_env_defaults(project: ProjectSettings, settings: GlobalSettings) -> ProjectSettings:
    """Project YAML > .env global > built-in default."""
    changes: dict[str, Any] = {}
    if project.restic.password is None and settings.restic_password is not None:
        changes["restic"] = attrs.evolve(project.restic, password=settings.restic_password)
    if project.encryption is None:
        changes["encryption"] = EncryptionSettings(
            enabled=settings.encryption_enabled,
            type=settings.encryption_type,
            recipient=settings.gpg_recipient,
        )
    if project.notification is None:
        changes["notification"] = env_notification(settings)
    monitor = project.monitor
    if monitor is not None:
        keys = MONITOR_ENV_KEYS.get(monitor.type, {})
        defaults = {key: settings.monitor_env[var] for key, var in keys.items()
                    if var in settings.monitor_env and key not in monitor.config}  # fmt: skip
        if defaults:
            changes["monitor"] = attrs.evolve(monitor, config={**monitor.config, **defaults})
    return attrs.evolve(project, **changes) if changes else project


def _check(projects: list[ProjectSettings]) -> list[str]:
    errors: list[str] = []
    seen: set[str] = set()
    for index, project in enumerate(projects):
        where = f"projects[{index}]"
        if not NAME_PATTERN.fullmatch(project.name):  # fullmatch: "$" accepts a final "\n"
            errors.append(f"{where}.name: {project.name!r} must match [a-z0-9][a-z0-9_-]*")
        elif len(project.name) > MAX_NAME_LENGTH:
            errors.append(f"{where}.name: longer than {MAX_NAME_LENGTH} characters")
        if project.name in seen:
            errors.append(f"{where}.name: duplicate project name {project.name!r}")
        seen.add(project.name)
        if project.cron is not None and not valid_cron(project.cron):
            errors.append(f"{where}.cron: {project.cron!r} is not a valid cron expression")
        if project.cron is not None and len(project.cron.split()) != 5:
            errors.append(f"{where}.cron: expected 5 fields, got {project.cron!r}")
        if project.timeout_minutes is not None and project.timeout_minutes <= 0:
            errors.append(f"{where}.timeout_minutes: must be greater than 0")
        retention = attrs.asdict(project.retention)
        for key, value in retention.items():
            if value < 0:
                errors.append(f"{where}.retention.{key}: must be 0 or more, got {value}")
        if project.hooks.timeout_seconds <= 0:
            errors.append(f"{where}.hooks.timeout_seconds: must be greater than 0")
        if project.database is not None and not project.database.type:
            errors.append(f"{where}.database.type: must not be empty")
        if not project.restic.repository_path:
            errors.append(f"{where}.restic.repository_path: must not be empty")
        encryption = project.encryption
        if encryption is not None and encryption.enabled and not encryption.recipient:
            errors.append(f"{where}.encryption.recipient: required when encryption is enabled")
    return errors


def load_config(config_path: Path, env_path: Path, *, env_required: bool = False) -> AppConfig:
    """Load and check both files; raise one ``ConfigError`` listing every problem."""
    env = Environment.load(env_path, required=env_required)
    settings = global_settings(env)
    env_problems = settings_problems(settings)
    if env_problems:
        raise ConfigError("\n".join(f"{env_path}: {line}" for line in env_problems))
    raw = _read_yaml(config_path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{config_path}: expected a mapping with a 'projects' list")
    if "projects" not in raw:
        raise ConfigError(f"{config_path}: projects: required key missing")
    errors: list[str] = []
    resolved = _resolve_vars(raw, env, "", errors)
    if errors:
        raise ConfigError("\n".join(f"{config_path}: {line}" for line in errors))
    converter = make_converter()
    try:
        parsed = converter.structure(resolved, ConfigFile)
    except Exception as error:  # cattrs raises exception groups with every problem
        lines = describe_errors(error)
        raise ConfigError("\n".join(f"{config_path}: {line}" for line in lines)) from None
    projects = [_with_env_defaults(p, settings) for p in parsed.projects]
    problems = _check(projects)
    if problems:
        raise ConfigError("\n".join(f"{config_path}: {line}" for line in problems))
    return AppConfig(projects, settings, config_path, env_path)
