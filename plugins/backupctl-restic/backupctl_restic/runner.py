"""Run restic for one project and turn its failures into one-line ``PluginError``s.

stdout is handed over line by line as restic writes it (``backup --json`` prints a
status line every second, which must not pile up in memory); stderr goes to a
temporary file and only its tail is kept, for error messages. For SFTP, ssh writes
its own errors to a log file of the run (``ssh -E``), read back the same way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from backupctl_core import PluginError
from backupctl_core.plugin_kit import classify_failure
from backupctl_restic.repository import global_options, restic_environment

log = logging.getLogger("backupctl.restic")
MASK = "********"
STDERR_TAIL_LINES = 200
MAX_DETAIL_CHARS = 300

# Exit codes: 0 ok, 1 fatal, 3 backup saved but some files unreadable (all versions);
# restic >= 0.17 adds 10 no repository, 11 lock failed, 12 wrong password.
EXIT_INCOMPLETE = 3
EXIT_NO_REPOSITORY = 10
EXIT_LOCKED = 11
EXIT_WRONG_PASSWORD = 12


@dataclass
class ResticRun:
    """What a finished restic process left behind."""

    args: list[str]
    returncode: int
    stdout: list[str] = field(default_factory=list)  # only when not streamed elsewhere
    stderr_tail: list[str] = field(default_factory=list)
    json_errors: list[dict[str, Any]] = field(default_factory=list)  # first few only
    json_error_count: int = 0
    timed_out: bool = False  # killed at its time limit

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Restic:
    """restic bound to one project's repository, password and cache."""

    def __init__(self, project: Any, settings: Any) -> None:
        self.project = project
        self.settings = settings
        self.env, base_argv = restic_environment(project, settings)
        self.program = base_argv[0]
        self.repository = self.env["RESTIC_REPOSITORY"]
        self._password = self.env["RESTIC_PASSWORD"]

    def run(
        self,
        args: Sequence[str],
        on_stdout_line: Callable[[str], None] | None = None,
        limit_seconds: float | None = None,
    ) -> ResticRun:
        """Run ``restic ARGS``; stdout lines go to ``on_stdout_line`` (else are kept).

        Self-healing locks: when the repository is locked, ``restic unlock`` (which
        removes only *stale* locks: older than 30 minutes, or of a process on this
        host that no longer exists, e.g. a killed run) and one more try. A lock of a
        live process stays, and the caller's retry policy waits for it as before.
        """
        run = self._run_once(args, on_stdout_line, limit_seconds)
        if run.ok or not args or args[0] == "unlock" or classify(run).kind != "locked":
            return run
        unlock = self._run_once(["unlock"], None)
        if not unlock.ok:
            return run
        log.warning("%s: locked by %s; stale locks removed, trying again",
                    self.repository, _lock_holder(run))  # fmt: skip
        return self._run_once(args, on_stdout_line, limit_seconds)

    def _run_once(
        self,
        args: Sequence[str],
        on_stdout_line: Callable[[str], None] | None,
        limit_seconds: float | None = None,
    ) -> ResticRun:
        run = ResticRun(args=list(args), returncode=-1)
        sink = on_stdout_line or (lambda line: run.stdout.append(line))
        with tempfile.TemporaryDirectory(prefix="backupctl-restic-") as scratch:
            ssh_log = Path(scratch) / "ssh.log"
            options = global_options(self.project, self.settings, ssh_log_file=ssh_log)
            argv = [self.program, *options, *args]
            self._run(argv, sink, run, Path(scratch) / "stderr", limit_seconds)
            if ssh_log.exists():  # ssh's own errors, ahead of restic's
                ssh_lines = [f"subprocess ssh: {line}" for line in _lines(ssh_log) if line]
                run.stderr_tail = [*ssh_lines[-20:], *run.stderr_tail]
        return run

    def _run(
        self,
        argv: list[str],
        sink: Callable[[str], None],
        run: ResticRun,
        stderr_path: Path,
        limit_seconds: float | None = None,
    ) -> None:
        with stderr_path.open("w+b") as stderr_file:
            try:
                process = subprocess.Popen(
                    argv,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=stderr_file,
                    text=True,
                    errors="replace",
                    start_new_session=True,  # its ssh too: one process group to stop
                )
            except OSError as error:
                raise PluginError(f"cannot start restic: {error}", retryable=False) from error

            def stop_at_limit() -> None:
                run.timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)

            timer = threading.Timer(limit_seconds, stop_at_limit) if limit_seconds else None
            if timer is not None:
                timer.start()
            with process:
                assert process.stdout is not None
                try:
                    for line in process.stdout:
                        sink(line.rstrip("\n"))
                except BaseException:
                    process.kill()
                    raise
                finally:
                    if timer is not None:
                        timer.cancel()
                run.returncode = process.wait()
            stderr_file.seek(0)
            _read_stderr(stderr_file, run)

    def json(self, args: Sequence[str]) -> Any:
        """Run a command whose stdout is one JSON document; ``PluginError`` on failure."""
        run = self.run(args)
        if not run.ok:
            raise self.error(run)
        return _json_document(run.stdout, command=args[0])

    def error(self, run: ResticRun) -> PluginError:
        """The ``PluginError`` for a failed run: one line, password masked."""
        failure = classify(run)
        command = run.args[0] if run.args else "restic"
        message = f"restic {command} failed: {failure.reason}"
        if failure.line:
            message += f": {failure.line}"
        return PluginError(
            self.mask(message), retryable=failure.retryable, connectivity=failure.connectivity
        )

    def mask(self, text: str) -> str:
        return text.replace(self._password, MASK) if self._password else text


