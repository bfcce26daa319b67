"""Peak memory and time of GPG encryption through the built-in plugin.

    .venv/bin/python bench/gpg_memory.py                  # 0, 100 and 1024 MiB
    .venv/bin/python bench/gpg_memory.py --sizes 100,1024 --compare-compression

For each size a file of random bytes (incompressible, like a compressed dump)
is written, then a fresh child Python process encrypts it through the plugin's
``backupctl_encrypt`` hook and reports its own peak RSS (the Python side) and
the peak RSS of its children (gpg), from ``getrusage``. Memory is flat when
the 1 GiB run peaks where the 100 MiB and the empty run do.

Needs twice the largest size in free space under --dir (plaintext and .gpg
exist together until the plaintext is removed). Keys are throwaway
ed25519/cv25519 keys; the key type does not change the bulk (AES) work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
RECIPIENT = "bench@example.com"


def _settings(base: Path, keys: Path):  # type: ignore[no-untyped-def]
    from backupctl_core.domain.settings import GlobalSettings

    return GlobalSettings(backup_base_dir=base, gpg_keys_dir=keys)


class GpgWatcher(threading.Thread):
    """Polls /proc for this process's gpg children and keeps their peak RSS
    (VmHWM). ``getrusage(RUSAGE_CHILDREN)`` cannot say it: Linux carries the
    forking Python's RSS over exec into the child's ru_maxrss."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kib = 0
        self.seen: set[int] = set()
        self.done = threading.Event()

    def _sample(self) -> None:
        me = str(os.getpid())
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if fields.get("PPid", "").strip() != me or fields.get("Name", "").strip() != "gpg":
                continue
            self.seen.add(int(entry))
            hwm = fields.get("VmHWM", "0 kB").split()[0]
            self.peak_kib = max(self.peak_kib, int(hwm))

    def run(self) -> None:
        while not self.done.is_set():
            self._sample()
            self.done.wait(0.01)

    def stop(self) -> None:
        self.done.set()
        self.join()


def child(base: Path, keys: Path, dump: Path, compress: bool) -> None:
    """Runs in the child process: encrypt one dump, print the measurements."""
    sys.path.insert(0, str(REPO))
    from backupctl_core.builtin import gpg as plugin
    from backupctl_core.domain.artifacts import DumpArtifact
    from backupctl_core.domain.settings import EncryptionSettings, ProjectSettings, ResticSettings

    if compress:
        plugin.ENCRYPT_OPTIONS = ()  # gpg's default compression, for comparison
    project = ProjectSettings(
        name="bench",
        restic=ResticSettings(repository_path="/unused"),
        encryption=EncryptionSettings(enabled=True, type="gpg", recipient=RECIPIENT),
    )
    artifact = DumpArtifact(dump, dump.stat().st_size, "random")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    watcher = GpgWatcher()
    watcher.start()
    started = time.perf_counter()
    encrypted = plugin.backupctl_encrypt(
        project=project, settings=_settings(base, keys), artifact=artifact
    )
    seconds = time.perf_counter() - started
    watcher.stop()
    result = {
        "python_before_kib": before,
        "python_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "gpg_peak_kib": watcher.peak_kib,
        "gpg_processes_seen": len(watcher.seen),
        "seconds": seconds,
        "encrypted_bytes": encrypted.size_bytes,
    }
    encrypted.path.unlink()
    print(json.dumps(result))


def write_random(path: Path, size: int) -> None:
    chunk = 4 * MIB
    with path.open("wb") as handle:
        left = size
        while left > 0:
            handle.write(os.urandom(min(chunk, left)))
            left -= chunk
    path.chmod(0o600)


def make_keys(root: Path) -> tuple[Path, Path]:
    """An owner keyring with a throwaway key; its public key in a keys dir."""
    import gnupg

    owner = root / "owner"
    owner.mkdir(mode=0o700)
    keys = root / "keys"
    keys.mkdir()
    gpg = gnupg.GPG(gnupghome=str(owner))
    created = gpg.gen_key(
        "Key-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\n"
        "Subkey-Type: ecdh\nSubkey-Curve: cv25519\nSubkey-Usage: encrypt\n"
        f"Name-Real: bench\nName-Email: {RECIPIENT}\n%no-protection\n%commit\n"
    )
    if not created.fingerprint:
        raise SystemExit(f"key generation failed: {created.stderr}")
    (keys / "bench.asc").write_text(gpg.export_keys(created.fingerprint))
    return owner, keys


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpg_version = subprocess.run(
        ["gpg", "--version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    import gnupg

    return (
        f"{platform.node()}: {platform.system()} {platform.release()}, {model},"
        f" {os.cpu_count()} cores; {gpg_version}; python-gnupg {gnupg.__version__};"
        f" Python {platform.python_version()}"
    )


def run(sizes: list[int], directory: Path | None, compare: bool) -> None:
    root = Path(tempfile.mkdtemp(prefix="gpgb", dir=directory))
    base = root / "b"
    dumps = base / "bench"
    dumps.mkdir(parents=True, mode=0o700)
    owner, keys = make_keys(root)
    runs = [(size, False) for size in sizes]
    if compare:
        runs += [(size, True) for size in sizes if size > 0][:1]
    print(f"# {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  {machine()}")
    header = (
        f"{'dump':>9}  {'gpg options':<20} {'seconds':>8} {'MiB/s':>7}"
        f" {'python peak RSS':>16} {'gpg peak RSS':>13}"
    )
    print(header)
    try:
        for size_mib, compress in runs:
            dump = dumps / f"bench_backup_{size_mib}.dump"
            write_random(dump, size_mib * MIB)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(base), str(keys), str(dump)]
                + (["--compress"] if compress else []),
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if out.returncode != 0:
                raise SystemExit(f"child failed:\n{out.stderr}")
            data = json.loads(out.stdout)
            rate = size_mib / data["seconds"] if size_mib else 0.0
            options = "default compression" if compress else "--compress-algo none"
            python_mib = data["python_peak_kib"] / 1024
            gpg_peak = data["gpg_peak_kib"] / 1024
            gpg_mib = f"{gpg_peak:>9.1f} MiB" if data["gpg_processes_seen"] else "too quick"
            print(
                f"{size_mib:>5} MiB  {options:<20} {data['seconds']:>8.2f} {rate:>7.0f}"
                f" {python_mib:>12.1f} MiB {gpg_mib:>13}"
            )
            dump.unlink(missing_ok=True)
    finally:
        for home in (owner, base / ".gnupg"):
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,100,1024", help="MiB, comma separated")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the test files")
    parser.add_argument(
        "--compare-compression",
        action="store_true",
        help="also time the smallest non-empty size with gpg's default compression",
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("BASE", "KEYS", "DUMP"), help=argparse.SUPPRESS
    )
    parser.add_argument("--compress", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        base, keys, dump = (Path(p) for p in args.child)
        child(base, keys, dump, args.compress)
        return
    run([int(s) for s in args.sizes.split(",")], args.dir, args.compare_compression)


if __name__ == "__main__":
    main()
