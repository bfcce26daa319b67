"""An asset folder with what a restore must keep, and a way to compare two of them.

``make_assets`` builds contents with unicode names, modes other than the umask's,
an empty folder and a symlink; ``tree`` maps every path below a root to (kind, mode,
content or link target), so ``tree(restored) == tree(original)`` checks them all.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def make_assets(root: Path) -> Path:
    assets = root / "assets"
    (assets / "empty-dir").mkdir(parents=True)
    (assets / "docs").mkdir()
    secret = assets / "docs" / "contract ü.txt"
    secret.write_text("signed ✓\n")
    secret.chmod(0o640)
    script = assets / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    (assets / "latest").symlink_to("docs/contract ü.txt")
    return assets


def tree(root: Path) -> dict[str, tuple[str, int, str]]:
    """relative path → (kind, mode, content or link target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = ("link", 0, os.readlink(path))
        elif path.is_dir():
            found[rel] = ("dir", stat.S_IMODE(path.stat().st_mode), "")
        else:
            found[rel] = ("file", stat.S_IMODE(path.stat().st_mode), path.read_text())
    return found
