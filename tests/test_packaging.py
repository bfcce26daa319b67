"""What can be checked of the Docker setup without a Docker engine, and the
distribution layout: one installable distribution per plugin."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:  # type: ignore[type-arg]
    return dict(YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text()))


def test_compose_has_the_two_containers_of_spec() -> None:
    services = compose()["services"]
    assert set(services) == {"backupctl", "backupctl-audit-db"}
    app, db = services["backupctl"], services["backupctl-audit-db"]
    assert db["image"].startswith("postgres:16")
    assert "ports" not in db  # the audit DB is not published to the host
    assert app["env_file"] == ".env"
    assert app["environment"]["AUDIT_DB_HOST"] == "backupctl-audit-db"
    assert app["networks"] == db["networks"] == ["backupctl-network"]
    mounts = {}
    for volume in app["volumes"]:  # host[:container[:mode]]; the host may hold ${X:-y}
        host_and_container, _, mode = volume.rpartition(":")
        if mode in ("ro", "rw"):
            mounts[host_and_container.rpartition(":")[2]] = mode
        else:
            mounts[mode] = "rw"
    assert mounts == {"/data/backups": "rw", "/app/config": "ro", "/root/.ssh": "ro",
                      "/app/gpg-keys": "ro"}  # fmt: skip


def test_compose_references_only_files_that_exist() -> None:
    app = compose()["services"]["backupctl"]
    assert (ROOT / app["build"] / "Dockerfile").is_file()
    for volume in app["volumes"]:
        host = volume.split(":")[0]
        if host.startswith("./"):
            assert (ROOT / host).exists(), host
    assert (ROOT / "config" / ".env.example").is_file()


def test_dockerfile_installs_the_same_packages_and_every_plugin() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY scripts/packages.txt" in dockerfile  # the list the install script uses
    assert "scripts/packages.txt" in (ROOT / "scripts" / "install.sh").read_text()
    installed = set(re.findall(r"plugins/(backupctl-[a-z-]+)", dockerfile))
    on_disk = {p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists()}
    assert installed == on_disk
    assert re.search(r"HEALTHCHECK .*\n.*/health", dockerfile)
    assert dockerfile.rstrip().endswith('CMD ["backupctl", "serve"]')


def test_every_plugin_is_a_distribution_with_an_entry_point() -> None:
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert core["project"]["name"] == "backupctl-core"
    assert core["project"]["scripts"]["backupctl"] == "backupctl_core.cli.main:main"
    for folder in sorted((ROOT / "plugins").iterdir()):
        meta = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
        assert meta["name"] == folder.name
        assert any(dep.startswith("backupctl-core") for dep in meta["dependencies"])
        (target,) = meta["entry-points"]["backupctl"].values()
        package = target.split(":")[0].split(".")[0]
        assert (folder / package).is_dir() and (folder / "README.md").is_file()
        assert list((folder / "tests").glob("test_*.py")), f"{folder.name} has no tests"


def test_secrets_and_data_stay_out_of_git_and_the_image() -> None:
    """`.env`, the real projects.yml, SSH and GPG keys, backups and the demo's data:
    ignored by git, and not sent to `docker build` (nor the 200 MB .venv)."""
    import subprocess

    secret_paths = [".env", ".env.production", "config/projects.yml", "ssh-keys/id_ed25519",
                    "gpg-keys/backup.asc", "data/backups/x", "demo-data/.env"]  # fmt: skip
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *secret_paths], cwd=ROOT, capture_output=True,
        text=True,
    ).stdout.split()  # fmt: skip
    assert sorted(ignored) == sorted(secret_paths)
    kept = ["ssh-keys/README.md", "gpg-keys/README.md", "config/projects.example.yml",
            "config/.env.example"]  # fmt: skip
    assert subprocess.run(["git", "check-ignore", "--no-index", *kept], cwd=ROOT).returncode == 1
    docker_ignore = (ROOT / ".dockerignore").read_text().split()
    for entry in (".env", "config/projects.yml", "ssh-keys", "gpg-keys", "data", "demo-data",
                  ".venv", ".git"):  # fmt: skip
        assert entry in docker_ignore, entry
    assert compose()["services"]["backupctl"]["stop_grace_period"] == "1h"


def test_image_has_the_newest_postgresql_client_beside_debians() -> None:
    """pg_dump must be as new as the server: compose's audit database alone is 16,
    while Debian 12's client is 15 (which the local scripts keep)."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" in dockerfile
    assert '"postgresql-client-${PG_CLIENT_MAJOR:-$newest}"' in dockerfile
    packages = (ROOT / "scripts" / "packages.txt").read_text().split()
    assert "postgresql-client" in packages


def test_each_distribution_has_project_urls_and_a_readme_that_works_on_the_index() -> None:
    """The README is the wheel's description on the package index, where a relative
    link (``../../README.md``) leads nowhere: links into the repository are absolute,
    on the core's Repository URL, and name files that exist."""
    repository = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"][
        "Repository"
    ]
    folders = [ROOT, *sorted(p.parent for p in ROOT.glob("plugins/*/pyproject.toml")),
               ROOT / "examples" / "backupctl-example-tar"]  # fmt: skip
    for folder in folders:
        meta = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
        urls = meta.get("urls", {})
        assert urls.get("Repository") == repository, folder.name
        assert set(urls) >= {"Homepage", "Documentation"}, folder.name
        for url in urls.values():
            assert url.startswith(repository), url
        text = (folder / meta["readme"]).read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            assert target.startswith(("https://", "http://")), f"{folder.name}: {target}"
            if target.startswith(repository + "/"):
                inside = target.removeprefix(repository + "/").split("#")[0]
                kind, branch, path = inside.split("/", 2)
                assert (kind, branch) in {("blob", "main"), ("tree", "main")}, target
                assert (ROOT / path).exists(), target
        for url in urls.values():
            if url.startswith(repository + "/tree/main/"):
                assert (ROOT / url.removeprefix(repository + "/tree/main/")).is_dir(), url


def test_the_fleet_example_runs_two_replicas_on_one_audit_store() -> None:
    """docs/fleet.md's compose file: two replicas, each with its own backup folder and
    host name, both on the one PostgreSQL (merge keys resolved as compose does)."""
    path = ROOT / "examples" / "fleet" / "docker-compose.yml"
    services = YAML(typ="safe").load(path.read_text())["services"]
    replicas = {name: s for name, s in services.items() if name.startswith("backup-")}
    assert set(replicas) == {"backup-a", "backup-b"}
    names, folders = set(), set()
    for replica in replicas.values():
        env = replica["environment"]
        assert env["AUDIT_DB_HOST"] == "backupctl-audit-db"
        names.add(env["BACKUPCTL_HOSTNAME"])
        folders |= {v.split(":")[0] for v in replica["volumes"] if v.endswith(":/data/backups")}
        assert (path.parent / replica["build"] / "Dockerfile").exists()
    assert names == {"backup-a", "backup-b"} and len(folders) == 2
    assert services["backupctl-audit-db"]["image"].startswith("postgres:16")
