"""Small helpers for plugin authors: the code every database dumper would otherwise repeat.

Import what you need::

    from backupctl_core.plugin_kit import classify_failure, first_error_line, mask

Nothing here is required: a plugin may do the same by hand. The helpers keep the
rules of docs/plugins.md — dumps are 0600, partial output is removed, an error is
one line without secrets and says whether retrying could help — in one place.

Pure standard library plus ``backupctl_core.domain``: importing the kit pulls in no
plugin manager, CLI or database driver.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar, get_args

import attrs

from backupctl_core.domain.artifacts import CheckResult
from backupctl_core.domain.drill import DumpManifest, manifest_path
from backupctl_core.domain.errors import BackupctlError, PluginError
from backupctl_core.domain.settings import DatabaseSettings, ProjectSettings, Secret, mask

__all__ = [
    "CHECK_TOOLS",
    "RETRYABLE_ERRORS",
    "UNREACHABLE_ERRORS",
    "Progress",
    "ToolResult",
    "child_env",
    "classify_failure",
    "create_private_file",
    "database_of",
    "failed_database_check",
    "first_error_line",
    "folder_creation_problem",
    "in_background",
    "make_private_dir",
    "mask",
    "missing_keys",
    "open_private_file",
    "port_problems",
    "progress_wanted",
    "read_captured",
    "removed_on_failure",
    "report_progress",
    "require_database",
    "run_tool",
    "stderr_lines",
    "structure_config",
    "tool_error",
    "tools_check",
]

# -- which project is ours -------------------------------------------------------


def database_of(project: ProjectSettings, type_name: str) -> DatabaseSettings | None:
    """The project's database settings if its ``database.type`` is ``type_name``, else None.

    For hooks that answer only for their own type (validate, check)::

        db = database_of(project, TYPE)
        if db is None:
            return []
    """
    db = project.database
    if db is None or db.type != type_name:
        return None
    return db


def require_database(project: ProjectSettings, type_name: str) -> DatabaseSettings:
    """The project's ``type_name`` database settings; a permanent PluginError if it has none."""
    db = database_of(project, type_name)
    if db is None:
        raise PluginError(f"project {project.name} has no {type_name} database", retryable=False)
    return db


# -- child processes -------------------------------------------------------------

# What any tool needs from our environment, and nothing secret: the process may hold
# every project's passwords (Docker's env_file puts all of .env there).
BASE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
            "TERM", "SSH_AUTH_SOCK", "SSL_CERT_FILE", "SSL_CERT_DIR")  # fmt: skip
_SECRET_NAME = ("PASSWORD", "PASSFILE", "PASSWD", "SECRET", "TOKEN", "PWD")


def child_env(
    extra: Mapping[str, str] | None = None, *, prefixes: Iterable[str] = ()
) -> dict[str, str]:
    """The whole environment for a child process: ``BASE_ENV`` and ``LC_*`` from ours,
    the tool's own settings (our variables starting with one of ``prefixes``, e.g.
    ``PG`` for libpq's ``PGSSLMODE``, never one whose name says it is a secret), then
    ``extra``: the child's own secrets (``PGPASSWORD``) and settings. Nothing else, so
    a tool never sees another project's password::

        subprocess.run(argv, env=child_env({"PGPASSWORD": password}, prefixes=["PG"]))
    """
    wanted = tuple(prefixes)
    env = {
        name: value
        for name, value in os.environ.items()
        if name in BASE_ENV
        or name.startswith("LC_")
        or (name.startswith(wanted) and wanted and not any(s in name for s in _SECRET_NAME))
    }
    env.update(extra or {})
    return env


# -- readiness (dry run, health) ------------------------------------------------

CHECK_TOOLS = "tools"  # the check name: a failure is an installation problem, exit 1
TOOL_TIMEOUT_SECONDS = 10


