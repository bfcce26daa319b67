"""The built-in GPG plugin against real gpg, with throwaway keys made here.

An "owner" keyring (the operator's, holding the secret keys) generates the
keys once per module; each test gets a fresh backupctl keyring under its own
BACKUP_BASE_DIR and a GPG_KEYS_DIR holding exported key files. Every gpg-agent
a test starts is stopped when the test ends.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gnupg
import pytest
from attrs import frozen
from click.testing import CliRunner

from backupctl_core.builtin import gpg as gpg_plugin
from backupctl_core.builtin.gpg_keyring import (
    decrypt_file,
    import_key_file,
    import_keys_from_dir,
    keyring_home,
)
from backupctl_core.cli.main import cli
from backupctl_core.domain.artifacts import DumpArtifact
from backupctl_core.domain.errors import PluginError
from backupctl_core.domain.settings import (
    EncryptionSettings,
    GlobalSettings,
    ProjectSettings,
    ResticSettings,
)
from backupctl_core.domain.stages import Stage
from backupctl_core.plugins import get_plugin_manager
from backupctl_core.runtime.runner import run_project
from tests.support.recording_plugin import recorder
from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import RECORDING_ENTRY_POINTS, Workspace

GOOD = "good@example.com"
EXPIRED = "expired@example.com"
SOON = "soon@example.com"
STRANGER = "stranger@example.com"
PROTECTED = "protected@example.com"


def kill_agents(home: Path) -> None:
    """Stop the gpg-agent (and any dirmngr) gpg started for ``home``."""
    if home.is_dir():
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def key_params(name: str, email: str, extra: str = "") -> str:
    """ed25519 signing key + cv25519 encryption subkey, no passphrase: fast."""
    return (
        "Key-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\n"
        "Subkey-Type: ecdh\nSubkey-Curve: cv25519\nSubkey-Usage: encrypt\n"
        f"Name-Real: {name}\nName-Email: {email}\n{extra}%no-protection\n%commit\n"
    )


@frozen
class Owner:
    """The operator's own keyring and the key files exported from it."""

    home: Path
    gpg: Any
    fingerprints: dict[str, str]
    files: Path

    def public(self, email: str) -> Path:
        return self.files / f"{email.split('@')[0]}.asc"

    def public_binary(self, email: str) -> Path:
        return self.files / f"{email.split('@')[0]}.gpg"

    def secret(self, email: str) -> Path:
        return self.files / f"{email.split('@')[0]}-secret.asc"


@pytest.fixture(scope="module")
def owner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Owner]:
    root = tmp_path_factory.mktemp("owner")
    home = root / "gnupg"
    home.mkdir(mode=0o700)
    # cheap passphrase protection for the PROTECTED key (default calibration: seconds)
    (home / "gpg-agent.conf").write_text("s2k-count 65536\n")
    files = root / "files"
    files.mkdir()
    gpg = gnupg.GPG(gnupghome=str(home))
    params = {
        GOOD: key_params("Good Operator", GOOD),
        # created in 2020, expired a day later: an expired key without faking time
        EXPIRED: key_params(
            "Expired", EXPIRED, "Creation-Date: 20200101T000000\nExpire-Date: 1d\n"
        ),
        SOON: key_params("Soon", SOON, "Expire-Date: 3d\n"),
        STRANGER: key_params("Stranger", STRANGER),
        PROTECTED: key_params("Protected", PROTECTED).replace(
            "%no-protection", "Passphrase: sekrit"
        ),
    }
    fingerprints: dict[str, str] = {}
    try:
        for email, text in params.items():
            created = gpg.gen_key(text)
            assert created.fingerprint, created.stderr
            fingerprints[email] = created.fingerprint
        result = Owner(home, gpg, fingerprints, files)
        for email, fpr in fingerprints.items():
            result.public(email).write_text(gpg.export_keys(fpr))
            result.public_binary(email).write_bytes(gpg.export_keys(fpr, armor=False))
            if email == PROTECTED:
                secret = gpg.export_keys(fpr, secret=True, passphrase="sekrit")
            else:
                secret = gpg.export_keys(fpr, secret=True, expect_passphrase=False)
            result.secret(email).write_text(secret)
        yield result
    finally:
        kill_agents(home)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    recorder.reset()
    workspace = Workspace(tmp_path)
    keys = tmp_path / "keys"
    keys.mkdir()
    workspace.write_env(GPG_KEYS_DIR=str(keys))
    try:
        yield workspace
    finally:
        kill_agents(workspace.base_dir / ".gnupg")


