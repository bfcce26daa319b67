"""Run shell commands on a terminal the way an operator would, typing passwords.

``backupctl restore --guide`` prints commands meant for a person at a terminal:
``mysql --password`` and the PostgreSQL tools ask for the password there (not on
stdin, which may carry the dump). ``run_answering_password_prompts`` runs one such
command verbatim with ``bash -c`` on a new pseudo-terminal and types the password
at each prompt; ``follow_guide`` does that for every command of a guide.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import time
from collections.abc import Iterable, Mapping

# mysql/mariadb: "Enter password:"; createdb, pg_restore: "Password:"; psql:
# "Password for user NAME:".
ROWS, COLUMNS = 50, 200
PASSWORD_PROMPT = re.compile(rb"(?:Enter password|Password(?: for user [^:\r\n]+)?):")


def run_answering_password_prompts(
    command: str,
    password: str,
    timeout: float = 120,
    *,
    env: Mapping[str, str] | None = None,
    prompts: int = 1,
) -> str:
    """Run ``command`` with bash on a terminal, typing ``password`` at every prompt.

    Fails unless the command exits 0 after exactly ``prompts`` password prompts.
    ``env`` replaces the environment (default: ours). Returns what the terminal showed.
    """
    pid, terminal = pty.fork()
    if pid == 0:  # the child: bash on the new terminal
        try:
            # A terminal of a usual size: with 0 rows psql pages even one line of output.
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
            if env is None:
                os.execvp("bash", ["bash", "-c", command])
            else:
                os.execvpe("bash", ["bash", "-c", command], dict(env))
        finally:
            os._exit(127)
    output, answered = b"", 0
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([terminal], [], [], max(0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"timed out: {command}\n{output.decode(errors='replace')}")
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # EIO: the command finished and closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if len(PASSWORD_PROMPT.findall(output)) > answered:
                os.write(terminal, password.encode() + b"\n")
                answered += 1
    finally:
        os.close(terminal)
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, f"{command}\n{text}"
    assert answered == prompts, f"expected {prompts} password prompt(s): {command}\n{text}"
    return text


def follow_guide(
    guide: Iterable[str], password: str, *, env: Mapping[str, str] | None = None
) -> None:
    """Run every command of a restore guide (comments skipped), one prompt each."""
    for command in guide:
        if not command.startswith("#"):
            run_answering_password_prompts(command, password, env=env)
