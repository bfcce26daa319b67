"""backupctl's GPG keyring and the gpg runs behind the ``encryption:gpg`` plugin
(``builtin/gpg.py``: the plugin itself, a few hooks over these functions).

Keyring. backupctl keeps its keys in a GNUPGHOME of its own,
``{BACKUP_BASE_DIR}/.gnupg`` (mode 0700), never the operator's ``~/.gnupg``.
``import_keys_from_dir`` imports every ``*.gpg``, ``*.asc`` and ``*.pub`` file
in ``GPG_KEYS_DIR`` (by ``backupctl serve`` at start, and here on demand when
a recipient's public key or a secret key is missing or unusable);
``backupctl config import-gpg-key FILE`` imports one file. Whatever is
imported is trusted explicitly (ownertrust "ultimate" for exactly the imported
fingerprints); encryption never uses ``--trust-model always``.

Streaming. gpg reads the dump and writes the ciphertext itself: the dump is
gpg's file argument and the output its ``--output``, so no byte of a dump
passes through Python and memory stays flat whatever the dump's size (see
bench/gpg_memory.py). Output is created 0600 under a ``.partial`` name and
renamed into place only when gpg succeeds, so a half-written ``.gpg`` never
looks like a finished one. ``--compress-algo none``: dumps are already
compressed; compressing again costs ~6x the time for the same size.

Network. Keys are never looked up on the network (no WKD, no keyserver): only
backupctl's keyring counts. Encryption and checks run gpg with
``--no-autostart`` (they need no gpg-agent); key import and decryption need
the agent, which gpg starts for that keyring.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from attrs import frozen

from backupctl_core.domain.artifacts import CheckResult
from backupctl_core.domain.errors import ConfigError, PluginError
from backupctl_core.domain.settings import GlobalSettings
from backupctl_core.plugin_kit import child_env

log = logging.getLogger("backupctl.gpg")

KEY_FILE_PATTERNS = ("*.gpg", "*.asc", "*.pub")
MAX_KEY_FILE_BYTES = 16 * 1024 * 1024
CHECK_NAME = "gpg key"
EXPIRY_WARNING = timedelta(days=14)
NO_RECIPIENT = (
    "encryption is enabled but no recipient is set (encryption.recipient or GPG_RECIPIENT)"
)

# Every gpg call: this keyring only, nothing from the network.
GPG_OPTIONS = ("--no-auto-key-retrieve", "--auto-key-locate", "clear,local")
ENCRYPT_OPTIONS = ("--compress-algo", "none")
# Fail at once instead of waiting for a pinentry nobody can answer.
DECRYPT_OPTIONS = ("--pinentry-mode", "error")

# INV_RECP reason codes (gnupg doc/DETAILS).
INVALID_RECIPIENT_REASONS = {
    "1": "no public key found",
    "2": "the recipient matches more than one key",
    "3": "the key cannot be used for encryption",
    "4": "the key is revoked",
    "5": "the key has expired",
    "10": "the key is not trusted",
    "13": "the key is disabled",
    "14": "the recipient is not a valid key specification",
}

UNUSABLE_VALIDITY = {"r": "is revoked", "d": "is disabled", "i": "is invalid"}


@frozen
class ImportedKey:
    """A key now in backupctl's keyring (and trusted for encryption)."""

    fingerprint: str
    user_ids: tuple[str, ...]
    secret: bool = False
    expires: datetime | None = None

    @property
    def expired(self) -> bool:
        return self.expires is not None and self.expires <= datetime.now(UTC)


def keyring_home(settings: GlobalSettings) -> Path:
    """backupctl's own GNUPGHOME: ``GPG_HOME``, else ``{BACKUP_BASE_DIR}/.gnupg``."""
    return settings.gpg_home or settings.backup_base_dir / ".gnupg"


# -- helpers ------------------------------------------------------------------


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def _day(moment: datetime) -> str:
    return moment.date().isoformat()


def _statuses(result: Any, keyword: str) -> list[str]:
    """The arguments of every ``[GNUPG:] KEYWORD ...`` status line gpg wrote."""
    prefix = f"[GNUPG:] {keyword}"
    found: list[str] = []
    for line in (getattr(result, "stderr", "") or "").splitlines():
        if line == prefix or line.startswith(prefix + " "):
            found.append(line[len(prefix) :].strip())
    return found