# -- reading restic's output ------------------------------------------------------------


def _lock_holder(run: ResticRun) -> str:
    """``PID 3330 on vm`` from restic's lock message, for the log."""
    for line in run.stderr_tail:
        match = re.search(r"locked (?:exclusively )?by (PID \d+ on \S+)", line)
        if match:
            return match.group(1)
    return "another process"


def _read_stderr(stream: IO[bytes], run: ResticRun) -> None:
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    for raw in stream:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line:
            continue
        if line.startswith("{"):
            # backup --json reports unreadable files as JSON lines on stderr.
            try:
                item = json.loads(line)
            except ValueError:
                item = None
            if isinstance(item, dict) and item.get("message_type") == "error":
                run.json_error_count += 1
                if len(run.json_errors) < 5:
                    run.json_errors.append(item)
                continue
        tail.append(line)
    run.stderr_tail = list(tail)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _json_document(lines: list[str], command: str) -> Any:
    text = "\n".join(lines).strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    # Some versions print a text line around the JSON; take the line that parses.
    for line in lines:
        if line.lstrip().startswith(("[", "{")):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise PluginError(f"restic {command}: unexpected output, not JSON: {text[:200]!r}")


# -- classifying failures ----------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    kind: str
    reason: str
    patterns: tuple[str, ...]  # regexes, most specific first; matched case-insensitively
    exit_codes: tuple[int, ...] = ()
    retryable: bool = True
    connectivity: bool = False


@dataclass(frozen=True)
class Failure:
    """Why a restic run failed: a ``kind`` to branch on, and the words for a message."""

    kind: str  # host-key | ssh-login | password | no-repository | locked | unknown-host
    # | unreachable | other
    reason: str
    line: str  # the most useful stderr line, cleaned
    retryable: bool = True
    connectivity: bool = False


# First matching rule wins. Host-key and login failures come before the generic
# "cannot reach" rule because ssh reports them together with the sftp session error.
_RULES: tuple[_Rule, ...] = (
    _Rule(
        "host-key",
        "the SFTP server's host key is not trusted (add it to known_hosts)",
        (
            r"REMOTE HOST IDENTIFICATION HAS CHANGED",
            r"host key is known for .* strict checking",
            r"Host key verification failed",
        ),
        retryable=False,
        connectivity=True,
    ),
    _Rule(
        "ssh-login",
        "the SFTP server refused the SSH login",
        (r"Permission denied \(", r"Too many authentication failures"),
        retryable=False,
        connectivity=True,
    ),
    _Rule(
        "password",
        "wrong repository password",
        (r"wrong password or no key found",),
        exit_codes=(EXIT_WRONG_PASSWORD,),
        retryable=False,
    ),
    _Rule(
        "no-repository",
        "no restic repository at this location",
        (r"unable to open config file", r"Is there a repository at the following location"),
        exit_codes=(EXIT_NO_REPOSITORY,),
        retryable=False,
    ),
    _Rule(
        "locked",
        "the repository is locked by another restic process",
        (r"repository is already locked",),
        exit_codes=(EXIT_LOCKED,),
    ),
    _Rule(
        "unknown-host",
        "the SFTP server's host name does not resolve",
        (r"Could not resolve hostname .*: Name or service not known", r"no such host"),
        retryable=False,
        connectivity=True,
    ),
    _Rule(
        "unreachable",
        "cannot reach the SFTP server",
        (
            r"Could not resolve hostname",  # temporary DNS failure: the rule above did not match
            r"Connection refused",
            r"Connection timed out",
            r"No route to host",
            r"Network is unreachable",
            r"Connection reset",
            r"Connection closed by",
            r"unable to start the sftp session",
        ),
        connectivity=True,
    ),
)


def _clean(line: str) -> str:
    for prefix in ("subprocess ssh: ", "Fatal: "):
        line = line.removeprefix(prefix)
    line = " ".join(line.split()).strip("@ ")  # ssh frames some warnings in @@@
    return line if len(line) <= MAX_DETAIL_CHARS else line[: MAX_DETAIL_CHARS - 1] + "…"


def classify(run: ResticRun) -> Failure:
    """Why ``run`` failed, judged from its stderr (and exit code on newer restic)."""
    lines = run.stderr_tail
    for rule in _RULES:
        for pattern in rule.patterns:
            regex = re.compile(pattern, re.IGNORECASE)
            line = next((candidate for candidate in lines if regex.search(candidate)), None)
            if line is not None:
                return _failure(rule, _clean(line))
        if run.returncode in rule.exit_codes:
            return _failure(rule, _last_useful(lines))
    # Not one of restic's own: the kit's shared vocabulary decides (a reset connection
    # heals, anything unrecognised is permanent: retrying a repository folder that can
    # never be created only delays the same error).
    line = _last_useful(lines)
    kind = classify_failure(" ".join(lines[-5:]))
    return Failure("other", f"exit code {run.returncode}", line, kind.retryable, kind.connectivity)


def _failure(rule: _Rule, line: str) -> Failure:
    return Failure(rule.kind, rule.reason, line, rule.retryable, rule.connectivity)


def _last_useful(lines: list[str]) -> str:
    fatal = [line for line in lines if line.startswith("Fatal:")]
    if fatal:
        return _clean(fatal[-1])
    return _clean(lines[-1]) if lines else ""