def tools_check(
    tools: Sequence[str], install_hint: str, version_args: Mapping[str, Sequence[str]] = {}
) -> CheckResult:
    """One check that every program in ``tools`` is on PATH and runs (``--version``,
    or ``version_args[tool]``), for a dry run to fail where the run would fail.

    Passes with each tool's version line; fails naming the missing or broken tool and
    ``install_hint`` (e.g. ``"install postgresql-client"``). Check this before a
    connection check that needs the same tools: a missing client is not a
    connectivity problem.
    """
    import shutil
    import subprocess

    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return CheckResult(
            CHECK_TOOLS, "fail", f"not on PATH: {', '.join(missing)} ({install_hint})"
        )
    versions = []
    for tool in tools:
        argv = [tool, *version_args.get(tool, ("--version",))]
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=TOOL_TIMEOUT_SECONDS,
                stdin=subprocess.DEVNULL,
                env=child_env(),
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return CheckResult(CHECK_TOOLS, "fail", f"{tool} does not run: {error}")
        lines = stderr_lines(done.stdout) or stderr_lines(done.stderr)
        if done.returncode != 0:
            why = lines[0] if lines else f"exit code {done.returncode}"
            return CheckResult(CHECK_TOOLS, "fail", f"{tool} does not run: {why} ({install_hint})")
        versions.append(lines[0] if lines else tool)
    return CheckResult(CHECK_TOOLS, "pass", "; ".join(versions))


def failed_database_check(error: PluginError) -> CheckResult:
    """A failed database check, named so the dry run exits as the run would: an
    unreachable server is ``database`` (exit 4); a refused login or a missing database
    is ``database login`` (exit 1, as the run's dump stage fails)."""
    return CheckResult(
        "database" if error.connectivity else "database login", "fail", error.message
    )


# -- config validation -----------------------------------------------------------


def missing_keys(
    database: DatabaseSettings, required: Iterable[str] = ("host", "name", "user")
) -> list[str]:
    """``"database.<key> is required"`` for each key in ``required`` that is unset or empty.

    In the order given, so a plugin can put its own checks between two calls.
    """
    return [f"database.{key} is required" for key in required if not getattr(database, key)]


def port_problems(database: DatabaseSettings) -> list[str]:
    """One problem if ``database.port`` is set but not a TCP port (1-65535), else none."""
    port = database.port
    if port is not None and not 0 < port < 65536:
        return [f"database.port must be between 1 and 65535, got {port}"]
    return []


# -- a plugin's config: block ------------------------------------------------------

T = TypeVar("T")


def structure_config(
    cls: type[T], config: Mapping[str, Any], where: str, *, keys: Mapping[str, str] | None = None
) -> tuple[T | None, list[str]]:
    """A plugin's ``config:`` block as the attrs class ``cls``, by the core's own
    converter: the same strict scalars (``"587"`` → 587, ``"off"`` → False, YAML's
    ``12345`` → ``"12345"``), unknown keys refused with a did-you-mean, and every
    problem at once as ``{where}.key: message`` lines, the core's error format.

    Empty values (``SMTP_PORT=`` in .env) count as absent, so the defaults apply. A
    ``Secret`` stays one in a ``Secret`` field and is revealed for any other. ``keys``
    maps config keys that are no Python name to their field: ``{"from": "sender"}``.
    """
    from backupctl_core.config.converter import describe_errors

    field_of = dict(keys or {})
    key_of = {field: key for key, field in field_of.items()}
    fields = {f.name: f for f in attrs.fields(attrs.resolve_types(cls))}  # type: ignore[arg-type,type-var]
    given: dict[str, Any] = {}
    hidden = [key for key in config if key in key_of]  # a field name that has a key of its own
    for key, value in config.items():
        if value is None or (isinstance(value, str) and not value.strip()) or key in hidden:
            continue
        name = field_of.get(key, key)
        field = fields.get(name)
        if isinstance(value, Secret) and field is not None and not _holds_secret(field.type):
            value = value.reveal()
        given[name] = value
    problems = [f"{where}: unknown key(s): {', '.join(hidden)}"] if hidden else []
    try:
        structured = _converter().structure(given, cls)
    except Exception as error:  # cattrs' validation group: every problem, with its path
        for line in describe_errors(error):
            path, _, message = line.partition(": ")
            for field, key in key_of.items():
                message = message.replace(f"did you mean {field}?", f"did you mean {key}?")
            if path == "(top level)":
                problems.append(f"{where}: {message}")
                continue
            head, dot, rest = path.partition(".")
            problems.append(f"{where}.{key_of.get(head, head)}{dot}{rest}: {message}")
        return None, problems
    return (None, problems) if problems else (structured, [])