def _gpg_reason(result: Any, default: str = "gpg failed") -> str:
    """gpg's own last error line, without the ``gpg:`` prefix."""
    lines = [
        line[5:].strip()
        for line in (getattr(result, "stderr", "") or "").splitlines()
        # not the indented statistics, nor the trustdb chatter
        if line.startswith("gpg: ")
        and not line.startswith("gpg:  ")
        and not line.startswith(("gpg: Total number processed", "gpg: checking the trustdb"))
    ]
    return lines[-1].rstrip(".") if lines else default


def _create_private(path: Path) -> None:
    """An empty file only the owner may read; gpg then writes into it."""
    path.unlink(missing_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)  # gpg warns about (and we do not want) a readable keyring


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789ABCDEF" for c in text)


def _matches(key: dict[str, Any], recipient: str) -> bool:
    """Whether a scanned key answers to ``recipient`` the way gpg's ``-r`` would."""
    spec = recipient.strip()
    hex_spec = spec.upper().removeprefix("0X")
    if len(hex_spec) >= 8 and _is_hex(hex_spec):
        fingerprints = [key.get("fingerprint") or ""]
        fingerprints += [sub[2] for sub in key.get("subkeys", []) if sub[2]]
        return any(fpr.upper().endswith(hex_spec) for fpr in fingerprints)
    uids: list[str] = key.get("uids", [])
    if spec.startswith("="):
        return spec[1:] in uids
    return any(spec.lower() in uid.lower() for uid in uids)


def _encryption_expiry(key: dict[str, Any]) -> datetime | None:
    """When the key stops being usable for encryption (None: never)."""
    moments = [m for m in [_timestamp(key.get("expires"))] if m is not None]
    subkeys = [
        s
        for s in key.get("subkey_info", {}).values()
        if "e" in s.get("cap", "") and s.get("trust") not in ("e", "r", "d", "i")
    ]
    if subkeys and all(s.get("expires") for s in subkeys):
        moments.append(max(_timestamp(s["expires"]) or datetime.now(UTC) for s in subkeys))
    return min(moments) if moments else None


def _key_problem(key: dict[str, Any], *, check_trust: bool) -> str | None:
    """Why ``key`` cannot be used to encrypt, or None when it can."""
    fpr = key.get("fingerprint", "?")
    validity = key.get("trust", "")
    if validity in UNUSABLE_VALIDITY:
        return f"key {fpr} {UNUSABLE_VALIDITY[validity]}"
    expires = _timestamp(key.get("expires"))
    if validity == "e" or (expires is not None and expires <= datetime.now(UTC)):
        when = f" on {_day(expires)}" if expires else ""
        return f"key {fpr} expired{when}"
    if "E" not in key.get("cap", ""):
        subkeys = [s for s in key.get("subkey_info", {}).values() if "e" in s.get("cap", "")]
        expired = [_timestamp(s.get("expires")) for s in subkeys if s.get("trust") == "e"]
        if subkeys and len(expired) == len(subkeys):
            last = max((e for e in expired if e is not None), default=None)
            when = f" on {_day(last)}" if last else ""
            return f"key {fpr}: its encryption subkey expired{when}"
        return f"key {fpr} has no usable encryption subkey"
    if check_trust and validity not in ("u", "f"):
        return (
            f"key {fpr} is not trusted in the backupctl keyring"
            " (import it with `backupctl config import-gpg-key <file>`, which trusts it)"
        )
    return None


# -- the keyring --------------------------------------------------------------


