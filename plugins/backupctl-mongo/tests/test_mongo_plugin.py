"""The MongoDB dumper.

MongoDB's server and tools cannot be installed on the test machines, so most tests run
the plugin against stand-in ``mongodump``/``mongorestore`` executables placed first on
PATH: they record their argv, environment and ``--config`` file, write a gzipped archive
in mongodump's format and fail on request. ``test_real_round_trip`` uses the real tools
and a real server when both are there (the Docker image) and is skipped otherwise.
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from backupctl_mongo import plugin
from ruamel.yaml import YAML

from backupctl_core import DumpArtifact, PluginError, PluginType
from backupctl_core.domain.settings import (
    DatabaseSettings,
    GlobalSettings,
    ProjectSettings,
    ResticSettings,
    Secret,
)
from backupctl_core.testing import plugin_manager
from backupctl_core.testing.pgcluster import free_port

PASSWORD = 'pa"ss: #w\\ord ü 😀'
ARCHIVE_MAGIC = bytes.fromhex("6de29981")  # 0x8199e26d, little-endian


def make_project(**overrides: Any) -> ProjectSettings:
    fields: dict[str, Any] = {
        "host": "mongo.example",
        "port": 27018,
        "name": "shop",
        "user": "backup",
        "password": Secret(PASSWORD),
    }
    fields.update(overrides)
    return ProjectSettings(
        name="p",
        restic=ResticSettings(repository_path="/x"),
        database=DatabaseSettings(type="mongo", **fields),
    )


@pytest.fixture
def settings(tmp_path: Path) -> GlobalSettings:
    return GlobalSettings(backup_base_dir=tmp_path)


@pytest.fixture
def stem(tmp_path: Path) -> Path:
    return tmp_path / "p" / "p_backup_20240101_120000_abcd"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the stand-in tools --------------------------------------------------------

STAND_IN = """\
#!{python}
# A stand-in mongodump/mongorestore (which one: the name it is called by). Records its
# argv, environment and --config file in <records>/<tool>.json. mongodump writes a
# gzipped archive in mongodump's format: magic number, BSON prelude, a namespace with
# its documents, terminators. A file <records>/fail-<tool> with a message makes it log
# "Failed: <message>" and exit 1 (mongodump after writing half an archive).
# mongorestore reads the archive and fails like the real one on a foreign file.
import gzip, json, os, stat, struct, sys
tool = os.path.basename(sys.argv[0])
if sys.argv[1:] == ["--version"]:  # what the dry run's tools check asks
    print(tool + " version: 100.9.4")
    sys.exit(0)
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
record = {{"argv": sys.argv, "env": dict(os.environ)}}
if "config" in args:
    record["config_path"] = args["config"]
    record["config_mode"] = stat.S_IMODE(os.stat(args["config"]).st_mode)
    record["config"] = open(args["config"], encoding="utf-8").read()
with open(os.path.join({records!r}, tool + ".json"), "w") as f:
    json.dump(record, f)

def log(message):
    sys.stderr.write("2024-01-01T12:00:00.000+0000\\t" + message + "\\n")

def bson(doc):
    out = b""
    for key, value in doc.items():
        name = key.encode() + b"\\0"
        if isinstance(value, bool):
            out += b"\\x08" + name + (b"\\x01" if value else b"\\x00")
        elif isinstance(value, int):
            out += b"\\x10" + name + struct.pack("<i", value)
        else:
            text = str(value).encode() + b"\\0"
            out += b"\\x02" + name + struct.pack("<i", len(text)) + text
    return struct.pack("<i", len(out) + 5) + out + b"\\0"