def settings_for(ws: Workspace) -> GlobalSettings:
    return GlobalSettings(backup_base_dir=ws.base_dir, gpg_keys_dir=ws.root / "keys")


def share(ws: Workspace, *files: Path) -> None:
    """Put key files into the workspace's GPG_KEYS_DIR."""
    for path in files:
        (ws.root / "keys" / path.name).write_bytes(path.read_bytes())


def project(recipient: str | None) -> ProjectSettings:
    return ProjectSettings(
        name="app",
        restic=ResticSettings(repository_path="/r"),
        encryption=EncryptionSettings(enabled=True, type="gpg", recipient=recipient),
    )


def make_dump(ws: Workspace, content: bytes) -> DumpArtifact:
    folder = ws.base_dir / "app"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "app_backup_20250101_020000_abcd.dump"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    return DumpArtifact(path, len(content), "postgres-custom")


def encrypt(ws: Workspace, artifact: DumpArtifact, recipient: str | None = GOOD) -> DumpArtifact:
    result: DumpArtifact = gpg_plugin.backupctl_encrypt(
        project=project(recipient), settings=settings_for(ws), artifact=artifact
    )
    return result


def leftovers(ws: Workspace) -> list[str]:
    return sorted(p.name for p in (ws.base_dir / "app").iterdir())


def keyring_keys(ws: Workspace, *, secret: bool = False) -> list[dict[str, Any]]:
    gpg = gnupg.GPG(gnupghome=str(keyring_home(settings_for(ws))), options=["--no-autostart"])
    return list(gpg.list_keys(secret=secret))


# -- encrypt and decrypt ------------------------------------------------------


