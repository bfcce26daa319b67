"""backupctl_core.plugin_kit, helper by helper, without any plugin or tool."""

from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from backupctl_core import plugin_kit
from backupctl_core.domain.errors import EXIT_CONNECTIVITY, EXIT_FAILURE, PluginError
from backupctl_core.domain.settings import (
    MASK,
    DatabaseSettings,
    ProjectSettings,
    ResticSettings,
    Secret,
)
from backupctl_core.plugin_kit import (
    classify_failure,
    create_private_file,
    database_of,
    first_error_line,
    mask,
    missing_keys,
    open_private_file,
    port_problems,
    read_captured,
    removed_on_failure,
    require_database,
    stderr_lines,
)

KIT = Path(plugin_kit.__file__)


def project(database: DatabaseSettings | None) -> ProjectSettings:
    return ProjectSettings(
        name="shop", restic=ResticSettings(repository_path="/x"), database=database
    )


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 0: a file not made private explicitly would come out 0666."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- which project is ours -------------------------------------------------------


def test_database_of_answers_only_for_its_type() -> None:
    db = DatabaseSettings(type="postgres", host="h", name="n")
    assert database_of(project(db), "postgres") is db
    assert database_of(project(db), "mysql") is None
    assert database_of(project(None), "postgres") is None


def test_require_database_returns_it_or_raises_a_permanent_error() -> None:
    db = DatabaseSettings(type="mongo", host="h")
    assert require_database(project(db), "mongo") is db
    for other in (project(db), project(None)):
        with pytest.raises(PluginError) as raised:
            require_database(other, "mysql")
        assert raised.value.message == "project shop has no mysql database"
        assert raised.value.retryable is False
        assert raised.value.connectivity is False


# -- config validation -----------------------------------------------------------


def test_missing_keys_names_each_unset_or_empty_key_in_order() -> None:
    empty = DatabaseSettings(type="x", host="", name=None, user=None)
    assert missing_keys(empty) == [
        "database.host is required",
        "database.name is required",
        "database.user is required",
    ]
    assert missing_keys(empty, ("user", "host")) == [
        "database.user is required",
        "database.host is required",
    ]
    assert missing_keys(empty, ()) == []
    full = DatabaseSettings(type="x", host="h", name="n", user="u")
    assert missing_keys(full) == []
    assert missing_keys(full, ("host", "port", "password")) == [
        "database.port is required",
        "database.password is required",
    ]
    assert missing_keys(DatabaseSettings(type="x", name="n"), ("host", "name")) == [
        "database.host is required"
    ]


@pytest.mark.parametrize("port", [None, 1, 5432, 65535])
def test_a_valid_or_unset_port_is_no_problem(port: int | None) -> None:
    assert port_problems(DatabaseSettings(type="x", port=port)) == []


@pytest.mark.parametrize("port", [0, -1, 65536, 100000])
def test_a_port_outside_1_to_65535_is_one_problem(port: int) -> None:
    assert port_problems(DatabaseSettings(type="x", port=port)) == [
        f"database.port must be between 1 and 65535, got {port}"
    ]


# -- files -----------------------------------------------------------------------


@pytest.mark.usefixtures("open_umask")
def test_open_private_file_creates_a_0600_file_for_writing(tmp_path: Path) -> None:
    path = tmp_path / "dump.gz"
    with open_private_file(path) as out:
        assert mode(path) == 0o600  # before the first byte
        out.write(b"data")
    assert path.read_bytes() == b"data"
    assert mode(path) == 0o600


