"""docs/cli.md cannot drift from the CLI: every registered command has a section
with every one of its options, and the ``--help`` blocks in it are the CLI's own.

The help blocks sit between ``<!-- help: <command path> -->`` and ``<!-- /help -->``.
After changing a command, regenerate them with::

    .venv/bin/python -m tests.test_docs
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import attrs
import click
from click.testing import CliRunner

from backupctl_core.cli.main import cli
from backupctl_core.domain.records import RunRecord

ROOT = Path(__file__).resolve().parents[1]
CLI_MD = ROOT / "docs" / "cli.md"
HELP_BLOCK = re.compile(
    r"(<!-- help: (?P<path>[a-z -]*?) -->\n```text\n)(?P<body>.*?)(```\n<!-- /help -->)", re.S
)
WIDTH = 80  # help text is wrapped to this, whatever the terminal


def commands(
    ctx: click.Context | None = None,
) -> Iterator[tuple[tuple[str, ...], click.Context]]:
    """Every command, groups included, depth first, in a context whose parents are
    its groups' (so it inherits ``-h``): ``((), <cli>), (("cache",), <cache>), ...``."""
    if ctx is None:
        ctx = click.Context(cli, info_name="backupctl", **cli.context_settings)
    path = tuple(c.info_name or "" for c in reversed(list(_lineage(ctx))))[1:]
    yield path, ctx
    command = ctx.command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):  # the top level loads its commands lazily
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            yield from commands(click.Context(sub, parent=ctx, info_name=name))


def _lineage(ctx: click.Context) -> Iterator[click.Context]:
    current: click.Context | None = ctx
    while current is not None:
        yield current
        current = current.parent


def option_names(ctx: click.Context) -> list[str]:
    names = []
    for param in ctx.command.get_params(ctx):
        if isinstance(param, click.Option):
            names += [*param.opts, *param.secondary_opts]
    return names


def help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="backupctl", terminal_width=WIDTH)
    assert result.exit_code == 0, result.output
    return result.stdout


def heading(path: tuple[str, ...]) -> str:
    return "## " + " ".join(("backupctl", *path))


def sections(text: str) -> dict[str, str]:
    """``## heading`` → its text, up to the next ``## `` heading."""
    parts = re.split(r"^(## .*)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def regenerate(text: str) -> str:
    def fill(match: re.Match[str]) -> str:
        path = tuple(match["path"].split()[1:])  # "backupctl db migrate" -> ("db", "migrate")
        return match.group(1) + help_text(path) + match.group(4)

    return HELP_BLOCK.sub(fill, text)


def test_every_command_has_a_section_with_every_option() -> None:
    found = sections(CLI_MD.read_text())
    missing = []
    for path, ctx in commands():
        title = heading(path) if path else "## Global options"
        if title not in found:
            missing.append(f"no section '{title}'")
            continue
        for option in option_names(ctx):
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", found[title]):
                missing.append(f"'{title}' does not mention {option}")
    assert not missing, "docs/cli.md is out of date:\n" + "\n".join(missing)


def test_the_help_blocks_are_the_cli_s_own_help() -> None:
    text = CLI_MD.read_text()
    documented = [tuple(m["path"].split()[1:]) for m in HELP_BLOCK.finditer(text)]
    assert sorted(documented) == sorted(path for path, _ in commands())
    assert text == regenerate(text), (
        "the --help blocks in docs/cli.md differ from the CLI's; regenerate them with"
        " `.venv/bin/python -m tests.test_docs` and check the prose around them"
    )


def test_the_documented_run_record_has_the_record_s_fields() -> None:
    """``status --json`` and ``logs --json`` print ``RunRecord.to_json()``."""
    match = re.search(r"<!-- json: run record -->\n```json\n(.*?)```", CLI_MD.read_text(), re.S)
    assert match, "docs/cli.md has no run record example"
    assert list(json.loads(match.group(1))) == [f.name for f in attrs.fields(RunRecord)]


if __name__ == "__main__":
    CLI_MD.write_text(regenerate(CLI_MD.read_text()))
    print(f"regenerated the --help blocks in {CLI_MD}")


PLUGINS_MD = ROOT / "docs" / "plugins.md"
HOOK_ROW = re.compile(r"^\| `(?P<name>backupctl_\w+)\((?P<args>[^)]*)\)` \|", re.M)


def test_every_hookspec_is_documented_with_its_arguments() -> None:
    """docs/plugins.md's hook table names each hookspec once, with the hookspec's own
    arguments in order; a hook added, removed or changed in hookspecs.py fails here."""
    import inspect

    from backupctl_core import hookspecs

    specs = {
        name: list(inspect.signature(function).parameters)
        for name, function in vars(hookspecs).items()
        if name.startswith("backupctl_") and inspect.isfunction(function)
    }
    rows = HOOK_ROW.findall(PLUGINS_MD.read_text())
    documented = {name: [a.strip() for a in args.split(",") if a.strip()] for name, args in rows}
    assert len(rows) == len(documented), "a hook is documented twice"
    assert documented == specs


def test_every_hookspec_is_typed() -> None:
    """Plugins are type-checked against the hookspecs: no ``Any`` in the contract."""
    import inspect

    from backupctl_core import hookspecs

    for name, function in vars(hookspecs).items():
        if name.startswith("backupctl_") and inspect.isfunction(function):
            annotations = inspect.get_annotations(function)
            assert "return" in annotations, name
            assert all("Any" not in str(a) for a in annotations.values()), name
            assert set(annotations) == {*inspect.signature(function).parameters, "return"}, name
