"""``backupctl`` with measuring hooks, in-process.

    python bench/_patched_cli.py [--stats FILE] -- <backupctl args>

Runs exactly what the ``backupctl`` console script runs (``backupctl_core.cli.
main:main``) in this process. Used by the bench scripts to measure from inside
(peak RSS of this process, time spent in child processes).

With ``--stats FILE`` a JSON object is written at exit:
  rss_peak_kib     ``getrusage(RUSAGE_SELF).ru_maxrss``: this process only
  cpu_self         user + system CPU seconds of this process only
  children         ``[[program, label, seconds], ...]``: every subprocess's wall
                   time, ``Popen()`` to its reaping; the label is its first
                   argument that is no option, path or assignment (restic's
                   command), else its first argument without its `=value`
  hooks            ``{hook: seconds}`` for in-process dumper hooks
                   (backupctl_sqlite dump/verify), timed around the call
  wall             seconds from start to exit
"""

from __future__ import annotations

import atexit
import functools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()


class Stats:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.children: list[list[Any]] = []
        self.hooks: dict[str, float] = {}
        self._install_popen()
        self._install_hooks()
        atexit.register(self.write)

    def _install_popen(self) -> None:
        stats = self
        original_init = subprocess.Popen.__init__
        original_wait = subprocess.Popen.wait

        @functools.wraps(original_init)
        def init(self: subprocess.Popen[Any], args: Any, *a: Any, **kw: Any) -> None:
            self._bench_started = time.perf_counter()  # type: ignore[attr-defined]
            self._bench_args = args  # type: ignore[attr-defined]
            original_init(self, args, *a, **kw)

        @functools.wraps(original_wait)
        def wait(self: subprocess.Popen[Any], timeout: float | None = None) -> int:
            code = original_wait(self, timeout)
            if not getattr(self, "_bench_done", False):
                self._bench_done = True  # type: ignore[attr-defined]
                argv = self._bench_args  # type: ignore[attr-defined]
                words = [argv] if isinstance(argv, str | bytes) else [str(w) for w in argv]
                program = Path(str(words[0])).name
                plain = [w for w in words[1:] if not w.startswith("-") and "=" not in w
                         and "/" not in w]  # fmt: skip
                # else the first option without its value (which may be a temp path)
                first = words[1].split("=", 1)[0] if len(words) > 1 else ""
                command = plain[0] if plain else first
                elapsed = time.perf_counter() - self._bench_started  # type: ignore[attr-defined]
                stats.children.append([program, command, elapsed])
            return code

        subprocess.Popen.__init__ = init  # type: ignore[method-assign]
        subprocess.Popen.wait = wait  # type: ignore[method-assign]

    def _install_hooks(self) -> None:
        try:
            import backupctl_sqlite.plugin as sqlite_plugin
        except ImportError:
            return
        for name in ("backupctl_dump", "backupctl_verify"):
            original = getattr(sqlite_plugin, name)

            def timed(*args: Any, __original: Any = original, __name: str = name,
                      **kwargs: Any) -> Any:  # fmt: skip
                started = time.perf_counter()
                try:
                    return __original(*args, **kwargs)
                finally:
                    key = f"sqlite.{__name.removeprefix('backupctl_')}"
                    self.hooks[key] = self.hooks.get(key, 0.0) + time.perf_counter() - started

            wrapper = functools.wraps(original)(timed)
            setattr(sqlite_plugin, name, wrapper)

    def write(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        data = {
            "rss_peak_kib": usage.ru_maxrss,
            "cpu_self": usage.ru_utime + usage.ru_stime,
            "children": self.children,
            "hooks": self.hooks,
            "wall": time.perf_counter() - STARTED,
        }
        self.path.write_text(json.dumps(data))


def main() -> None:
    argv = sys.argv[1:]
    if "--" not in argv:
        raise SystemExit(__doc__)
    split = argv.index("--")
    ours, rest = argv[:split], argv[split + 1 :]
    stats_path = None
    while ours:
        option = ours.pop(0)
        if option == "--stats":
            stats_path = Path(ours.pop(0))
        else:
            raise SystemExit(f"unknown option {option}")
    if stats_path is not None:
        Stats(stats_path)
    sys.argv = ["backupctl", *rest]
    from backupctl_core.cli.main import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
