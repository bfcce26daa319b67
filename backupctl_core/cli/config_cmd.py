"""``backupctl config validate | show | import-gpg-key``."""

from __future__ import annotations

import io
from pathlib import Path

import click

from backupctl_core.cli.completion import complete_projects
from backupctl_core.cli.context import CliContext
from backupctl_core.domain.errors import ConfigError


@click.group()
def config() -> None:
    """Check and inspect config/projects.yml and .env."""


@config.command()
@click.pass_obj
def validate(context: CliContext) -> None:
    """Load both files and check every project against its plugins."""
    loaded = context.config
    problems: list[str] = []
    plugin_warnings: list[str] = []
    for project in loaded.projects:
        try:
            problems += [
                f"projects[{project.name}].{p}"
                for p in context.registry.validate(project, loaded.settings)
            ]
            plugin_warnings += [
                f"projects[{project.name}].{w}"
                for w in context.registry.validation_warnings(project, loaded.settings)
            ]
        except ConfigError as error:
            problems.append(error.message)
    if problems:
        raise ConfigError("\n".join(f"{loaded.config_path}: {p}" for p in problems))
    for info in loaded.infos():
        click.echo(f"info: {loaded.config_path}: {info}", err=True)
    for warning in [*loaded.warnings(), *plugin_warnings]:
        click.echo(f"warning: {loaded.config_path}: {warning}", err=True)
    names = ", ".join(loaded.names) or "none"
    click.echo(f"config OK: {len(loaded.projects)} project(s): {names}")


@config.command()
@click.pass_obj
def reload(context: CliContext) -> None:
    """Tell the running service to re-read both files and re-register schedules.

    Sends SIGHUP to the service holding {BACKUP_BASE_DIR}/.backupctl-serve.lock,
    only if that process is a `backupctl serve`. The files are checked here
    first, so a broken config is reported, not sent.
    """
    from backupctl_core.cli.serve_cmd import reload_service

    count = len(context.config.projects)
    pid = reload_service(context)
    click.echo(f"config OK ({count} project(s)); reload signal sent to the service (PID {pid})")


@config.command()
@click.argument("project", shell_complete=complete_projects)
@click.pass_obj
def show(context: CliContext, project: str) -> None:
    """PROJECT's resolved settings, secrets masked."""
    from ruamel.yaml import YAML

    from backupctl_core.config.render import project_view

    settings = context.config.project(project)
    view = project_view(settings)
    # Hooks as written: ${VAR} references, never the values put into them.
    view["hooks"].update(context.config.hook_templates.get(project, {}))
    yaml = YAML()
    yaml.default_flow_style = False
    buffer = io.StringIO()
    yaml.dump(view, buffer)
    click.echo(buffer.getvalue().rstrip())


@config.command("import-gpg-key")
@click.argument("key_file", metavar="FILE", type=click.Path(path_type=Path))
@click.pass_obj
def import_gpg_key(context: CliContext, key_file: Path) -> None:
    """Import FILE's keys into backupctl's keyring and trust them for encryption.

    The keyring is {BACKUP_BASE_DIR}/.gnupg, not your ~/.gnupg. FILE may hold
    public keys (to encrypt to) or secret keys (to decrypt restores). Prints
    each key's fingerprint and user ids. A file that cannot be read or holds no
    OpenPGP key is a config error: one line on stderr, exit code 3.
    """
    from backupctl_core.builtin.gpg_keyring import import_key_file, keyring_home
    from backupctl_core.config.env import Environment, global_settings

    # Only .env matters here: importing a key needs no projects file.
    settings = global_settings(Environment.load(context.env_path, required=context.env_explicit))
    keys = import_key_file(settings, key_file)
    click.echo(f"imported into {keyring_home(settings)} (trusted for encryption):")
    for key in keys:
        kind = "public and secret key" if key.secret else "public key"
        if key.expires is None:
            expiry = "expires never"
        elif key.expired:
            expiry = f"EXPIRED {key.expires.date().isoformat()}: cannot be used for encryption"
        else:
            expiry = f"expires {key.expires.date().isoformat()}"
        click.echo(f"{key.fingerprint}  {kind}, {expiry}")
        for user_id in key.user_ids or ("(no user id)",):
            click.echo(f"  {user_id}")
