"""The built-in ``encryption:gpg`` plugin: encrypt each dump for the project's
recipient, decrypt restored ``.gpg`` files, check the recipient's key.

The keyring, key import and the gpg runs themselves are in ``gpg_keyring.py``."""

from __future__ import annotations

from pathlib import Path

from backupctl_core.builtin.gpg_keyring import (
    CHECK_NAME,
    NO_RECIPIENT,
    check_recipient,
    decrypt_file,
    encrypt_file,
)
from backupctl_core.domain.artifacts import CheckResult, DumpArtifact, PluginType
from backupctl_core.domain.errors import PluginError
from backupctl_core.domain.settings import GlobalSettings, ProjectSettings
from backupctl_core.hookspecs import hookimpl


def _recipient(project: ProjectSettings) -> str | None:
    return project.encryption.recipient if project.encryption is not None else None


@hookimpl
def backupctl_plugin_types() -> list[PluginType]:
    return [PluginType("encryption", "gpg")]


@hookimpl
def backupctl_validate_config(project: ProjectSettings) -> list[str]:
    if project.encryption_enabled and not _recipient(project):
        return ["encryption.recipient is required when encryption is enabled (or GPG_RECIPIENT)"]
    return []


@hookimpl
def backupctl_encrypt(
    project: ProjectSettings, settings: GlobalSettings, artifact: DumpArtifact
) -> DumpArtifact:
    recipient = _recipient(project)
    if not recipient:
        raise PluginError(f"project '{project.name}': {NO_RECIPIENT}", retryable=False)
    target = encrypt_file(settings, recipient, artifact.path)
    return DumpArtifact(target, target.stat().st_size, f"{artifact.format}+gpg")


@hookimpl
def backupctl_decrypt(settings: GlobalSettings, path: Path) -> Path | None:
    """``X.gpg`` → ``X``; None for a file this plugin did not encrypt."""
    if path.suffix != ".gpg":
        return None
    return decrypt_file(settings, path)


@hookimpl
def backupctl_check(project: ProjectSettings, settings: GlobalSettings) -> list[CheckResult]:
    if not project.encryption_enabled:
        return []
    recipient = _recipient(project)
    if not recipient:
        return [CheckResult(CHECK_NAME, "fail", NO_RECIPIENT)]
    return [check_recipient(settings, recipient)]