@functools.cache
def _converter() -> Any:
    """The core's converter, built once: it caches a structuring function per class."""
    from backupctl_core.config.converter import make_converter

    return make_converter()


def _holds_secret(annotation: Any) -> bool:
    return annotation is Secret or Secret in get_args(annotation)


# -- files -----------------------------------------------------------------------


def open_private_file(path: Path) -> IO[bytes]:
    """Open ``path`` for binary writing, created or truncated, with mode 0600.

    The mode is set on the open file also when ``path`` already existed with a looser
    one: a dump is never readable by others, not even for a moment. Use it like
    ``open``: ``with open_private_file(path) as out: ...``.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode applies only to a new file
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def create_private_file(path: Path) -> None:
    """Create (or empty) ``path`` with mode 0600, for a tool that then writes into it.

    Tools that truncate an existing file keep its mode (``pg_dump --file``,
    ``mongodump --archive``, ``sqlite3``), so the dump never exists world-readable.
    """
    with open_private_file(path):
        pass


def make_private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents with mode 0700, whatever the umask.

    ``Path.mkdir(parents=True, mode=0o700)`` gives the *parents* the umask's mode
    (0777 under umask 000). Folders that exist already are left as they are: they
    are the operator's (a mounted volume, a shared parent).
    """
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # created meanwhile by another process
            continue
        os.chmod(folder, 0o700)
    return path