fail_file = os.path.join({records!r}, "fail-" + tool)
fail = open(fail_file).read() if os.path.exists(fail_file) else None
if tool == "mongodump":
    db, end = args["db"], b"\\xff\\xff\\xff\\xff"
    prelude = {{"version": "0.1", "server_version": "7.0.5", "tool_version": "100.9.4"}}
    data = struct.pack("<I", 0x8199E26D) + bson(prelude)
    metadata = json.dumps({{"indexes": [{{"v": 2, "key": {{"_id": 1}}, "name": "_id_"}}]}})
    data += bson({{"db": db, "collection": "people", "metadata": metadata, "size": 0}}) + end
    data += bson({{"db": db, "collection": "people", "EOF": False, "CRC": 0}})
    data += b"".join(bson({{"_id": i, "name": "person %d 😀" % i}}) for i in range(2000))
    data += end + bson({{"db": db, "collection": "people", "EOF": True, "CRC": 0}}) + end
    log("writing " + db + ".people to archive '" + args["archive"] + "'")
    with gzip.open(args["archive"], "wb") as out:
        out.write(data[: len(data) // 2] if fail else data)
    if fail:
        log("Failed: " + fail)
        sys.exit(1)
    log("done dumping " + db + ".people (2000 documents)")
else:
    if fail:
        log("Failed: " + fail)
        sys.exit(1)
    try:
        with (gzip.open if "--gzip" in sys.argv else open)(args["archive"], "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:
        log("Failed: " + str(error))
        sys.exit(1)
    if not data.startswith(struct.pack("<I", 0x8199E26D)):
        log("Failed: stream or file does not appear to be a mongodump archive")
        sys.exit(1)
    log("0 document(s) restored successfully. 0 document(s) failed to restore.")
"""


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temp folder where the plugin writes its --config files, empty at the start."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put stand-in mongodump and mongorestore first on PATH; returns their record folder."""
    bindir = tmp_path / "stand-in-bin"
    bindir.mkdir()
    folder = tmp_path / "records"
    folder.mkdir()
    for tool in ("mongodump", "mongorestore"):
        script = bindir / tool
        script.write_text(STAND_IN.format(python=sys.executable, records=str(folder)))
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return folder


def recorded(records: Path, tool: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((records / f"{tool}.json").read_text())
    return result


def assert_password_only_in_the_config(record: dict[str, Any]) -> None:
    assert not any(PASSWORD in arg or 'pa"ss' in arg for arg in record["argv"])
    assert not any(PASSWORD in value for value in record["env"].values())
    assert record["config_mode"] == 0o600
    assert YAML(typ="safe").load(record["config"]) == {"password": PASSWORD}
    assert not Path(record["config_path"]).exists()  # removed when the tool exited
    assert Path(record["config_path"]).name.startswith("backupctl-mongo-")


# -- registration and config ---------------------------------------------------


def test_registered_through_the_backupctl_entry_point_group() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="backupctl")}
    assert found.get("mongo") == "backupctl_mongo.plugin"
    plugin_manager(plugin)  # validated: a misspelled hook argument raises here
    assert plugin.backupctl_plugin_types() == [PluginType("database", "mongo")]


def test_validate_config(settings: GlobalSettings) -> None:
    assert plugin.backupctl_validate_config(project=make_project(), settings=settings) == []
    incomplete = make_project(host=None, name=None, password=None, port=99999)
    assert plugin.backupctl_validate_config(project=incomplete, settings=settings) == [
        "database.host is required",
        "database.name is required",
        "database.password is required when database.user is set",
        "database.port must be between 1 and 65535, got 99999",
    ]
    no_auth = make_project(user=None, password=None)
    assert plugin.backupctl_validate_config(project=no_auth, settings=settings) == []
    other = ProjectSettings(
        name="p", restic=ResticSettings(repository_path="/x"), database=DatabaseSettings("mysql")
    )
    assert plugin.backupctl_validate_config(project=other, settings=settings) == []


# -- dump ----------------------------------------------------------------------


def test_dump_argv_config_file_and_archive(
    records: Path, settings: GlobalSettings, stem: Path
) -> None:
    artifact = plugin.backupctl_dump(project=make_project(), settings=settings, target_stem=stem)

    path = stem.with_name(stem.name + ".archive.gz")
    assert artifact == DumpArtifact(path, path.stat().st_size, "mongo-archive-gzip")
    record = recorded(records, "mongodump")
    assert record["argv"][1:] == [
        f"--config={record['config_path']}",
        "--host=mongo.example",
        "--port=27018",
        "--username=backup",
        "--authenticationDatabase=admin",
        "--db=shop",
        f"--archive={path}",
        "--gzip",
    ]
    assert_password_only_in_the_config(record)
    assert mode(path) == 0o600
    assert gzip.decompress(path.read_bytes()).startswith(ARCHIVE_MAGIC)
    assert sorted(p.name for p in stem.parent.iterdir()) == [path.name]


def test_dump_without_credentials_passes_no_config(
    records: Path, settings: GlobalSettings, stem: Path
) -> None:
    project = make_project(user=None, password=None, port=None)
    plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    argv = recorded(records, "mongodump")["argv"]
    assert argv[1:4] == ["--host=mongo.example", "--port=27017", "--db=shop"]
    assert not any(arg.startswith(("--config", "--username")) for arg in argv)


@pytest.mark.parametrize(
    ("failure", "retryable", "connectivity"),
    [
        (
            "can't create session: failed to connect to mongodb://mongo.example:27018/: "
            "connection() error occurred during connection handshake: auth error: sasl "
            'conversation error: unable to authenticate using mechanism "SCRAM-SHA-256": '
            "(AuthenticationFailed) Authentication failed.",
            False,
            False,
        ),
        (
            "can't create session: could not connect to server: server selection error: "
            "server selection timeout, current topology: { Type: Single, Servers: [{ Addr: "
            "mongo.example:27018, Type: Unknown, Last error: dial tcp: connect: connection "
            "refused }, ] }",
            True,
            True,
        ),
        ("error writing data for collection `shop.people` to disk: connection reset", True, True),
        ("error reading collection: (Unauthorized) not authorized on shop", False, False),
        ("error writing to file: no space left on device", False, False),  # not retried
    ],
    ids=["auth", "unreachable", "dropped", "no-rights", "disk-full"],
)
def test_a_failing_mongodump_fails_the_dump_and_leaves_nothing_behind(
    records: Path,
    settings: GlobalSettings,
    stem: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
    retryable: bool,
    connectivity: bool,
) -> None:
    (records / "fail-mongodump").write_text(failure)

    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=make_project(), settings=settings, target_stem=stem)

    assert caught.value.message == f"mongodump: Failed: {failure}"
    assert (caught.value.retryable, caught.value.connectivity) == (retryable, connectivity)
    assert list(stem.parent.iterdir()) == []  # the half-written archive is gone
    assert_password_only_in_the_config(recorded(records, "mongodump"))


def test_a_password_in_the_tools_output_is_masked(
    records: Path, settings: GlobalSettings, stem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (records / "fail-mongodump").write_text(f"bad password {PASSWORD}")
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=make_project(), settings=settings, target_stem=stem)
    assert caught.value.message == "mongodump: Failed: bad password ********"


def test_missing_mongodump_is_a_clear_permanent_error(
    tmp_path: Path,
    settings: GlobalSettings,
    stem: Path,
    monkeypatch: pytest.MonkeyPatch,
    private_tempdir: Path,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_dump(project=make_project(), settings=settings, target_stem=stem)
    assert caught.value.retryable is False
    assert "mongodump not found on PATH" in caught.value.message
    assert list(stem.parent.iterdir()) == []
    assert list(private_tempdir.iterdir()) == []  # the config file is gone too


# -- verify --------------------------------------------------------------------


@pytest.fixture
def artifact(records: Path, settings: GlobalSettings, stem: Path) -> DumpArtifact:
    result: DumpArtifact = plugin.backupctl_dump(
        project=make_project(), settings=settings, target_stem=stem
    )
    return result


def test_verify_runs_mongorestore_dry_run(
    records: Path, settings: GlobalSettings, artifact: DumpArtifact
) -> None:
    result = plugin.backupctl_verify(project=make_project(), settings=settings, artifact=artifact)

    assert result.ok, result.detail
    record = recorded(records, "mongorestore")
    assert record["argv"][1:] == [
        f"--config={record['config_path']}",
        "--host=mongo.example",
        "--port=27018",
        "--username=backup",
        "--authenticationDatabase=admin",
        "--dryRun",
        f"--archive={artifact.path}",
        "--gzip",
    ]
    assert_password_only_in_the_config(record)


def test_verify_rejects_a_truncated_archive_without_asking_the_server(
    records: Path, settings: GlobalSettings, artifact: DumpArtifact
) -> None:
    data = artifact.path.read_bytes()
    artifact.path.write_bytes(data[: len(data) // 2])

    result = plugin.backupctl_verify(project=make_project(), settings=settings, artifact=artifact)

    assert not result.ok
    assert result.detail.startswith(f"{artifact.path.name} is not a valid gzip file: gzip: ")
    assert not (records / "mongorestore.json").exists()


def test_verify_reports_what_mongorestore_says(
    records: Path, settings: GlobalSettings, artifact: DumpArtifact
) -> None:
    artifact.path.write_bytes(gzip.compress(b"a gzip file, but no mongodump archive"))
    result = plugin.backupctl_verify(project=make_project(), settings=settings, artifact=artifact)
    assert not result.ok
    assert result.detail == (
        "mongorestore: Failed: stream or file does not appear to be a mongodump archive"
    )


def test_verify_reports_a_missing_file(tmp_path: Path, settings: GlobalSettings) -> None:
    gone = DumpArtifact(tmp_path / "gone.archive.gz", 0, "mongo-archive-gzip")
    result = plugin.backupctl_verify(project=make_project(), settings=settings, artifact=gone)
    assert not result.ok
    assert "missing" in result.detail


# -- decompress and the restore guide --------------------------------------------


def test_decompress_gunzips_the_archive_next_to_it(
    tmp_path: Path, settings: GlobalSettings, artifact: DumpArtifact
) -> None:
    project = make_project()
    plain = plugin.backupctl_decompress(project=project, settings=settings, path=artifact.path)

    assert plain == artifact.path.with_name(artifact.path.name.removesuffix(".gz"))
    assert plain.read_bytes() == gzip.decompress(artifact.path.read_bytes())
    assert plain.read_bytes().startswith(ARCHIVE_MAGIC)
    assert mode(plain) == 0o600
    assert artifact.path.is_file()

    other = tmp_path / "x.sql.gz"
    assert plugin.backupctl_decompress(project=project, settings=settings, path=other) is None


def test_decompress_of_a_broken_file_leaves_nothing_behind(
    settings: GlobalSettings, artifact: DumpArtifact
) -> None:
    artifact.path.write_bytes(artifact.path.read_bytes()[:-50])
    with pytest.raises(PluginError) as caught:
        plugin.backupctl_decompress(project=make_project(), settings=settings, path=artifact.path)
    assert "unexpected end of file" in caught.value.message
    assert not artifact.path.with_suffix("").exists()


def test_restore_guide(settings: GlobalSettings) -> None:
    project = make_project()
    guide = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=Path("/restore/my dumps/shop.archive.gz")
    )
    assert guide[1] == (
        "mongorestore --host=mongo.example --port=27018 --username=backup "
        "--authenticationDatabase=admin '--nsInclude=shop.*' '--nsFrom=shop.*' "
        "'--nsTo=shop_restored.*' '--archive=/restore/my dumps/shop.archive.gz' --gzip"
    )
    assert guide[0].startswith("# ") and guide[2].startswith("# ")
    assert all(PASSWORD not in line for line in guide)

    plain = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=Path("/r/shop.archive")
    )
    assert plain[1].endswith("'--nsTo=shop_restored.*' --archive=/r/shop.archive")
    assert (
        plugin.backupctl_restore_guide(
            project=project, settings=settings, dump_file=Path("/r/shop.sql.gz")
        )
        == []
    )


# -- check ---------------------------------------------------------------------


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_check_warns_that_the_login_is_not_checked(
    records: Path, settings: GlobalSettings, listening_port: int
) -> None:
    project = make_project(host="127.0.0.1", port=listening_port)
    [tools, result] = plugin.backupctl_check(project=project, settings=settings)
    assert tools.name == "tools" and tools.status == "pass", tools.detail
    assert (result.name, result.status) == ("database", "warn")
    assert result.detail == (
        f"mongo 127.0.0.1:{listening_port} reachable; login not checked before dump"
    )


def test_check_fails_when_nothing_listens(records: Path, settings: GlobalSettings) -> None:
    port = free_port()
    [tools, result] = plugin.backupctl_check(
        project=make_project(host="127.0.0.1", port=port), settings=settings
    )
    assert tools.name == "tools" and tools.status == "pass", tools.detail
    assert result.status == "fail"
    assert result.detail.startswith(f"mongo 127.0.0.1:{port} unreachable: ")


def test_check_fails_without_the_tools(
    tmp_path: Path, settings: GlobalSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    [result] = plugin.backupctl_check(project=make_project(), settings=settings)
    assert (result.name, result.status, result.detail) == (
        "tools",
        "fail",
        "not on PATH: mongodump, mongorestore (install the MongoDB Database Tools)",
    )


# -- the real tools, where they exist ------------------------------------------

REAL_TOOLS = ("mongodump", "mongorestore", "mongoimport", "mongoexport")


def real_server() -> tuple[str, int, str, str]:
    """host, port, user, password of MONGO_TEST_URI; skips when tools or server are missing."""
    missing = [tool for tool in REAL_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"MongoDB Database Tools not installed here ({', '.join(missing)})")
    uri = os.environ.get("MONGO_TEST_URI")
    if not uri:
        pytest.skip("MONGO_TEST_URI (mongodb://user:password@host:port) is not set")
    parts = urlsplit(uri)
    if not (parts.hostname and parts.username and parts.password):
        pytest.skip("MONGO_TEST_URI needs a user, a password and a host")
    if parse_qs(parts.query).get("authSource", ["admin"]) != ["admin"]:
        pytest.skip("the test user must authenticate against admin")
    port = parts.port or 27017
    try:
        socket.create_connection((parts.hostname, port), timeout=5).close()
    except OSError as error:
        pytest.skip(f"no MongoDB server answers at {parts.hostname}:{port}: {error}")
    return parts.hostname, port, parts.username, parts.password


def run_tool(tool: str, args: list[str], config: Path, **kwargs: Any) -> str:
    result = subprocess.run(
        [tool, f"--config={config}", *args], capture_output=True, text=True, **kwargs
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_real_round_trip(tmp_path: Path, settings: GlobalSettings, stem: Path) -> None:
    host, port, user, password = real_server()
    name = f"backupctl_test_{secrets.token_hex(4)}"
    config = tmp_path / "password.yaml"
    config.write_text(f"password: {json.dumps(password)}\n")
    config.chmod(0o600)
    login = [f"--host={host}", f"--port={port}", f"--username={user}"]
    login.append("--authenticationDatabase=admin")
    docs = [
        {"_id": i, "name": f"person {i} 😀", "note": None if i % 3 else "x"} for i in range(3000)
    ]
    run_tool(
        "mongoimport",
        [*login, f"--db={name}", "--collection=people"],
        config,
        input="\n".join(json.dumps(doc, ensure_ascii=False) for doc in docs),
    )
    project = make_project(host=host, port=port, name=name, user=user, password=Secret(password))

    artifact = plugin.backupctl_dump(project=project, settings=settings, target_stem=stem)
    assert plugin.backupctl_verify(project=project, settings=settings, artifact=artifact).ok
    guide = plugin.backupctl_restore_guide(
        project=project, settings=settings, dump_file=artifact.path
    )
    # The guide's mongorestore asks for the password; give it the config file instead.
    command = guide[1].replace("mongorestore ", f"mongorestore --config={config} ", 1)
    subprocess.run(["bash", "-c", command], check=True, stdin=subprocess.DEVNULL)

    exported = run_tool(
        "mongoexport",
        [*login, f"--db={name}_restored", "--collection=people", '--sort={"_id": 1}'],
        config,
    )
    assert [json.loads(line) for line in exported.splitlines()] == docs
