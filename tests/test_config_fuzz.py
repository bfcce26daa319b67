"""Config fuzzing: malformed YAML and wrong values never crash the loader.
Every failure is a ConfigError (exit 3) that names the file and, for values,
a key path."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from backupctl_core.config.loader import load_config
from backupctl_core.domain.errors import ConfigError

KEYS = ["name", "enabled", "cron", "timeout_minutes", "database", "compression", "assets",
        "restic", "retention", "encryption", "hooks", "verification", "notification",
        "monitor", "pasword", "extra"]  # fmt: skip
SUBKEYS = ["type", "host", "port", "name", "user", "password", "paths", "repository_path",
           "snapshot_mode", "local_days", "keep_daily", "enabled", "recipient", "pre_backup",
           "config", "typo"]  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False),
    st.text(string.printable, max_size=12), st.just("${UNSET_VARIABLE_X}"),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(SUBKEYS), inner, max_size=4)
    ),
    max_leaves=8,
)
projects = st.lists(st.dictionaries(st.sampled_from(KEYS), values, max_size=6), max_size=3)
documents = st.one_of(
    st.builds(lambda p: {"projects": p}, projects),
    st.dictionaries(st.sampled_from(["projects", "project", "defaults"]), values, max_size=2),
    values,
)


def write(tmp: Path, data: Any) -> Path:
    path = tmp / "projects.yml"
    with path.open("w") as handle:
        YAML(typ="safe").dump(data, handle)
    return path


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=documents)
def test_structured_garbage_is_a_config_error_with_a_key_path(tmp_path: Path, data: Any) -> None:
    path = write(tmp_path, data)
    try:
        config = load_config(path, tmp_path / "missing.env")
    except ConfigError as error:
        assert error.exit_code == 3
        for line in error.message.splitlines():
            assert line.startswith(f"{path}: "), line
            rest = line.removeprefix(f"{path}: ")
            # names a key path (projects[0].x / projects / (top level)) before its message
            assert rest.split(":")[0].strip(), line
        return
    for project in config.projects:  # when it loads, the result is well-formed
        assert project.name and project.restic.repository_path


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(string.printable + "äü✓{}[]:-#&*!|>'\"%@`", max_size=200))
def test_raw_text_never_crashes_the_loader(tmp_path: Path, text: str) -> None:
    path = tmp_path / "projects.yml"
    path.write_text(text)
    try:
        load_config(path, tmp_path / "missing.env")
    except ConfigError as error:
        assert error.message.startswith(f"{path}: ")
