"""cattrs converter with strict scalar hooks and readable error paths."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import attrs
from cattrs import Converter
from cattrs.errors import ForbiddenExtraKeysError
from cattrs.v import transform_error

from backupctl_core.domain.settings import Secret

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _strict_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {value!r}")


def _strict_int(value: Any, _: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected an integer, got {value!r}")


def _strict_str(value: Any, _: type) -> str:
    # YAML reads `password: 12345` as an int; a number is fine as text.
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a string, got {value!r}")


def _secret(value: Any, _: type) -> Secret:
    # a plugin's config may already hold one: a ${VAR} from .env's secrets
    return value if isinstance(value, Secret) else Secret(_strict_str(value, str))


def _str_tuple(value: Any, _: type) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {value!r}")
    return tuple(_strict_str(item, str) for item in value)


def _mapping(value: Any, _: type) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping, got {value!r}")
    return dict(value)


def make_converter() -> Converter:
    converter = Converter(forbid_extra_keys=True)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(Secret, _secret)
    converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _str_tuple)
    converter.register_structure_hook_func(lambda t: t == dict[str, Any], _mapping)
    converter.register_structure_hook(Path, lambda v, _: Path(_strict_str(v, str)))
    return converter


def _format(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        return "unknown key(s): " + ", ".join(
            _with_suggestion(key, _field_names(exc.cl)) for key in sorted(exc.extra_fields)
        )
    if isinstance(exc, KeyError):
        return "required key missing"
    if isinstance(exc, ValueError) and str(exc).startswith("expected"):
        return str(exc)
    text = str(exc)
    if " not in literal " in text:
        value, _, allowed = text.partition(" not in literal ")
        choices = allowed.removeprefix("typing.Literal[").rstrip("]")
        return f"{value!s} is not one of {choices}"
    if isinstance(exc, TypeError | AttributeError):
        name = getattr(type_, "__name__", "mapping")
        return f"expected a {name}" if name != "mapping" else "expected a mapping"
    return text or type(exc).__name__


def _field_names(cls: Any) -> list[str]:
    return [field.name for field in attrs.fields(cls)] if attrs.has(cls) else []


def _with_suggestion(key: str, known: list[str]) -> str:
    """``retension (did you mean retention?)`` when a known key is close enough."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return f"{key} (did you mean {close[0]}?)" if close else key


def describe_errors(exc: Exception) -> list[str]:
    """``projects[1].database.port: expected an integer, got 'abc'`` lines."""
    lines = []
    for message in transform_error(exc, path="$", format_exception=_format):
        text, _, where = message.rpartition(" @ ")
        path = where.removeprefix("$").removeprefix(".") or "(top level)"
        lines.append(f"{path}: {text}")
    return lines