def folder_creation_problem(folder: Path) -> str | None:
    """Why this user cannot create ``folder`` (and its missing parents), or None if
    it can: a storage check for a local repository that does not exist yet."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable for this user (uid {os.getuid()})"
    return None


@contextmanager
def removed_on_failure(*paths: Path) -> Iterator[None]:
    """Remove ``paths`` (those that exist) when the block raises, then re-raise.

    Anything counts, KeyboardInterrupt too: never leave a partial dump behind::

        with removed_on_failure(path):
            run_the_tool(path)
    """
    try:
        yield
    except BaseException:
        for path in paths:
            if path.is_dir() and not path.is_symlink():  # a directory-format dump
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise


def read_captured(file: IO[bytes]) -> str:
    """All a tool wrote into ``file`` (e.g. a ``tempfile.TemporaryFile`` given as its
    stderr), read from the start and decoded, undecodable bytes replaced."""
    file.seek(0)
    return file.read().decode(errors="replace")


# -- progress of a long step ------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """How far a long step is (restic's ``backup --json`` status): what ``run`` shows
    as its progress line. Leave out what you do not know."""

    fraction: float | None = None  # 0.0 … 1.0
    files_done: int | None = None
    total_files: int | None = None
    bytes_done: int | None = None
    total_bytes: int | None = None
    seconds_remaining: float | None = None


_progress_sink: ContextVar[Callable[[Progress], None] | None] = ContextVar(
    "backupctl_progress_sink", default=None
)


def progress_wanted() -> bool:
    """Whether anyone shows progress now: skip the work of measuring it otherwise."""
    return _progress_sink.get() is not None


def report_progress(progress: Progress) -> None:
    """Tell the running backup how far this step is; nothing happens when nobody
    shows progress. Call it from the thread that runs the hook."""
    sink = _progress_sink.get()
    if sink is not None:
        sink(progress)


@contextmanager
def progress_sink(sink: Callable[[Progress], None]) -> Iterator[None]:
    """The core's side: ``report_progress`` calls in this thread go to ``sink``."""
    token = _progress_sink.set(sink)
    try:
        yield
    finally:
        _progress_sink.reset(token)


# -- error messages --------------------------------------------------------------


def stderr_lines(stderr: str) -> list[str]:
    """The non-blank lines of a tool's stderr, each with its whitespace collapsed."""
    return [" ".join(line.split()) for line in stderr.splitlines() if line.strip()]


def first_error_line(
    stderr: str, markers: Iterable[str] = ("error",), *, ignore_case: bool = True
) -> str:
    """The most telling line of a tool's stderr, whitespace collapsed.

    The first line holding one of ``markers`` (compared ignoring case unless
    ``ignore_case=False``); failing that the first non-blank line; ``""`` for an
    empty stderr, so a caller can add its own ``or f"{tool} exited with code {n}"``.
    """
    lines = stderr_lines(stderr)
    wanted = [marker.lower() for marker in markers] if ignore_case else list(markers)
    for line in lines:
        haystack = line.lower() if ignore_case else line
        if any(marker in haystack for marker in wanted):
            return line
    return lines[0] if lines else ""


# What can heal on its own, so trying again later may help: the network and the
# server coming back, a lock being released, a temporary DNS failure. Substrings of
# the tools' messages, compared ignoring case; every other failure is permanent.
RETRYABLE_ERRORS: tuple[str, ...] = (
    "temporary failure in name resolution",
    "try again",
    "connection refused",
    "connection reset",
    "connection timed out",
    "timed out",
    "timeout expired",
    "i/o timeout",
    "context deadline exceeded",
    "could not connect",
    "can't connect",
    "server closed the connection unexpectedly",
    "lost connection",
    "server has gone away",
    "broken pipe",
    "no route to host",
    "network is unreachable",
    "repository is already locked",
    "resource temporarily unavailable",
)
# Cannot reach a server, and waiting will not change that: an unknown host name.
# The CLI still exits 4 (connectivity), without retrying.
UNREACHABLE_ERRORS: tuple[str, ...] = (
    "name or service not known",
    "could not resolve hostname",
    "could not translate host name",
    "unknown server host",
    "unknown mysql server host",
    "no such host",
    "nodename nor servname provided",
)


def _has(lowered: str, needles: Iterable[str]) -> bool:
    return any(needle.lower() in lowered for needle in needles)


def classify_failure(
    message: str,
    *,
    permanent: Iterable[str] = (),
    connectivity: Iterable[str] = (),
    retryable: Iterable[str] = (),
) -> PluginError:
    """A PluginError for a tool's failure, on one line, its kind read from the message.

    Checked in this order, substrings compared ignoring case:

    1. ``permanent`` (the plugin's own: wrong password, no such database): fails at
       once, even when the message also says "could not connect";
    2. ``RETRYABLE_ERRORS`` plus the plugin's ``retryable``: retried with back-off;
       also a connectivity error (CLI exit 4) when it matches ``connectivity``, or
       is about the network at all;
    3. ``UNREACHABLE_ERRORS`` and ``connectivity``: a connectivity error (exit 4)
       that fails at once (an unknown host does not appear by waiting);
    4. anything else: permanent. Retrying what nobody recognised only delays the
       same failure (a repository that can never be created was retried for 30 s).

    Mask secrets before calling this: the message is used as it is, only made one line.
    """
    message = " ".join(message.split())
    lowered = message.lower()
    if _has(lowered, permanent):
        return PluginError(message, retryable=False)
    if _has(lowered, RETRYABLE_ERRORS) or _has(lowered, retryable):
        network = _has(lowered, connectivity) or "already locked" not in lowered
        return PluginError(message, retryable=True, connectivity=network)
    if _has(lowered, UNREACHABLE_ERRORS) or _has(lowered, connectivity):
        return PluginError(message, retryable=False, connectivity=True)
    return PluginError(message, retryable=False)


# -- work beside a tool --------------------------------------------------------------


def in_background(work: Callable[[], T], name: str) -> Future[T]:
    """Run ``work`` on a daemon thread while the caller's tool runs; its result, or
    its exception, from ``.result()``. A daemon, so a stuck read never holds up exit."""
    future: Future[T] = Future()

    def run() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(work())
        except BaseException as error:  # raised again by .result()
            future.set_exception(error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


# -- running a tool ---------------------------------------------------------------

STDERR_TAIL_BYTES = 64 * 1024  # what is kept of a tool's stderr: its end says why it failed


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    stdout: str  # "" when it went to a file
    stderr: str  # its last STDERR_TAIL_BYTES


def run_tool(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdout: IO[bytes] | int | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    limit: str | None = None,
    install_hint: str,
) -> ToolResult:
    """Run one tool the way every plugin should: its secrets only in ``env`` (by
    default ``child_env()``: no secret of ours at all), never in argv; stdin closed;
    stderr kept in a temporary file whatever its size (a pipe could fill and hang the
    tool) and its tail returned; stdout captured as text, or streamed into ``stdout``
    (a file, or ``subprocess.DEVNULL``).

    Raises a permanent PluginError when the program is missing (naming
    ``install_hint``) or cannot be run, and when ``timeout`` seconds pass with a
    ``limit``: the operator's setting that set it, as the message shows it (``1 min
    (database.dump_timeout_minutes)``); without one it is a hung connection, exit 4. A
    non-zero exit is returned, not raised: which codes fail is the caller's to say,
    and ``tool_error`` says why.
    """
    name = Path(argv[0]).name
    with tempfile.TemporaryFile() as errors:
        try:
            done = subprocess.run(
                list(argv), env=dict(env) if env is not None else child_env(), cwd=cwd,
                stdin=subprocess.DEVNULL, stdout=stdout if stdout is not None else subprocess.PIPE,
                stderr=errors, timeout=timeout, check=False,
            )  # fmt: skip
        except FileNotFoundError:
            raise PluginError(
                f"{argv[0]} not found on PATH ({install_hint})", retryable=False
            ) from None
        except OSError as error:  # not executable, a broken interpreter line, …
            raise PluginError(
                f"{argv[0]} cannot be run: {error.strerror}", retryable=False
            ) from None
        except subprocess.TimeoutExpired:  # subprocess.run killed it
            if limit:
                raise PluginError(f"{name} timed out after {limit}", retryable=False) from None
            message = f"{name} timed out after {timeout:g}s"
            raise PluginError(message, connectivity=True) from None
        errors.seek(0, os.SEEK_END)
        errors.seek(max(0, errors.tell() - STDERR_TAIL_BYTES))
        stderr = errors.read().decode(errors="replace")
    out = done.stdout.decode(errors="replace") if stdout is None else ""
    return ToolResult(done.returncode, out, stderr)


def tool_error(
    name: str,
    result: ToolResult,
    *,
    secrets: Iterable[Secret | str | None] = (),
    describe: Callable[[str], str] = first_error_line,
    prefixed: bool = True,
    permanent: Iterable[str] = (),
    connectivity: Iterable[str] = (),
    retryable: Iterable[str] = (),
) -> PluginError:
    """The one-line PluginError for a tool that failed: the telling line of its stderr
    (``describe``; the kit's ``first_error_line`` by default) or how it ended, after
    ``name:`` unless ``prefixed=False`` (for tools whose lines name themselves:
    ``pg_dump: error: …``), ``secrets`` masked, permanent or retryable by
    ``classify_failure``."""
    line = describe(result.stderr)
    code = result.returncode
    silent = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
    message = f"{name}: {line or silent}" if prefixed else line or f"{name} {silent}"
    return classify_failure(
        mask(message, secrets),
        permanent=permanent,
        connectivity=connectivity,
        retryable=retryable,
    )


def manifest_beside(dump: Path) -> DumpManifest | None:
    """The plain manifest stored beside a restored ``dump`` (``restore --decompress``
    decrypts it too), or None when it is not there or unreadable: a guide then
    works from the project's config alone."""
    try:
        return DumpManifest.from_json(manifest_path(dump).read_text(encoding="utf-8"))
    except (OSError, BackupctlError):
        return None