@pytest.mark.usefixtures("open_umask")
def test_open_private_file_truncates_an_existing_file_and_tightens_its_mode(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dump.gz"
    path.write_bytes(b"an old, longer dump")
    path.chmod(0o644)
    with open_private_file(path) as out:
        assert mode(path) == 0o600
        out.write(b"new")
    assert path.read_bytes() == b"new"
    assert mode(path) == 0o600


def test_open_private_file_leaves_no_descriptor_behind_when_it_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_private_file(tmp_path / "no such folder" / "dump")


@pytest.mark.usefixtures("open_umask")
def test_create_private_file_creates_an_empty_0600_file(tmp_path: Path) -> None:
    path = tmp_path / "new.dump"
    create_private_file(path)
    assert path.read_bytes() == b""
    assert mode(path) == 0o600


@pytest.mark.usefixtures("open_umask")
def test_create_private_file_empties_an_existing_file_and_tightens_its_mode(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.dump"
    path.write_bytes(b"secret rows")
    path.chmod(0o666)
    create_private_file(path)
    assert path.read_bytes() == b""
    assert mode(path) == 0o600


def test_removed_on_failure_removes_the_paths_and_reraises(tmp_path: Path) -> None:
    dump, other, never_made = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    error = PluginError("boom", retryable=False)
    with pytest.raises(PluginError) as raised, removed_on_failure(dump, other, never_made):
        dump.write_text("partial")
        other.write_text("partial")
        raise error
    assert raised.value is error
    assert not dump.exists() and not other.exists() and not never_made.exists()


def test_removed_on_failure_counts_an_interrupt_as_a_failure(tmp_path: Path) -> None:
    dump = tmp_path / "a"
    with pytest.raises(KeyboardInterrupt), removed_on_failure(dump):
        dump.write_text("partial")
        raise KeyboardInterrupt
    assert not dump.exists()


def test_removed_on_failure_keeps_the_paths_on_success(tmp_path: Path) -> None:
    dump = tmp_path / "a"
    with removed_on_failure(dump):
        dump.write_text("complete")
    assert dump.read_text() == "complete"


def test_removed_on_failure_keeps_an_explicit_cause(tmp_path: Path) -> None:
    dump = tmp_path / "a"
    with pytest.raises(PluginError) as raised, removed_on_failure(dump):
        dump.write_text("partial")
        try:
            raise FileNotFoundError("tool")
        except FileNotFoundError:
            raise PluginError("tool not found", retryable=False) from None
    assert raised.value.__suppress_context__ is True
    assert not dump.exists()


def test_read_captured_reads_from_the_start_and_replaces_bad_bytes() -> None:
    with tempfile.TemporaryFile() as file:
        file.write(b"first\n\xff second\n")
        assert read_captured(file) == "first\n\ufffd second\n"
        assert read_captured(file) == "first\n\ufffd second\n"  # again: seeks back
    with tempfile.TemporaryFile() as file:
        assert read_captured(file) == ""


# -- error messages --------------------------------------------------------------


def test_stderr_lines_drops_blank_lines_and_collapses_whitespace() -> None:
    assert stderr_lines("  a \t b  \n\n   \r\nc\r\n") == ["a b", "c"]
    assert stderr_lines("") == []


def test_first_error_line_prefers_a_line_saying_error_ignoring_case() -> None:
    stderr = "mysqldump: starting\n  ERROR 1045 (28000):   Access denied\nmore error\n"
    assert first_error_line(stderr) == "ERROR 1045 (28000): Access denied"
    assert first_error_line("Warning: x\nGot error: 2013\n") == "Got error: 2013"


def test_first_error_line_falls_back_to_the_first_line_then_to_nothing() -> None:
    assert first_error_line("\n  something   odd\nanother\n") == "something odd"
    assert first_error_line("") == ""
    assert first_error_line(" \n\t\n") == ""


def test_first_error_line_takes_markers_and_can_match_case() -> None:
    stderr = "pg_dump: ERROR nothing\npsql: FATAL: role x\npg_dump: error: query failed\n"
    assert first_error_line(stderr, ("error:", "FATAL:"), ignore_case=False) == (
        "psql: FATAL: role x"
    )
    assert first_error_line(stderr, ("fatal:",), ignore_case=False) == "pg_dump: ERROR nothing"
    assert first_error_line(stderr, ("fatal:",)) == "psql: FATAL: role x"
    assert first_error_line(stderr, ()) == "pg_dump: ERROR nothing"


def test_mask_replaces_every_secret_everywhere() -> None:
    text = "login hunter2 failed; password=hunter2 for token abc"
    assert mask(text, [Secret("hunter2"), "abc"]) == (
        f"login {MASK} failed; password={MASK} for token {MASK}"
    )


def test_mask_skips_unset_and_empty_secrets() -> None:
    text = "nothing to hide"
    assert mask(text, [None, "", Secret("")]) == text
    assert mask(text, []) == text


def test_mask_hides_the_longer_of_overlapping_secrets_whole() -> None:
    assert mask("key=abcdef", ["abc", Secret("abcdef")]) == f"key={MASK}"
    assert mask("key=abcdef", ["abcdef", "abc"]) == f"key={MASK}"


PERMANENT = ("authentication failed", "Access Denied")
CONNECTIVITY = ("Could Not Connect", "timeout")


def test_classify_failure_permanent_wins_over_connectivity() -> None:
    error = classify_failure(
        "could not connect: FATAL: password authentication failed",
        permanent=PERMANENT,
        connectivity=CONNECTIVITY,
    )
    assert isinstance(error, PluginError)
    assert error.message == "could not connect: FATAL: password authentication failed"
    assert (error.retryable, error.connectivity, error.exit_code) == (False, False, EXIT_FAILURE)


def test_classify_failure_marks_connectivity_as_retryable() -> None:
    error = classify_failure(
        "could not connect to server", permanent=PERMANENT, connectivity=CONNECTIVITY
    )
    assert (error.retryable, error.connectivity) == (True, True)
    assert error.exit_code == EXIT_CONNECTIVITY


def test_classify_failure_compares_ignoring_case_on_both_sides() -> None:
    error = classify_failure("ERROR 1045: access denied for user", permanent=PERMANENT)
    assert error.retryable is False


def test_classify_failure_anything_unrecognised_is_permanent() -> None:
    """It used to be retried: a repository that can never be created cost 30 s."""
    error = classify_failure("disk full", permanent=PERMANENT, connectivity=CONNECTIVITY)
    assert (error.retryable, error.connectivity, error.message) == (False, False, "disk full")
    assert classify_failure("whatever").retryable is False


# Lines the real tools print (pg_dump 15, mariadb-dump 10.11, restic 0.14 with ssh).
RETRYABLE_LINES = [
    'pg_dump: error: connection to server at "127.0.0.1", port 1 failed: Connection refused',
    "pg_dump: error: server closed the connection unexpectedly",
    "mariadb-dump: Got error: 2013: Lost connection to server during query",
    "mysqldump: Got error: 2002: Can't connect to server on '127.0.0.1' (115)",
    "ssh: Could not resolve hostname box.example: Temporary failure in name resolution",
    "Fatal: unable to open repository: read tcp 10.0.0.1:4432: connection reset by peer",
]
PERMANENT_LINES = [
    "Fatal: create repository at /srv/x/repo failed: mkdir /srv/x: permission denied",
    "pg_dump: error: aborting because of server version mismatch",
    "sqlite3: unable to open database file",
    "gpg: no valid OpenPGP data found",
]


@pytest.mark.parametrize("line", RETRYABLE_LINES)
def test_classify_failure_retries_what_can_heal(line: str) -> None:
    error = classify_failure(line)
    assert (error.retryable, error.connectivity) == (True, True)


@pytest.mark.parametrize("line", PERMANENT_LINES)
def test_classify_failure_fails_everything_else_at_once(line: str) -> None:
    assert classify_failure(line).retryable is False


def test_an_unknown_host_is_connectivity_but_not_retried() -> None:
    for line in (
        'pg_dump: error: could not translate host name "nohost" to address: Name or service'
        " not known",
        "ssh: Could not resolve hostname nohost: Name or service not known",
        "mysqldump: Got error: 2005: Unknown server host 'nohost' (-2)",
    ):
        error = classify_failure(line)
        assert (error.retryable, error.connectivity, error.exit_code) == (
            False, True, EXIT_CONNECTIVITY,
        )  # fmt: skip


def test_a_locked_repository_is_retried_but_is_no_connectivity_error() -> None:
    error = classify_failure("unable to create lock: repository is already locked by PID 7")
    assert (error.retryable, error.connectivity) == (True, False)


def test_classify_failure_makes_the_message_one_line() -> None:
    error = classify_failure("first line\n  second\tline \n", connectivity=CONNECTIVITY)
    assert error.message == "first line second line"


# -- what the kit may import -----------------------------------------------------


def test_the_kit_imports_only_the_standard_library_attrs_and_the_domain() -> None:
    """At module level; ``structure_config`` alone imports the core's converter
    (cattrs), when it is called."""
    tree = ast.parse(KIT.read_text())
    lazy = {
        node.module
        for function in ast.walk(tree) if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function) if isinstance(node, ast.ImportFrom)
    }  # fmt: skip
    assert lazy == {"backupctl_core.config.converter"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module not in lazy:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert (
                top in sys.stdlib_module_names
                or top == "attrs"
                or name.startswith("backupctl_core.domain")
            ), f"plugin_kit imports {name}"


def test_importing_the_kit_loads_no_infrastructure() -> None:
    """In a fresh interpreter, without the package __init__ (which loads pluggy)."""
    code = (
        "import types, sys, json\n"
        "pkg = types.ModuleType('backupctl_core')\n"
        f"pkg.__path__ = [{str(KIT.parent)!r}]\n"
        "sys.modules['backupctl_core'] = pkg\n"
        "import backupctl_core.plugin_kit\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = set(
        json.loads(
            subprocess.run(
                [sys.executable, "-c", code], check=True, capture_output=True, text=True
            ).stdout
        )
    )
    assert "backupctl_core.plugin_kit" in loaded
    forbidden = {"pluggy", "click", "peewee", "playhouse", "psycopg", "ruamel", "cattrs"}
    assert {m.split(".")[0] for m in loaded} & forbidden == set()
    assert not {m for m in loaded if m.startswith("backupctl_core.")} - {
        m for m in loaded if m.startswith(("backupctl_core.domain", "backupctl_core.plugin_kit"))
    }


@attrs.frozen
class WebhookLike:
    """A plugin's config block, as a plugin author would declare it."""

    url: str
    sender: str  # the key `from`
    timeout: int = 10
    verify: bool = True
    token: Secret | None = None


def test_structure_config_converts_like_the_core_and_reports_every_problem() -> None:
    where = "notification.config"
    keys = {"from": "sender"}
    config, problems = plugin_kit.structure_config(
        WebhookLike, {"url": Secret("https://x"), "from": "me", "timeout": " 7 ", "verify": "off",
                      "token": Secret("t0k"), "other": None}, where, keys=keys)  # fmt: skip
    assert problems == [] and config is not None
    assert (config.url, config.sender, config.timeout, config.verify) == (
        "https://x",
        "me",
        7,
        False,
    )
    assert config.token is not None and config.token.reveal() == "t0k"
    empty, _ = plugin_kit.structure_config(WebhookLike, {"url": "u", "from": "m", "timeout": ""},
                                           where, keys=keys)  # fmt: skip
    assert empty is not None and empty.timeout == 10  # an empty .env value is absent
    bad, problems = plugin_kit.structure_config(
        WebhookLike, {"timeout": "soon", "verify": "maybe", "tiemout": 3}, where, keys=keys
    )
    assert bad is None and problems == [
        f"{where}.url: required key missing",
        f"{where}.from: required key missing",
        f"{where}.timeout: expected an integer, got 'soon'",
        f"{where}.verify: expected true or false, got 'maybe'",
        f"{where}: unknown key(s): tiemout (did you mean timeout?)",
    ]
    # a field whose config key differs is no key of its own
    bad, problems = plugin_kit.structure_config(
        WebhookLike, {"url": "u", "from": "m", "sender": "x"}, where, keys=keys
    )
    assert bad is None and problems == [f"{where}: unknown key(s): sender"]


def test_run_tool_captures_and_reports_like_every_plugin_should(tmp_path: Path) -> None:
    from backupctl_core.plugin_kit import ToolResult, run_tool

    said = run_tool(["sh", "-c", "echo out; echo err >&2; exit 3"], install_hint="-")
    assert said == ToolResult(3, "out\n", "err\n")
    with (tmp_path / "out").open("wb") as out:  # streamed into a file, not kept
        assert run_tool(["sh", "-c", "echo data"], stdout=out, install_hint="-").stdout == ""
    assert (tmp_path / "out").read_text() == "data\n"
    # stderr of any size: a file, not a pipe; its end kept (where tools say why)
    noisy = run_tool(
        ["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x >&2; echo; echo last >&2"],
        install_hint="-",
    )
    assert noisy.stderr.endswith("last\n") and len(noisy.stderr) == plugin_kit.STDERR_TAIL_BYTES
    # secrets only in the environment it is given
    env = run_tool(["sh", "-c", "echo $TOKEN"], env={"TOKEN": "s3cret", "PATH": "/usr/bin:/bin"},
                   install_hint="-")  # fmt: skip
    assert env.stdout == "s3cret\n"
    with pytest.raises(PluginError) as missing:
        run_tool(["no-such-tool-x"], install_hint="install x-tools")
    assert missing.value.message == "no-such-tool-x not found on PATH (install x-tools)"
    assert not missing.value.retryable
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(PluginError) as denied:
        run_tool([str(script)], install_hint="-")
    assert denied.value.message == f"{script} cannot be run: Permission denied"
    with pytest.raises(PluginError) as hung:
        run_tool(["sleep", "5"], timeout=0.2, install_hint="-")
    assert hung.value.message == "sleep timed out after 0.2s"
    assert hung.value.retryable and hung.value.connectivity
    with pytest.raises(PluginError) as limited:
        run_tool(["sleep", "5"], timeout=0.2, limit="1 min (x.timeout_minutes)", install_hint="-")
    assert limited.value.message == "sleep timed out after 1 min (x.timeout_minutes)"
    assert not limited.value.retryable


def test_tool_error_names_the_line_that_says_why_and_masks_secrets() -> None:
    from backupctl_core.plugin_kit import ToolResult, tool_error

    failed = ToolResult(1, "", "starting\nerror: password pw-42 refused\n")
    error = tool_error("dumper", failed, secrets=[Secret("pw-42")], permanent=["refused"])
    assert error.message == f"dumper: error: password {MASK} refused" and not error.retryable
    lost = tool_error("dumper", ToolResult(2, "", "error: connection refused\n"))
    assert lost.retryable and lost.connectivity
    assert tool_error("dumper", ToolResult(-9, "", "")).message == "dumper: killed by signal 9"
    own = tool_error("pg_dump", ToolResult(1, "", "pg_dump: error: boom\n"), prefixed=False)
    assert own.message == "pg_dump: error: boom"
    assert tool_error("x", ToolResult(4, "", ""), prefixed=False).message == "x exited with code 4"


def test_in_background_hands_over_the_result_or_the_error() -> None:
    done = plugin_kit.in_background(lambda: 6 * 7, "answer")
    assert done.result(timeout=5) == 42

    def fails() -> int:
        raise ValueError("no listing")

    with pytest.raises(ValueError, match="no listing"):
        plugin_kit.in_background(fails, "fails").result(timeout=5)
