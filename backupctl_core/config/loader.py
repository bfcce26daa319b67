"""``config/projects.yml`` + ``.env`` → ``AppConfig``.

Order of work: read YAML (ruamel), resolve ``${VAR}`` from .env then the
process environment, structure into attrs classes with cattrs (unknown keys
are errors), apply .env defaults, then check what types cannot say. Every
error names the file and the key path; all errors are reported at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
from attrs import frozen
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from backupctl_core.config.converter import describe_errors, make_converter
from backupctl_core.config.env import (
    Environment,
    global_settings,
    settings_problems,
    valid_cron,
)
from backupctl_core.domain.errors import ConfigError
from backupctl_core.domain.settings import (
    MAX_PRUNE_INTERVAL,
    EncryptionSettings,
    GlobalSettings,
    NotificationSettings,
    ProjectSettings,
    RetentionSettings,
    parse_interval,
)

VAR_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]*")
MAX_NAME_LENGTH = 100  # it names folders, files and restic tags
MAX_DUMP_JOBS = 64  # pg_dump opens one connection per job, plus one


@frozen
class ConfigFile:
    projects: list[ProjectSettings]


@frozen
class AppConfig:
    projects: list[ProjectSettings]
    settings: GlobalSettings
    config_path: Path
    env_path: Path
    # Values to mask wherever they appear: every secret-looking variable's value and
    # every value substituted into a hook (``secret_values``).
    secret_values: frozenset[str] = frozenset()
    # Each project's hooks as written, ``${VAR}`` not resolved (``config show``).
    hook_templates: dict[str, dict[str, Any]] = attrs.field(factory=dict)

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

    def infos(self) -> list[str]:
        """Keys that are accepted but mean nothing here (``config validate`` says why)."""
        return [
            f"projects[{p.name}].docker_network: {p.docker_network!r} is not joined by"
            " backupctl, which does not call Docker: connect the backupctl container to that"
            " network in docker-compose.yml (networks: {name}: external: true)"
            for p in self.projects
            if p.docker_network
        ]

    def warnings(self) -> list[str]:
        """Settings that are valid but costly or lossy (``config validate`` prints them)."""
        found = [
            f"projects[{p.name}].compression.enabled: false with encryption: the encrypted"
            " dump neither deduplicates nor compresses in restic, so every run stores it"
            " whole; keep compression on for encrypted projects (docs/storage.md)"
            for p in self.projects
            if not p.compression.enabled and p.encryption_enabled
        ]
        for project in self.projects:
            warning = _same_day_warning(project, self.settings.timezone)
            if warning:
                found.append(warning)
        return found


# Variables whose values are secrets by their name (and not a path to one).
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|(^|_)KEYS?$|CREDENTIAL")
NOT_A_SECRET = re.compile(r"_(PATH|DIR|FILE|ID|TYPE|HOST|USER|PORT)$")
MIN_MASKED_LENGTH = 4  # shorter values would mask ordinary words in every message


def secret_values(
    env: Environment,
    hook_templates: dict[str, dict[str, Any]],
    declared_secrets: Iterable[str] = (),
) -> frozenset[str]:
    """Every value to mask: variables that are secrets by name (.env and the process
    environment) or by a plugin's declaration (``SLACK_WEBHOOK_URL``: a token in a
    URL), and every variable substituted into a hook command or hooks.env."""
    names = {n for n in {*env.values, *os.environ} if SECRET_NAME.search(n.upper())}
    names = {n for n in names if not NOT_A_SECRET.search(n.upper())} | set(declared_secrets)
    for hooks in hook_templates.values():
        for text in _strings(hooks):
            names.update(VAR_PATTERN.findall(text))
    values = {env.get(name) for name in names}
    return frozenset(v for v in values if v and len(v) >= MIN_MASKED_LENGTH)


def _declared_secret_vars(settings: GlobalSettings) -> set[str]:
    """The .env variables that feed a secret config key of the .env channel
    (``NOTIFICATION_TYPE``; its plugin was looked up for ``notification_env`` already).
    A project's own blocks hold their values: ``project_secrets`` masks those."""
    if settings.notification_type in ("", "none"):
        return set()
    from backupctl_core.plugins import declared_type

    declared = declared_type("notification", settings.notification_type)
    if declared is None:
        return set()
    return {var for key, var in declared.env.items() if key in declared.secrets}


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def _hook_templates(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    projects = raw.get("projects")
    if not isinstance(projects, list):
        return {}
    return {
        str(p["name"]): dict(p["hooks"])
        for p in projects
        if isinstance(p, dict) and "name" in p and isinstance(p.get("hooks"), dict)
    }


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
    keys = _declared_env_keys("notification", settings.notification_type)
    config = {key: settings.notification_env[var] for key, var in keys.items()
              if var in settings.notification_env}  # fmt: skip
    return NotificationSettings(type=settings.notification_type, config=config)


# Type names as the original tool accepted them: any case, and its name for MongoDB.
TYPE_ALIASES = {"mongodb": "mongo"}


def _type_name(name: str) -> str:
    lowered = name.strip().lower()
    return TYPE_ALIASES.get(lowered, lowered)


def _normalised(project: ProjectSettings) -> ProjectSettings:
    """``Postgres`` → ``postgres``, ``mongodb`` → ``mongo``; ``timeout_minutes: 0`` → no
    warning (the original's "off")."""
    changes: dict[str, Any] = {}
    for block in ("database", "notification", "monitor", "encryption", "storage"):
        value = getattr(project, block)
        if value is not None and value.type:
            changes[block] = attrs.evolve(value, type=_type_name(value.type))
    if project.timeout_minutes == 0:
        changes["timeout_minutes"] = None
    return attrs.evolve(project, **changes) if changes else project


def _declared_env_keys(kind: str, type_name: str) -> dict[str, str]:
    """Config key -> .env variable, as the plugin of ``type_name`` declares them."""
    if type_name in ("", "none"):
        return {}
    from backupctl_core.plugins import declared_type  # entry points: only when needed

    declared = declared_type(kind, type_name)
    return dict(declared.env) if declared else {}


def _with_env_defaults(
    project: ProjectSettings, settings: GlobalSettings, env: Environment
) -> ProjectSettings:
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
        keys = _declared_env_keys("monitor", monitor.type)
        defaults = {
            key: value
            for key, var in keys.items()
            if (value := env.get(var)) is not None and key not in monitor.config
        }
        if defaults:
            changes["monitor"] = attrs.evolve(monitor, config={**monitor.config, **defaults})
    return attrs.evolve(project, **changes) if changes else project


MAX_KEEP = 1_000_000  # far beyond any real policy; keeps restic's arguments sane
WITHIN_PATTERN = re.compile(r"(?=\d)(\d+y)?(\d+m)?(\d+d)?(\d+h)?")


def _retention_problems(retention: RetentionSettings, where: str) -> list[str]:
    problems = []
    for key, value in attrs.asdict(retention).items():
        if isinstance(value, int) and not 0 <= value <= MAX_KEEP:
            problems.append(f"{where}.{key}: must be between 0 and {MAX_KEEP}, got {value}")
    within = retention.keep_within
    if within is not None and not WITHIN_PATTERN.fullmatch(within):
        problems.append(
            f"{where}.keep_within: {within!r} is not a restic duration"
            " (years, months, days, hours: e.g. 2d, 12h, 1y5m7d2h)"
        )
    interval = parse_interval(retention.prune_interval)
    if interval is None:
        problems.append(
            f"{where}.prune_interval: {retention.prune_interval!r} is not a duration"
            " (weeks, days, hours: e.g. 7d, 12h, 1w3d; 0 prunes on every run that forgets)"
        )
    elif interval > MAX_PRUNE_INTERVAL:
        problems.append(
            f"{where}.prune_interval: {retention.prune_interval!r} is longer than"
            f" {MAX_PRUNE_INTERVAL.days}d"
        )
    return problems


def _runs_per_day(cron: str, timezone: str) -> int:
    """How many times ``cron`` fires on its busiest day of a sample week."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from croniter import croniter

    start = datetime(2026, 1, 5, tzinfo=ZoneInfo(timezone))  # a Monday
    days: dict[object, int] = {}
    runs = croniter(cron, start)
    while True:
        moment = runs.get_next(datetime)
        if moment >= start + timedelta(days=7):
            return max(days.values(), default=0)
        days[moment.date()] = days.get(moment.date(), 0) + 1
        if days[moment.date()] > 1440:
            return days[moment.date()]


def _same_day_warning(project: ProjectSettings, timezone: str) -> str | None:
    """Several runs a day while the policy keeps one snapshot per day: the earlier
    snapshots of a day are removed at the next prune, without a word."""
    retention = project.retention
    if project.cron is None or retention.keep_within or retention.keep_hourly:
        return None
    if not (retention.keep_daily or retention.keep_weekly or retention.keep_monthly):
        return None  # no policy at all: restic keeps everything
    runs = _runs_per_day(project.cron, timezone)
    if runs <= 1 or retention.keep_last >= runs:
        return None
    return (
        f"projects[{project.name}].retention: cron {project.cron!r} runs up to {runs} times a"
        " day, but keep_daily keeps only the last snapshot of each day: earlier snapshots of"
        f" a day are removed at the next prune; add keep_last: {runs} (or keep_hourly,"
        " keep_within) to keep them"
    )


def project_label(name: object, index: int) -> str:
    """``projects[shop]`` by its name, ``projects[2]`` only when it has no usable one."""
    valid = isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None
    return f"projects[{name if valid else index}]"


def _check(projects: list[tuple[int, ProjectSettings]]) -> list[str]:
    errors: list[str] = []
    seen: set[str] = set()
    for index, project in projects:
        where = project_label(project.name, index)
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
        if project.timeout_minutes is not None and project.timeout_minutes < 0:
            errors.append(f"{where}.timeout_minutes: must be 0 (no warning) or more")
        database = project.database
        if database is not None and (database.dump_timeout_minutes or 1) <= 0:
            errors.append(f"{where}.database.dump_timeout_minutes: must be greater than 0")
        if (
            database is not None
            and database.pg_dump_path
            and _type_name(database.type) != "postgres"
        ):
            errors.append(f"{where}.database.pg_dump_path: only for type postgres")
        if (
            database is not None
            and database.include_roles
            and _type_name(database.type) != "postgres"
        ):
            errors.append(f"{where}.database.include_roles: only for type postgres")
        if database is not None and database.jobs is not None:
            if _type_name(database.type) != "postgres":
                errors.append(f"{where}.database.jobs: only for type postgres")
            elif not 1 <= database.jobs <= MAX_DUMP_JOBS:
                errors.append(
                    f"{where}.database.jobs: must be between 1 and {MAX_DUMP_JOBS},"
                    f" got {database.jobs}"
                )
            elif database.jobs > 1 and project.encryption_enabled:
                errors.append(
                    f"{where}.database.jobs: a parallel dump is a folder of files, which"
                    " encryption (one file) does not take yet: use one or the other"
                )
        errors += _retention_problems(project.retention, f"{where}.retention")
        if project.hooks.timeout_seconds <= 0:
            errors.append(f"{where}.hooks.timeout_seconds: must be greater than 0")
        if project.database is not None and not project.database.type:
            errors.append(f"{where}.database.type: must not be empty")
        if project.storage.type == "restic" and not project.restic.repository_path:
            errors.append(f"{where}.restic.repository_path: required (storage type restic)")
        encryption = project.encryption
        if encryption is not None and encryption.enabled and not encryption.recipient:
            errors.append(f"{where}.encryption.recipient: required when encryption is enabled")
    return errors


def _unknown_top_level_keys(raw: dict[str, Any]) -> list[str]:
    unknown = sorted(str(key) for key in raw if key != "projects")
    return [f"(top level): unknown key(s): {', '.join(unknown)}"] if unknown else []


def _under(label: str, line: str) -> str:
    """``database.port: …`` of one project → ``projects[shop].database.port: …``."""
    where, _, text = line.partition(": ")
    return f"{label}: {text}" if where == "(top level)" else f"{label}.{where}: {text}"


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
    errors = _unknown_top_level_keys(raw)
    items = raw["projects"]
    if not isinstance(items, list):
        raise ConfigError(f"{config_path}: projects: expected a list of projects")
    # Every project on its own, so that one bad value hides no other problem: all
    # are reported at once, each named by its project.
    converter = make_converter()
    projects: list[tuple[int, ProjectSettings]] = []
    for index, item in enumerate(items):
        label = project_label(item.get("name") if isinstance(item, dict) else None, index)
        var_errors: list[str] = []
        resolved = _resolve_vars(item, env, label, var_errors)
        errors += var_errors
        try:
            project = converter.structure(resolved, ProjectSettings)
        except Exception as error:  # cattrs raises exception groups with every problem
            errors += [_under(label, line) for line in describe_errors(error)]
            continue
        if not var_errors:
            projects.append((index, _with_env_defaults(_normalised(project), settings, env)))
    errors += _check(projects)
    if errors:
        raise ConfigError("\n".join(f"{config_path}: {line}" for line in errors))
    templates = _hook_templates(raw)
    return AppConfig(
        [project for _, project in projects], settings, config_path, env_path,
        secret_values=secret_values(env, templates, _declared_secret_vars(settings)),
        hook_templates=templates,
    )  # fmt: skip
