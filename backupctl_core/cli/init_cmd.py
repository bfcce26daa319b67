"""``backupctl init [DIR]``: a commented config/projects.yml and .env to start from."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import click

EXAMPLES = {  # shipped in the wheel: a pip user has no checkout to copy from
    Path("config") / "projects.yml": "projects.example.yml",
    Path(".env"): "env.example",
}


@click.command()
@click.argument("folder", default=".", type=click.Path(path_type=Path, file_okay=False))
def init(folder: Path) -> None:
    """Write a commented config/projects.yml and .env into FOLDER (default: here).

    Asks nothing and overwrites nothing: a file that exists is left as it is.
    """
    for target, example in EXAMPLES.items():
        path = folder / target
        if path.exists():
            click.echo(f"kept    {path} (exists)")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        text = files("backupctl_core.examples").joinpath(example).read_text(encoding="utf-8")
        path.write_text(text, encoding="utf-8")
        if target.name == ".env":
            path.chmod(0o600)  # it will hold passwords
        click.echo(f"written {path}")
    click.echo(
        f"next: edit both, then in {folder}: backupctl config validate; backupctl db migrate;"
        " backupctl run <project> --dry-run"
    )