class Keyring:
    """backupctl's GNUPGHOME, driven through python-gnupg.

    ``agent=False`` runs gpg with ``--no-autostart``: enough for listing,
    public-key work and encryption, and it starts no gpg-agent.
    """

    def __init__(
        self, settings: GlobalSettings, *, agent: bool = False, home: Path | None = None
    ) -> None:
        self.settings = settings
        self.home = home or keyring_home(settings)
        try:
            _ensure_private_dir(self.home)
        except OSError as error:
            raise PluginError(
                f"cannot create the backupctl keyring {self.home}: {error}", retryable=False
            ) from None
        try:
            import gnupg
        except ImportError:  # pragma: no cover - a dependency of backupctl-core
            raise PluginError("python-gnupg is not installed", retryable=False) from None
        options = [*GPG_OPTIONS] + ([] if agent else ["--no-autostart"])
        try:
            self.gpg: Any = gnupg.GPG(gnupghome=str(self.home), options=options, env=child_env())
        except (OSError, ValueError) as error:
            raise PluginError(f"cannot run gpg: {error}", retryable=False) from None
        self.gpg.encoding = "utf-8"  # user ids are UTF-8

    # -- explanations
    def stop_agent(self) -> None:
        """Stop the gpg-agent this keyring started (imports, decryption): each keyring
        would otherwise keep one running after backupctl exits."""
        import subprocess

        try:
            subprocess.run(
                ["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
                env=child_env(), capture_output=True, timeout=10, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as error:
            log.debug("gpg-agent of %s not stopped: %s", self.home, error)

    def where(self) -> str:
        """Where keys come from, for error messages (the real keyring, even
        when this instance looks through a scratch one)."""
        keys_dir = self.settings.gpg_keys_dir
        source = (
            f"keys directory {keys_dir} (GPG_KEYS_DIR)"
            if keys_dir is not None
            else "no keys directory (GPG_KEYS_DIR is not set)"
        )
        return f"keyring {keyring_home(self.settings)}, {source}"

    # -- listing
    def keys(self, spec: str | Sequence[str], *, secret: bool = False) -> list[dict[str, Any]]:
        return list(self.gpg.list_keys(secret=secret, keys=spec))

    def recipient_key(self, recipient: str) -> tuple[dict[str, Any] | None, str | None]:
        """(a key gpg will encrypt to, None) or (None, why there is none)."""
        keys = self.keys(recipient)
        if not keys:
            return None, f"no public key for '{recipient}' in the backupctl keyring"
        problems = []
        for key in keys:
            problem = _key_problem(key, check_trust=True)
            if problem is None:
                return key, None
            problems.append(problem)
        return None, "; ".join(problems)

    def scan_keys_dir(self, recipient: str) -> tuple[dict[str, Any] | None, Path | None, str]:
        """Look for ``recipient`` in GPG_KEYS_DIR without importing anything."""
        problems: list[str] = []
        for path in key_files(self.settings):
            for key in self.gpg.scan_keys(str(path)):
                if not _matches(key, recipient):
                    continue
                problem = _key_problem(key, check_trust=False)
                if problem is None:
                    return key, path, ""
                problems.append(f"{problem} (in {path.name})")
        return None, None, "; ".join(problems)

    def describe(self, fingerprints: Sequence[str]) -> list[ImportedKey]:
        public = {key["fingerprint"]: key for key in self.keys(list(fingerprints))}
        secret = {key["fingerprint"] for key in self.keys(list(fingerprints), secret=True)}
        return [
            ImportedKey(
                fingerprint=fpr,
                user_ids=tuple(public.get(fpr, {}).get("uids", ())),
                secret=fpr in secret,
                expires=_timestamp(public.get(fpr, {}).get("expires")),
            )
            for fpr in fingerprints
        ]

    # -- import and trust
    def import_file(self, path: Path) -> list[ImportedKey]:
        """Import the keys in ``path`` and trust them; ``ConfigError`` for a bad file."""
        try:
            if not path.exists():
                raise ConfigError(f"{path}: no such key file")
            if not path.is_file():
                raise ConfigError(f"{path}: not a key file (not a regular file)")
            size = path.stat().st_size
            if size > MAX_KEY_FILE_BYTES:
                raise ConfigError(f"{path}: {size} bytes is too large for a key file")
            data = path.read_bytes()
        except OSError as error:
            raise ConfigError(f"{path}: cannot read key file: {error.strerror or error}") from None
        result = self.gpg.import_keys(data)
        ok = [r["fingerprint"] for r in result.results if "ok" in r and r["fingerprint"]]
        fingerprints = list(dict.fromkeys(ok))
        if not fingerprints:
            reason = _gpg_reason(result, "no key found").replace("[stdin]", path.name)
            raise ConfigError(f"{path}: no OpenPGP key imported ({reason})")
        self.trust(fingerprints)
        return self.describe(fingerprints)

    def trust(self, fingerprints: Sequence[str]) -> None:
        """Trust exactly these keys for encryption (ownertrust ultimate)."""
        try:
            self.gpg.trust_keys(list(fingerprints), "TRUST_ULTIMATE")
        except ValueError as error:
            raise PluginError(
                f"cannot trust {', '.join(fingerprints)} in {self.home}: {error}", retryable=False
            ) from None

    # -- encryption
    def encrypt(self, source: Path, output: Path, recipient: str) -> Any:
        """gpg reads ``source`` and writes ``output`` (which must exist, 0600)."""
        return self.gpg.encrypt_file(
            io.BytesIO(b""),  # nothing on stdin: gpg reads the file argument
            recipient,
            armor=False,
            output=str(output),
            extra_args=[*ENCRYPT_OPTIONS, "--", str(source)],
        )

    def decrypt(self, source: Path, output: Path) -> Any:
        return self.gpg.decrypt_file(
            io.BytesIO(b""),
            passphrase=None,
            output=str(output),
            extra_args=[*DECRYPT_OPTIONS, "--", str(source)],
        )

    def encrypt_problem(self, recipient: str, result: Any) -> str:
        if _statuses(result, "INV_RECP") or _statuses(result, "KEYEXPIRED"):
            _key, problem = self.recipient_key(recipient)
            if problem:
                return problem
            codes = [s.split()[0] for s in _statuses(result, "INV_RECP") if s]
            reasons = [INVALID_RECIPIENT_REASONS.get(c, "no specific reason") for c in codes]
            return f"gpg rejected the recipient ({', '.join(reasons) or _gpg_reason(result)})"
        return _gpg_reason(result)


# -- key import ---------------------------------------------------------------


def key_files(settings: GlobalSettings) -> list[Path]:
    """The key files in GPG_KEYS_DIR (``*.gpg``, ``*.asc``, ``*.pub``), sorted."""
    keys_dir = settings.gpg_keys_dir
    if keys_dir is None:
        return []
    if not keys_dir.is_dir():
        raise ConfigError(f"GPG_KEYS_DIR {keys_dir} is not a directory")
    found = {path for pattern in KEY_FILE_PATTERNS for path in keys_dir.glob(pattern)}
    return sorted(path for path in found if path.is_file())


def import_key_file(settings: GlobalSettings, path: Path) -> list[ImportedKey]:
    """Import (and trust) the keys in one file into backupctl's keyring.

    A file that cannot be read or holds no key raises ``ConfigError``."""
    keyring = Keyring(settings, agent=True)
    try:
        return keyring.import_file(path)
    finally:
        keyring.stop_agent()


def import_keys_from_dir(settings: GlobalSettings) -> list[ImportedKey]:
    """Import (and trust) every key file in GPG_KEYS_DIR; [] when it is not set.

    A file that holds no key is logged and skipped, so one bad file does not
    keep the others out; a GPG_KEYS_DIR that is not a directory raises
    ``ConfigError``."""
    files = key_files(settings)
    if not files:
        return []
    keyring = Keyring(settings, agent=True)
    imported: list[ImportedKey] = []
    try:
        for path in files:
            try:
                imported += keyring.import_file(path)
            except ConfigError as error:
                log.warning("GPG_KEYS_DIR: %s", error.message)
    finally:
        keyring.stop_agent()
    return imported


def _import_on_demand(settings: GlobalSettings) -> bool:
    """Import GPG_KEYS_DIR before a second attempt; whether there was anything."""
    if settings.gpg_keys_dir is None:
        return False
    try:
        return bool(import_keys_from_dir(settings))
    except (ConfigError, PluginError) as error:
        log.warning("importing keys from GPG_KEYS_DIR failed: %s", error.message)
        return False


# -- encrypt / decrypt / check ------------------------------------------------


def _partial(target: Path) -> Path:
    return target.with_name(target.name + ".partial")


def encrypt_file(settings: GlobalSettings, recipient: str, source: Path) -> Path:
    """Encrypt ``source`` to ``<source>.gpg`` (0600) for ``recipient`` and remove
    ``source``; on failure remove the partial output and raise ``PluginError``."""
    what = f"cannot encrypt {source.name} for recipient '{recipient}'"
    if not source.is_file():
        raise PluginError(f"{what}: {source} does not exist", retryable=False)
    target = source.with_name(source.name + ".gpg")
    partial = _partial(target)
    keyring = Keyring(settings)
    try:
        _create_private(partial)
        result = keyring.encrypt(source, partial, recipient)
        if not result.ok and _statuses(result, "INV_RECP") and _import_on_demand(settings):
            result = keyring.encrypt(source, partial, recipient)
        if not result.ok:
            problem = keyring.encrypt_problem(recipient, result)
            raise PluginError(f"{what}: {problem}; {keyring.where()}", retryable=False)
        os.replace(partial, target)
    except OSError as error:
        raise PluginError(f"{what}: {error}", retryable=False) from None
    finally:
        partial.unlink(missing_ok=True)
    source.unlink()
    return target


def decrypt_file(settings: GlobalSettings, path: Path) -> Path:
    """Decrypt ``X.gpg`` to ``X`` (0600) next to it; the ``.gpg`` file stays.

    Without the secret key in the keyring (or in GPG_KEYS_DIR) this raises a
    ``PluginError`` that names the missing key and leaves no output."""
    what = f"cannot decrypt {path.name}"
    if path.suffix != ".gpg":
        raise PluginError(f"{what}: not a .gpg file", retryable=False)
    if not path.is_file():
        raise PluginError(f"{what}: {path} does not exist", retryable=False)
    target = path.with_suffix("")
    if target.exists():
        raise PluginError(f"{what}: {target} already exists", retryable=False)
    partial = _partial(target)
    keyring = Keyring(settings, agent=True)
    try:
        _create_private(partial)
        result = keyring.decrypt(path, partial)
        if not result.ok and _statuses(result, "NO_SECKEY") and _import_on_demand(settings):
            result = keyring.decrypt(path, partial)
        if not result.ok:
            raise PluginError(
                f"{what}: {_decrypt_problem(keyring, result)}; {keyring.where()};"
                f" {path.name} was left as it is",
                retryable=False,
            )
        os.replace(partial, target)
    except OSError as error:
        raise PluginError(f"{what}: {error}", retryable=False) from None
    finally:
        partial.unlink(missing_ok=True)
        keyring.stop_agent()
    return target


def _decrypt_problem(keyring: Keyring, result: Any) -> str:
    missing = list(dict.fromkeys(s.split()[0] for s in _statuses(result, "NO_SECKEY") if s))
    protected = "pinentry" in (result.stderr or "").lower() or _statuses(result, "BAD_PASSPHRASE")
    if protected:
        return (
            "the secret key is protected by a passphrase, which backupctl cannot ask for;"
            " import an unprotected copy of the secret key"
        )
    if missing:
        named = []
        for key_id in missing:
            owners = keyring.keys(key_id)
            uid = owners[0]["uids"][0] if owners and owners[0].get("uids") else None
            named.append(f"{key_id} ({uid})" if uid else key_id)
        return (
            f"the secret key for {', '.join(named)} is not in the backupctl keyring;"
            " import the private key with `backupctl config import-gpg-key <file>`"
            " or put it in the keys directory"
        )
    return _gpg_reason(result)


def check_recipient(settings: GlobalSettings, recipient: str) -> CheckResult:
    """Pass when gpg can encrypt to ``recipient`` now (from the keyring, or from
    GPG_KEYS_DIR, whose keys are imported before encrypting); warn when the key
    expires within two weeks. Imports nothing, and creates no keyring."""
    if keyring_home(settings).is_dir():
        return _check_recipient(settings, recipient, None)
    with tempfile.TemporaryDirectory(prefix="backupctl-gpg-") as scratch:
        # no keyring yet: look at GPG_KEYS_DIR through an empty, throwaway one
        return _check_recipient(settings, recipient, Path(scratch))


def _check_recipient(settings: GlobalSettings, recipient: str, scratch: Path | None) -> CheckResult:
    try:
        keyring = Keyring(settings, home=scratch)
        key, problem = keyring.recipient_key(recipient)
        source = "keyring"
        if key is None and settings.gpg_keys_dir is not None:
            found, path, dir_problem = keyring.scan_keys_dir(recipient)
            if found is not None and path is not None:
                key, source = found, f"{path} (imported before encrypting)"
            elif dir_problem:
                problem = dir_problem
        where = keyring.where()
        if key is None:
            return CheckResult(CHECK_NAME, "fail", f"'{recipient}': {problem}; {where}")
        if source == "keyring":
            trial = keyring.encrypt(Path(os.devnull), Path(os.devnull), recipient)
            if not trial.ok:
                problem = keyring.encrypt_problem(recipient, trial)
                return CheckResult(CHECK_NAME, "fail", f"'{recipient}': {problem}; {where}")
    except (ConfigError, PluginError) as error:
        return CheckResult(CHECK_NAME, "fail", error.message)
    expires = _encryption_expiry(key)
    uid = (key.get("uids") or ["no user id"])[0]
    detail = (
        f"'{recipient}': key {key['fingerprint']} ({uid}) from {source},"
        f" expires {_day(expires) if expires else 'never'}"
    )
    soon = expires is not None and expires - datetime.now(UTC) < EXPIRY_WARNING
    return CheckResult(CHECK_NAME, "warn" if soon else "pass", detail)
