"""The domain imports no infrastructure; every hookspec is documented."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import backupctl_core
from backupctl_core import hookspecs

DOMAIN = Path(backupctl_core.__file__).parent / "domain"
FORBIDDEN = {
    "peewee", "playhouse", "psycopg", "httpx", "gnupg", "portalocker", "click", "ruamel",
    "pluggy", "cattrs", "dotenv", "subprocess", "croniter", "schedule",
}  # fmt: skip
FORBIDDEN_CORE = ("backupctl_core.config", "backupctl_core.audit", "backupctl_core.runtime",
                  "backupctl_core.cli", "backupctl_core.plugins")  # fmt: skip


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_domain_modules_import_no_infrastructure_directly() -> None:
    modules = sorted(DOMAIN.glob("*.py"))
    assert len(modules) >= 8
    for module in modules:
        for name in imported_names(module):
            assert name.split(".")[0] not in FORBIDDEN, f"{module.name} imports {name}"
            assert not name.startswith(FORBIDDEN_CORE), f"{module.name} imports {name}"


def test_importing_the_domain_loads_no_infrastructure() -> None:
    """Transitively too: import every domain module in a fresh interpreter."""
    modules = [
        f"backupctl_core.domain.{p.stem}" for p in DOMAIN.glob("*.py") if p.stem != "__init__"
    ]
    code = (
        "import sys, json\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(json.dumps(sorted(sys.modules)))"
    )
    # backupctl_core/__init__ re-exports hookimpl (pluggy) for plugins, so
    # import the domain without running the package's __init__.
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", "import types, sys; pkg = types.ModuleType('backupctl_core');"
             f" pkg.__path__ = [{str(DOMAIN.parent)!r}]; sys.modules['backupctl_core'] = pkg\n"
             + code],
            check=True, capture_output=True, text=True,
        ).stdout
    )  # fmt: skip
    leaked = {m for m in loaded if m.split(".")[0] in FORBIDDEN} | {
        m for m in loaded if m.startswith(FORBIDDEN_CORE)
    }
    assert leaked == set()
    assert "backupctl_core.domain.pipeline" in loaded


def test_import_linter_contract_is_kept() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))],
        cwd=DOMAIN.parent.parent, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The domain imports no infrastructure KEPT" in result.stdout


def test_every_hookspec_has_a_docstring() -> None:
    specs = [getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith("backupctl_")]
    assert len(specs) >= 6
    for spec in specs:
        assert spec.__doc__ and spec.__doc__.strip(), f"{spec.__name__} is undocumented"
    names = {spec.__name__ for spec in specs}
    for pipeline_hook in ("dump", "verify", "encrypt", "sync", "prune", "notify"):
        assert f"backupctl_{pipeline_hook}" in names


ROOT = Path(__file__).resolve().parents[1]
SUBPROCESS_CALLS = {"run", "Popen", "check_output", "check_call", "call"}


def child_processes_without_env() -> list[str]:
    """Every ``subprocess.*(...)`` call in the core and the plugins lacking ``env=``."""
    sources = [
        *(p for p in (ROOT / "backupctl_core").rglob("*.py") if "testing" not in p.parts),
        *ROOT.glob("plugins/*/backupctl_*/**/*.py"),
    ]
    found = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            target = node.func.value
            if not (isinstance(target, ast.Name) and target.id == "subprocess"):
                continue
            if node.func.attr in SUBPROCESS_CALLS and not any(
                k.arg in ("env", None) for k in node.keywords
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_child_process_gets_an_explicit_environment() -> None:
    """issue 21: a tool started without ``env=`` inherits every secret of the process
    environment (other projects' passwords with Docker's env_file); each call passes
    ``plugin_kit.child_env(...)``: the base variables plus the child's own secrets."""
    assert child_processes_without_env() == []


CHANNEL_WORDS = ("slack", "webhook", "smtp")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.add(id(value))
    return found


def test_the_core_names_no_notification_plugin() -> None:
    """issue 19: the plugins declare their .env keys and secret config keys
    (``PluginType.env`` / ``.secrets``); the core's code names none of them, except
    the table that says which distribution to install for a type (plugins.py)."""
    offenders = []
    for path in (ROOT / "backupctl_core").rglob("*.py"):
        if "testing" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value if id(node) not in docstrings else ""
            elif isinstance(node, ast.Name):
                text = node.id
            elif isinstance(node, ast.Attribute):
                text = node.attr
            else:
                continue
            if any(word in text.lower() for word in CHANNEL_WORDS):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text!r}")
    hints = [o for o in offenders if o.startswith("backupctl_core/plugins.py:")]
    assert len(hints) == 4, offenders  # ("notification", "slack"): "backupctl-slack", webhook
    assert [o for o in offenders if o not in hints] == []
