"""A resolved project as plain data, secrets masked (``config show``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import attrs

from backupctl_core.domain.settings import MASK, ProjectSettings, Secret


def _plain(value: Any) -> Any:
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _mask_map(kind: str, type_name: str, config: dict[str, Any]) -> dict[str, Any]:
    from backupctl_core.plugins import secret_config_keys

    secrets = secret_config_keys(kind, type_name, config)
    return {k: (MASK if k in secrets and v else _plain(v)) for k, v in config.items()}


def project_view(project: ProjectSettings) -> dict[str, Any]:
    data: dict[str, Any] = attrs.asdict(
        project, recurse=True, value_serializer=lambda _i, _a, v: _plain(v)
    )
    for block in ("notification", "monitor"):
        if data.get(block):
            data[block]["config"] = _mask_map(block, data[block]["type"], data[block]["config"])
    return data