def test_encrypt_writes_private_gpg_file_and_decrypt_restores_identical_bytes(
    ws: Workspace, owner: Owner
) -> None:
    share(ws, owner.public(GOOD))
    import_keys_from_dir(settings_for(ws))
    content = os.urandom(3 * 1024 * 1024) + b"\x00end"
    artifact = make_dump(ws, content)

    encrypted = encrypt(ws, artifact)

    assert encrypted.path == artifact.path.with_name(artifact.path.name + ".gpg")
    assert encrypted.format == "postgres-custom+gpg"
    assert encrypted.size_bytes == encrypted.path.stat().st_size > len(content)
    assert stat.S_IMODE(encrypted.path.stat().st_mode) == 0o600
    assert not artifact.path.exists()  # plaintext removed
    assert leftovers(ws) == [encrypted.path.name]  # no .partial left behind
    assert content[:4096] not in encrypted.path.read_bytes()

    # not compressed again: the owner (who has the secret key) sees no compressed packet
    packets = subprocess.run(
        ["gpg", "--homedir", str(owner.home), "--batch", "--list-packets", str(encrypted.path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert ":pubkey enc packet:" in packets and ":compressed packet:" not in packets

    (imported,) = import_key_file(settings_for(ws), owner.secret(GOOD))
    assert imported.secret and imported.fingerprint == owner.fingerprints[GOOD]
    plain = gpg_plugin.backupctl_decrypt(settings=settings_for(ws), path=encrypted.path)
    assert plain == artifact.path
    assert plain.read_bytes() == content
    assert stat.S_IMODE(plain.stat().st_mode) == 0o600
    assert encrypted.path.exists()  # the encrypted file stays
    assert leftovers(ws) == sorted([plain.name, encrypted.path.name])
    assert agents_of(ws.base_dir / ".gnupg") == []  # imports and decryption leave none running


def agents_of(home: Path) -> list[int]:
    """gpg-agents serving ``home`` that are still running (one was left per keyring)."""
    import psutil

    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["name"] == "gpg-agent" and str(home) in cmdline:
            found.append(process.pid)
    return found


def test_decrypt_ignores_files_it_did_not_encrypt(ws: Workspace) -> None:
    other = ws.root / "app.sql.gz"
    other.write_bytes(b"x")
    assert gpg_plugin.backupctl_decrypt(settings=settings_for(ws), path=other) is None


def test_unknown_recipient_fails_naming_recipient_and_keys_dir(ws: Workspace, owner: Owner) -> None:
    share(ws, owner.public(GOOD))
    artifact = make_dump(ws, b"secret dump")
    with pytest.raises(PluginError) as caught:
        encrypt(ws, artifact, recipient="nobody@example.com")
    error = caught.value
    assert not error.retryable
    assert "recipient 'nobody@example.com'" in error.message
    assert "no public key for 'nobody@example.com'" in error.message
    assert f"keys directory {ws.root / 'keys'} (GPG_KEYS_DIR)" in error.message
    assert f"keyring {ws.base_dir / '.gnupg'}" in error.message
    assert leftovers(ws) == [artifact.path.name]  # plaintext kept, no partial output


def test_missing_recipient_without_keys_dir_says_it_is_not_set(ws: Workspace) -> None:
    artifact = make_dump(ws, b"secret dump")
    settings = GlobalSettings(backup_base_dir=ws.base_dir)
    with pytest.raises(PluginError, match=r"no keys directory \(GPG_KEYS_DIR is not set\)"):
        gpg_plugin.backupctl_encrypt(project=project(GOOD), settings=settings, artifact=artifact)


def test_key_only_in_keys_dir_is_imported_when_needed(ws: Workspace, owner: Owner) -> None:
    share(ws, owner.public(GOOD))
    # the dry-run check finds it there without importing anything ...
    (check,) = gpg_plugin.backupctl_check(project=project(GOOD), settings=settings_for(ws))
    assert check.status == "pass", check.detail
    assert "good.asc (imported before encrypting)" in check.detail
    assert not keyring_home(settings_for(ws)).exists()  # a dry run creates no keyring
    # ... and encryption imports it
    encrypted = encrypt(ws, make_dump(ws, b"dump"))
    assert encrypted.path.suffix == ".gpg"
    assert [k["fingerprint"] for k in keyring_keys(ws)] == [owner.fingerprints[GOOD]]


def test_expired_key_fails_with_a_clear_message(ws: Workspace, owner: Owner) -> None:
    share(ws, owner.public(EXPIRED))
    (key,) = import_keys_from_dir(settings_for(ws))
    assert key.expired
    artifact = make_dump(ws, b"dump")
    with pytest.raises(PluginError) as caught:
        encrypt(ws, artifact, recipient=EXPIRED)
    message = caught.value.message
    assert f"key {owner.fingerprints[EXPIRED]} expired on 2020-01-02" in message
    assert f"recipient '{EXPIRED}'" in message and str(ws.root / "keys") in message
    assert leftovers(ws) == [artifact.path.name]

    (check,) = gpg_plugin.backupctl_check(project=project(EXPIRED), settings=settings_for(ws))
    assert check.status == "fail" and "expired on 2020-01-02" in check.detail


def test_untrusted_key_is_refused_until_imported_by_backupctl(ws: Workspace, owner: Owner) -> None:
    settings = GlobalSettings(backup_base_dir=ws.base_dir)  # no keys dir to heal from
    home = keyring_home(settings)
    home.mkdir(parents=True, mode=0o700)
    # someone imported the key with plain gpg: present, but nobody vouched for it
    gnupg.GPG(gnupghome=str(home)).import_keys(owner.public(GOOD).read_text())
    artifact = make_dump(ws, b"dump")
    with pytest.raises(PluginError, match="is not trusted in the backupctl keyring"):
        gpg_plugin.backupctl_encrypt(project=project(GOOD), settings=settings, artifact=artifact)
    (check,) = gpg_plugin.backupctl_check(project=project(GOOD), settings=settings)
    assert check.status == "fail" and "not trusted" in check.detail

    import_key_file(settings, owner.public(GOOD))
    encrypted = gpg_plugin.backupctl_encrypt(
        project=project(GOOD), settings=settings, artifact=artifact
    )
    assert encrypted.path.exists()


def test_decrypt_without_secret_key_says_what_is_missing_and_keeps_the_file(
    ws: Workspace, owner: Owner
) -> None:
    share(ws, owner.public(GOOD))
    encrypted = encrypt(ws, make_dump(ws, b"dump"))
    with pytest.raises(PluginError) as caught:
        decrypt_file(settings_for(ws), encrypted.path)
    message = caught.value.message
    encryption_subkey = owner.gpg.list_keys(keys=[GOOD])[0]["subkeys"][0][0]
    assert (
        f"the secret key for {encryption_subkey} (Good Operator <{GOOD}>)"
        " is not in the backupctl keyring"
    ) in message
    assert "backupctl config import-gpg-key" in message
    assert f"{encrypted.path.name} was left as it is" in message
    assert leftovers(ws) == [encrypted.path.name]


def test_passphrase_protected_secret_key_fails_at_once(ws: Workspace, owner: Owner) -> None:
    share(ws, owner.secret(PROTECTED))
    encrypted = encrypt(ws, make_dump(ws, b"dump"), recipient=PROTECTED)
    with pytest.raises(PluginError, match="protected by a passphrase, which backupctl cannot ask"):
        decrypt_file(settings_for(ws), encrypted.path)  # no pinentry, no hang
    assert leftovers(ws) == [encrypted.path.name]


def test_secret_key_in_keys_dir_is_used_for_decryption(ws: Workspace, owner: Owner) -> None:
    share(ws, owner.public(GOOD))
    encrypted = encrypt(ws, make_dump(ws, b"dump bytes"))
    share(ws, owner.secret(GOOD))  # "a configured key file"
    assert decrypt_file(settings_for(ws), encrypted.path).read_bytes() == b"dump bytes"


# -- key import ---------------------------------------------------------------


def test_import_keys_from_dir_imports_and_trusts_every_key_file(
    ws: Workspace, owner: Owner, caplog: pytest.LogCaptureFixture
) -> None:
    share(ws, owner.public(GOOD), owner.public_binary(STRANGER))
    (ws.root / "keys" / "soon.pub").write_bytes(owner.public(SOON).read_bytes())
    (ws.root / "keys" / "broken.asc").write_text("not a key\n")
    (ws.root / "keys" / "notes.txt").write_bytes(owner.public(EXPIRED).read_bytes())  # ignored

    imported = import_keys_from_dir(settings_for(ws))

    assert sorted(k.fingerprint for k in imported) == sorted(
        owner.fingerprints[e] for e in (GOOD, STRANGER, SOON)
    )
    good = next(k for k in imported if k.fingerprint == owner.fingerprints[GOOD])
    assert good.user_ids == (f"Good Operator <{GOOD}>",) and not good.secret
    assert good.expires is None
    assert "broken.asc: no OpenPGP key imported" in caplog.text
    in_keyring = keyring_keys(ws)
    assert {k["ownertrust"] for k in in_keyring} == {"u"}  # trusted at import
    assert {k["trust"] for k in in_keyring} == {"u"}
    assert stat.S_IMODE(keyring_home(settings_for(ws)).stat().st_mode) == 0o700
    assert import_keys_from_dir(GlobalSettings(backup_base_dir=ws.base_dir)) == []


def test_check_reports_pass_warn_and_fail(ws: Workspace, owner: Owner) -> None:
    share(ws, owner.public(GOOD), owner.public(SOON))
    import_keys_from_dir(settings_for(ws))
    settings = settings_for(ws)
    (good,) = gpg_plugin.backupctl_check(project=project(GOOD), settings=settings)
    assert good.name == "gpg key" and good.status == "pass"
    assert owner.fingerprints[GOOD] in good.detail and "expires never" in good.detail
    (soon,) = gpg_plugin.backupctl_check(project=project(SOON), settings=settings)
    assert soon.status == "warn" and "expires 20" in soon.detail
    (missing,) = gpg_plugin.backupctl_check(project=project(STRANGER), settings=settings)
    assert missing.status == "fail"
    assert f"'{STRANGER}': no public key" in missing.detail
    assert str(ws.root / "keys") in missing.detail
    (unset,) = gpg_plugin.backupctl_check(project=project(None), settings=settings)
    assert unset.status == "fail" and "no recipient" in unset.detail
    off = ProjectSettings(name="x", restic=ResticSettings(repository_path="/r"))
    assert gpg_plugin.backupctl_check(project=off, settings=settings) == []


def test_validate_config_requires_a_recipient() -> None:
    assert gpg_plugin.backupctl_validate_config(project=project(GOOD)) == []
    (problem,) = gpg_plugin.backupctl_validate_config(project=project(None))
    assert problem.startswith("encryption.recipient is required")


# -- CLI ----------------------------------------------------------------------


def invoke(ws: Workspace, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [*ws.cli_args(), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_cli_import_gpg_key_prints_fingerprint_and_user_ids(ws: Workspace, owner: Owner) -> None:
    # no projects file needed: importing a key only reads .env
    code, out, err = invoke(ws, "config", "import-gpg-key", str(owner.public(GOOD)))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"imported into {ws.base_dir / '.gnupg'} (trusted for encryption):"
    assert lines[1] == f"{owner.fingerprints[GOOD]}  public key, expires never"
    assert lines[2] == f"  Good Operator <{GOOD}>"
    assert [k["fingerprint"] for k in keyring_keys(ws)] == [owner.fingerprints[GOOD]]

    code, out, _ = invoke(ws, "config", "import-gpg-key", str(owner.secret(EXPIRED)))
    assert code == 0
    assert f"{owner.fingerprints[EXPIRED]}  public and secret key, EXPIRED 2020-01-02" in out


def test_cli_import_gpg_key_bad_file_is_a_config_error(ws: Workspace) -> None:
    junk = ws.root / "junk.asc"
    junk.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnonsense\n")
    code, out, err = invoke(ws, "config", "import-gpg-key", str(junk))
    assert code == 3 and out == ""
    assert err == (
        f"error: {junk}: no OpenPGP key imported (import from 'junk.asc' failed: Invalid keyring)\n"
    )
    junk.write_text("just text\n")
    code, _, err = invoke(ws, "config", "import-gpg-key", str(junk))
    assert code == 3
    assert err == f"error: {junk}: no OpenPGP key imported (no valid OpenPGP data found)\n"
    assert len(err.splitlines()) == 1
    code, _, err = invoke(ws, "config", "import-gpg-key", str(ws.root / "nope.asc"))
    assert code == 3 and err == f"error: {ws.root / 'nope.asc'}: no such key file\n"
    code, _, err = invoke(ws, "config", "import-gpg-key", str(ws.root))
    assert code == 3 and "not a key file (not a regular file)" in err


# -- through the pipeline -----------------------------------------------------


def test_builtin_gpg_plugin_is_registered() -> None:
    registry = get_plugin_manager([])
    info = registry.provider("encryption", "gpg")
    assert info is not None and info.distribution == "backupctl-core"
    assert {"backupctl_encrypt", "backupctl_decrypt", "backupctl_check"} <= set(info.hooks)


def test_pipeline_encrypts_before_sync_and_records_it(ws: Workspace, owner: Owner) -> None:
    share(ws, owner.public(GOOD))
    ws.write_config(
        [
            {
                "name": "app",
                "database": {"type": "recording", "name": "appdb"},
                "restic": {"repository_path": "/repo/app", "password": "repo-pw"},
                "encryption": {"enabled": True, "type": "gpg", "recipient": GOOD},
            }
        ]
    )
    config = ws.load()
    registry = get_plugin_manager(RECORDING_ENTRY_POINTS, builtins=("backupctl_core.builtin.gpg",))
    checks = registry.for_project(config.project("app"), config.settings).checks()
    assert [(c.name, c.status) for c in checks] == [("gpg key", "pass")]
    stages: list[Stage] = []
    store = ws.store()
    outcome = run_project(config, config.project("app"), registry, store, on_stage=stages.append)

    assert outcome.ok
    assert Stage.ENCRYPT in stages
    (sync_call,) = [kw for name, kw in recorder.calls if name == "sync"]
    (synced,) = sync_call["paths"]
    assert synced.name.endswith(".txt.gpg") and synced.exists()
    assert stat.S_IMODE(synced.stat().st_mode) == 0o600
    assert not synced.with_suffix("").exists()
    row = store.history("app", 1)[0]
    assert row.encrypted is True and row.verified is True

    import_key_file(config.settings, owner.secret(GOOD))
    assert decrypt_file(config.settings, synced).read_text() == "dump of appdb\n"


def test_cli_run_restore_decrypt_round_trip(ws: Workspace, owner: Owner, tmp_path: Path) -> None:
    """Encryption from .env defaults, real SQLite dumper and local restic repository:
    dry run → run → restore (no secret key: clear error) → restore --decompress."""
    share(ws, owner.public(GOOD))
    ws.write_env(RESTIC_PASSWORD="pw-123", ENCRYPTION_ENABLED="true", GPG_RECIPIENT=GOOD)
    make_sqlite_db(tmp_path / "shop.sqlite")
    ws.write_config([sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo")])
    assert invoke(ws, "db", "migrate")[0] == 0

    code, out, _ = invoke(ws, "run", "shop", "--dry-run", "--json")
    gpg_check = next(c for c in json.loads(out)["checks"] if c["name"] == "gpg key")
    assert code == 0 and gpg_check["status"] == "pass", out

    code, out, err = invoke(ws, "run", "shop")
    assert code == 0, out + err
    (local,) = (ws.base_dir / "shop").glob("shop_backup_*.sqlite.gz.gpg")
    assert stat.S_IMODE(local.stat().st_mode) == 0o600
    # Its manifest (table names, row counts) is encrypted like the dump: no plaintext copy.
    (manifest,) = (ws.base_dir / "shop").glob("shop_backup_*.manifest.json*")
    assert manifest.name == local.name.removesuffix(".gpg") + ".manifest.json.gpg"
    _code, out, _ = invoke(ws, "status", "shop", "--json")
    assert json.loads(out)[0]["encrypted"] is True

    code, _out, err = invoke(
        ws, "restore", "shop", "latest", str(tmp_path / "first"), "--decompress"
    )
    assert code == 1 and "the secret key for" in err and "was left as it is" in err
    left = sorted(p.name for p in (tmp_path / "first").rglob("shop_backup_*"))
    assert left == [local.name, manifest.name]  # only encrypted files, no partial plaintext

    share(ws, owner.secret(GOOD))  # the private key, as a configured key file
    code, out, err = invoke(ws, "restore", "shop", "latest", str(tmp_path / "out"), "--decompress")
    assert code == 0, out + err
    (decrypted,) = (tmp_path / "out").rglob("shop_backup_*.sqlite.gz")
    by_owner = subprocess.run(
        ["gpg", "--homedir", str(owner.home), "--batch", "--decrypt", str(local)],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert decrypted.read_bytes() == by_owner  # byte-identical to what was encrypted
    (database,) = (tmp_path / "out").rglob("shop_backup_*.sqlite")
    with sqlite3.connect(database) as restored, sqlite3.connect(tmp_path / "shop.sqlite") as src:
        query = "SELECT * FROM items ORDER BY id"
        assert restored.execute(query).fetchall() == src.execute(query).fetchall()
