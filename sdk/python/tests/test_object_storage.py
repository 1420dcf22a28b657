"""`airflow.sdk.ObjectStoragePath` (`leoflow.objectstorage`): the path algebra Airflow 3.2's gives,
local I/O without any package, remote I/O through fsspec with the filesystem's options built from
the Connection the path names, the error when fsspec is missing, and paths as XComs in Airflow's
serialized form. The expected values are what Airflow's own class (on universal_pathlib) gives."""

from __future__ import annotations

import io
import json
import socket
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

import pytest
from task_harness import Agent, Project
from test_airflow_examples import fetch_wheel

from leoflow import objectstorage, runtime
from leoflow.compiler import compile_file
from leoflow.errors import DagDefinitionError
from leoflow.objectstorage import ObjectStoragePath, revive
from leoflow.runner import Connections, TaskError, to_json_value

TUTORIAL_BASE = "s3://aws_default@airflow-tutorial-data/"
CLASSNAME = "airflow.sdk.io.path.ObjectStoragePath"


@pytest.fixture(autouse=True)
def fresh_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test attaches its own stores (as each try's process does)."""
    monkeypatch.setattr(objectstorage, "_STORE_CACHE", {})


@pytest.fixture
def no_fsspec(monkeypatch: pytest.MonkeyPatch) -> None:
    """fsspec cannot be imported (whether or not the test venv has it)."""
    monkeypatch.setitem(sys.modules, "fsspec", None)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, monkeypatch)


# --------------------------------------------------------------------------------------------
# Path algebra


def test_building_paths_needs_no_package_and_does_no_io(no_fsspec: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_: Any, **__: Any) -> Any:
        raise AssertionError("building a path did I/O")

    monkeypatch.setattr(socket, "socket", refused)
    monkeypatch.setattr("builtins.open", refused)
    base = ObjectStoragePath(TUTORIAL_BASE)
    path = base / "air_quality_20210101.parquet"
    assert str(path) == "s3://aws_default@airflow-tutorial-data/air_quality_20210101.parquet"
    ObjectStoragePath("/nowhere/x").joinpath("y").parent.name
    ObjectStoragePath("file:///nowhere/x", conn_id="c") / "z"


def test_the_tutorial_base_and_its_file_as_airflow_parses_them() -> None:
    base = ObjectStoragePath(TUTORIAL_BASE)
    assert (str(base), base.protocol, base.conn_id) == (TUTORIAL_BASE, "s3", "aws_default")
    assert (base.path, base.bucket, base.key, base.name, base.parts) == (
        "airflow-tutorial-data/", "airflow-tutorial-data", "", "", ("airflow-tutorial-data/",),
    )
    assert repr(base) == "ObjectStoragePath('airflow-tutorial-data/', protocol='s3')"
    assert base.parent == base  # a bucket is its own parent
    assert dict(base.storage_options) == {}

    path = base / "air_quality_20210101.parquet"
    assert str(path) == "s3://aws_default@airflow-tutorial-data/air_quality_20210101.parquet"
    assert path.path == "airflow-tutorial-data/air_quality_20210101.parquet"
    assert (path.key, path.bucket, path.container, path.namespace) == (
        "air_quality_20210101.parquet", "airflow-tutorial-data", "airflow-tutorial-data", "s3://airflow-tutorial-data",
    )
    assert (path.name, path.stem, path.suffix, path.suffixes) == (
        "air_quality_20210101.parquet", "air_quality_20210101", ".parquet", [".parquet"],
    )
    assert path.parts == ("airflow-tutorial-data/", "air_quality_20210101.parquet")
    assert str(path.parent) == TUTORIAL_BASE and path.parent.conn_id == "aws_default"
    assert path.as_posix() == "s3://airflow-tutorial-data/air_quality_20210101.parquet"
    assert path.serialize() == {"path": str(path), "conn_id": "aws_default", "kwargs": {}}


def test_joining_and_deriving_keep_the_store() -> None:
    base = ObjectStoragePath(TUTORIAL_BASE)
    deep = base / "a" / "b/c.tar.gz"
    assert str(deep) == "s3://aws_default@airflow-tutorial-data/a/b/c.tar.gz"
    assert deep.parts == ("airflow-tutorial-data/", "a", "b", "c.tar.gz")
    assert (deep.stem, deep.suffix, deep.suffixes) == ("c.tar", ".gz", [".tar", ".gz"])
    assert [str(p) for p in deep.parents] == [
        "s3://aws_default@airflow-tutorial-data/a/b", "s3://aws_default@airflow-tutorial-data/a", TUTORIAL_BASE,
    ]
    assert str(base.joinpath("x", "y.csv")) == "s3://aws_default@airflow-tutorial-data/x/y.csv"
    assert base.joinpath("x", "y.csv") == base / "x" / "y.csv"
    f = base / "f.parquet"
    assert str(f.with_name("z.csv")) == "s3://aws_default@airflow-tutorial-data/z.csv"
    assert str(f.with_suffix(".csv")) == "s3://aws_default@airflow-tutorial-data/f.csv"
    assert str(f.with_stem("q")) == "s3://aws_default@airflow-tutorial-data/q.parquet"
    assert f.match("*.parquet") and not f.match("*.csv")
    assert str(ObjectStoragePath("s3://bkt/a/") / "x/") == "s3://bkt/a/x"  # S3 keys drop a trailing slash
    assert str(ObjectStoragePath("s3://bkt/a/./b/../c").resolve()) == "s3://bkt/a/c"
    with pytest.raises(ValueError, match="Invalid suffix 'csv'"):
        f.with_suffix("csv")


def test_the_connection_comes_from_the_user_info_then_the_keyword_then_the_path_given() -> None:
    assert ObjectStoragePath("s3://bucket/k", conn_id="c1").conn_id == "c1"
    assert str(ObjectStoragePath("s3://bucket/k", conn_id="c1")) == "s3://c1@bucket/k"
    # Airflow's: the URL's user info wins over the keyword.
    assert ObjectStoragePath("s3://c0@bucket/k", conn_id="c1").conn_id == "c0"
    given = ObjectStoragePath("s3://c@b/x")
    assert (str(ObjectStoragePath(given, "y")), ObjectStoragePath(given, "y").conn_id) == ("s3://c@b/x/y", "c")
    assert ObjectStoragePath(given, conn_id="d").conn_id == "d"
    assert str(ObjectStoragePath("s3://c@bkt", "x", "y")) == "s3://c@bkt/x/y"
    assert str(ObjectStoragePath("bkt/key", protocol="s3", conn_id="c")) == "s3://c@bkt/key"
    anonymous = ObjectStoragePath("s3://bkt/x", anon=True)
    assert anonymous.serialize() == {"path": "s3://bkt/x", "conn_id": None, "kwargs": {"anon": True}}


def test_local_paths_and_file_urls() -> None:
    url = ObjectStoragePath("file:///tmp/x")
    assert (str(url), url.path, url.protocol, url.key, url.bucket, url.parts) == (
        "file:///tmp/x", "/tmp/x", "file", "tmp/x", "", ("/", "tmp", "x"),
    )
    assert str(url / "y.txt") == "file:///tmp/x/y.txt" and str(url.parent) == "file:///tmp"
    assert str(ObjectStoragePath("file:/tmp/x")) == "file:///tmp/x"
    plain = ObjectStoragePath("/tmp/x/")
    assert (str(plain), plain.path, plain.protocol, plain.key, plain.name) == ("/tmp/x", "/tmp/x", "", "tmp/x", "x")
    assert repr(plain) == "ObjectStoragePath('/tmp/x', protocol='')"
    assert str(plain / "a" / "b.txt") == "/tmp/x/a/b.txt" and str(plain / "/etc") == "/etc"
    relative = ObjectStoragePath("rel/a/b.txt")
    assert (str(relative.parent), relative.parts, relative.is_absolute()) == ("rel/a", ("rel", "a", "b.txt"), False)
    assert str(ObjectStoragePath("")) == "."
    assert str(ObjectStoragePath("/tmp/a/b").relative_to("/tmp")) == "a/b"
    assert ObjectStoragePath("/tmp/a").as_uri() == "file:///tmp/a"


def test_other_stores_as_universal_pathlib_shapes_them() -> None:
    gcs = ObjectStoragePath("gs://g@bkt/a/b")
    assert (gcs.protocol, gcs.conn_id, gcs.path, gcs.bucket, gcs.key) == ("gs", "g", "bkt/a/b", "bkt", "a/b")
    folder = ObjectStoragePath("gs://bkt/a/")
    assert (str(folder), folder.path, folder.key, str(folder / "x/")) == ("gs://bkt/a/", "bkt/a", "a/", "gs://bkt/a/x/")
    sftp = ObjectStoragePath("sftp://host:22/tmp/x")
    assert (str(sftp), sftp.path, dict(sftp.storage_options)) == ("sftp:///tmp/x", "/tmp/x", {"host": "host", "port": 22})
    memory = ObjectStoragePath("memory://x/y")
    assert (str(memory / "z"), memory.path, memory.bucket, memory.key) == ("memory://x/y/z", "/x/y", "x", "y")
    web = ObjectStoragePath("https://example.com/a/b.csv")
    assert (web.path, web.bucket, web.key, web.name) == ("https://example.com/a/b.csv", "example.com", "a/b.csv", "b.csv")


def test_equality_is_the_store_and_the_text() -> None:
    path = ObjectStoragePath(TUTORIAL_BASE) / "x.parquet"
    assert path == ObjectStoragePath("s3://aws_default@airflow-tutorial-data/x.parquet")
    assert path != ObjectStoragePath("s3://airflow-tutorial-data/x.parquet")  # another Connection
    assert path != "s3://aws_default@airflow-tutorial-data/x.parquet"
    assert ObjectStoragePath("/tmp/x") != ObjectStoragePath("file:///tmp/x")  # another protocol
    assert ObjectStoragePath("s3://b/x") == ObjectStoragePath("s3://b/x/")
    assert hash(path) == hash(str(path)) and len({path, ObjectStoragePath(str(path))}) == 1
    assert sorted([ObjectStoragePath("s3://b/b"), ObjectStoragePath("s3://b/a")]) == [ObjectStoragePath("s3://b/a"), ObjectStoragePath("s3://b/b")]


# --------------------------------------------------------------------------------------------
# Local I/O, without fsspec


@pytest.mark.parametrize("spelling", ["plain", "file URL"])
def test_local_io_is_native(tmp_path: Path, spelling: str, no_fsspec: None) -> None:
    base = ObjectStoragePath(str(tmp_path / "store") if spelling == "plain" else f"file://{tmp_path}/store")
    assert not base.exists()
    base.mkdir()
    with pytest.raises(FileExistsError):
        base.mkdir()
    base.mkdir(exist_ok=True)
    sub = base / "sub"
    sub.mkdir()
    text = sub / "a.txt"
    assert text.write_text("hello") == 5
    assert (text.read_text(), text.exists(), text.is_file(), sub.is_dir(), text.size()) == ("hello", True, True, True, 5)
    assert (tmp_path / "store" / "sub" / "a.txt").read_text() == "hello"
    assert (base / "b.bin").write_bytes(b"\x00\x01") == 2 and (base / "b.bin").read_bytes() == b"\x00\x01"
    with (base / "b.bin").open("ab") as file:
        file.write(b"\x02")
    assert (tmp_path / "store" / "b.bin").read_bytes() == b"\x00\x01\x02"
    assert [p.name for p in base.iterdir()] == ["b.bin", "sub"]
    assert all(p.protocol == base.protocol for p in base.iterdir())
    assert [str(p) for p in base.glob("*.bin")] == [str(base / "b.bin")]
    assert [str(p) for p in base.rglob("*.txt")] == [str(text)]
    info = text.stat()
    assert (info.st_size, info["type"], info["protocol"], info["conn_id"]) == (5, "file", base.protocol, None)
    assert info.st_mtime == (tmp_path / "store" / "sub" / "a.txt").stat().st_mtime

    text.copy(base / "c.txt")
    text.copy(str(base))  # into a directory: keeps its name
    assert (base / "c.txt").read_text() == "hello" and (base / "a.txt").read_text() == "hello"
    (base / "c.txt").move(base / "d.txt")
    assert not (base / "c.txt").exists() and (base / "d.txt").read_text() == "hello"
    renamed = (base / "d.txt").rename(base / "e.txt")
    assert renamed == base / "e.txt" and renamed.read_text() == "hello"
    with pytest.raises(IsADirectoryError):
        sub.copy(base / "sub2")
    sub.copy(base / "sub2", recursive=True)
    assert [p.name for p in (base / "sub2").iterdir()] == ["a.txt"]
    walked = {str(p): (sorted(dirs), sorted(files)) for p, dirs, files in base.walk()}
    assert walked == {str(base): (["sub", "sub2"], ["a.txt", "b.bin", "e.txt"]), str(sub): ([], ["a.txt"]), str(base / "sub2"): ([], ["a.txt"])}
    renamed.unlink()
    assert not renamed.exists()
    with pytest.raises(FileNotFoundError):
        renamed.unlink()
    renamed.unlink(missing_ok=True)
    (base / "empty").mkdir()
    (base / "empty").rmdir(recursive=False)
    assert not (base / "empty").exists()
    base.rmdir(recursive=True)
    assert not (tmp_path / "store").exists()


def test_a_plain_local_directory_is_removed_only_when_empty_unless_recursive(tmp_path: Path) -> None:
    folder = ObjectStoragePath(str(tmp_path / "d"))
    (folder / "x").mkdir(parents=True)
    with pytest.raises(OSError):
        folder.rmdir()
    folder.rmdir(recursive=True)
    assert not folder.exists()


# --------------------------------------------------------------------------------------------
# Other stores: fsspec, with options from the Connection


def test_a_remote_path_without_fsspec_fails_naming_the_packages_and_the_scheme(no_fsspec: None) -> None:
    path = ObjectStoragePath(TUTORIAL_BASE) / "x.parquet"
    with pytest.raises(ImportError) as error:
        path.read_bytes()
    message = str(error.value)
    assert message.startswith("s3://aws_default@airflow-tutorial-data/x.parquet: s3:// paths are read and written through")
    assert "fsspec" in message and "s3fs" in message and "leoflow.yaml `dependencies`" in message
    assert error.value.name == "fsspec"
    with pytest.raises(ImportError, match=r"gs:// paths .* fsspec .*gcsfs"):
        ObjectStoragePath("gs://bucket/x").exists()
    with pytest.raises(ImportError, match=r"needs the fsspec package, .*\(reading and writing local paths does not need it\)"):
        ObjectStoragePath("/tmp").fs


class FakeFileSystem:
    """An fsspec filesystem in memory, as far as these tests use one."""

    def __init__(self, protocol: str, options: dict[str, Any]) -> None:
        self.protocol, self.options = protocol, options
        self.files: dict[str, bytes] = {}
        self.made: list[str] = []

    def open(self, path: str, mode: str = "rb", block_size: Any = None, **kwargs: Any) -> Any:
        files = self.files
        if "r" in mode:
            binary: Any = io.BytesIO(files[path])
        else:
            class Committing(io.BytesIO):
                def close(self) -> None:
                    files[path] = self.getvalue()
                    super().close()

            binary = Committing()
        return binary if "b" in mode else io.TextIOWrapper(binary, encoding=kwargs.get("encoding") or "utf-8")

    def exists(self, path: str) -> bool:
        return path in self.files or path in self.made

    def mkdir(self, path: str, create_parents: bool = True, **_: Any) -> None:
        self.made.append(path)


@pytest.fixture
def fake_fsspec(monkeypatch: pytest.MonkeyPatch) -> list[FakeFileSystem]:
    """fsspec replaced by one that records the filesystems made (protocol and options)."""
    made: list[FakeFileSystem] = []
    module = types.ModuleType("fsspec")

    def filesystem(protocol: str, **options: Any) -> FakeFileSystem:
        made.append(FakeFileSystem(protocol, options))
        return made[-1]

    module.filesystem = filesystem  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fsspec", module)
    return made


TASKS = """
from airflow.sdk import ObjectStoragePath

base = ObjectStoragePath("s3://aws_default@airflow-tutorial-data/")

with DAG("d", schedule=None):
    @task
    def produce():
        base.mkdir(exist_ok=True)
        path = base / "air_quality.csv"
        with path.open("wb") as file:
            file.write(b"pm10,pm2_5")
        return path

    @task
    def analyze(path: ObjectStoragePath):
        return {"type": type(path).__name__, "str": str(path), "conn_id": path.conn_id, "key": path.key,
                "text": path.read_text(), "exists": path.exists()}

    analyze(produce())
"""

AWS_DEFAULT = {
    "conn_type": "aws", "login": "AKIAEXAMPLE", "password": "secret",
    "extra": json.dumps({"region_name": "eu-west-1", "service_config": {"s3": {"endpoint_url": "http://minio:9000"}}}),
}


def test_an_s3_path_goes_through_fsspec_with_the_connections_options(project: Project, fake_fsspec: list[FakeFileSystem]) -> None:
    agent = Agent(connections={"aws_default": AWS_DEFAULT})
    outcome, agent = project.run(TASKS, "produce", agent=agent)
    assert outcome.outcome == "success"
    [fs] = fake_fsspec  # one filesystem, attached once for the store
    assert (fs.protocol, fs.options) == (
        "s3", {"key": "AKIAEXAMPLE", "secret": "secret", "client_kwargs": {"region_name": "eu-west-1"}, "endpoint_url": "http://minio:9000"},
    )
    assert fs.made == ["airflow-tutorial-data/"]
    assert fs.files == {"airflow-tutorial-data/air_quality.csv": b"pm10,pm2_5"}
    assert {"op": "connection", "key": "aws_default"} in agent.asked


def test_a_connection_needing_the_providers_hook_is_refused_by_name(project: Project, fake_fsspec: list[FakeFileSystem]) -> None:
    assuming = {**AWS_DEFAULT, "login": None, "password": None, "extra": json.dumps({"role_arn": "arn:aws:iam::1:role/r"})}
    with pytest.raises(ValueError, match=r"Connection 'aws_default' uses role_arn \(assuming a role\), which needs Airflow's Amazon provider"):
        project.run(TASKS, "produce", agent=Agent(connections={"aws_default": assuming}))
    assert fake_fsspec == []


def test_google_and_azure_connections_give_their_providers_options(fake_fsspec: list[FakeFileSystem], monkeypatch: pytest.MonkeyPatch) -> None:
    agent = Agent(connections={
        "gcp": {"conn_type": "google_cloud_platform", "extra": json.dumps({"project": "p1", "key_path": "/keys/sa.json", "gcs.requester-pays": True})},
        "azure": {"conn_type": "wasb", "login": "account", "password": "account-key", "extra": json.dumps({"sas_token": "tok"})},
        "secret": {"conn_type": "google_cloud_platform", "extra": json.dumps({"key_secret_name": "sa"})},
    })
    monkeypatch.setattr(runtime, "current_context", {"conn": Connections(agent)})
    ObjectStoragePath("gs://gcp@bucket/x").fs
    ObjectStoragePath("abfs://azure@container/x").fs
    assert [(fs.protocol, fs.options) for fs in fake_fsspec] == [
        ("gcs", {
            "project": "p1", "token": "/keys/sa.json", "access": "full_control", "consistency": "none", "cache_timeout": None,
            "requester_pays": True, "session_kwargs": {}, "endpoint_url": None, "default_location": None, "version_aware": False,
        }),
        ("abfs", {"account_name": "account", "account_key": "account-key", "sas_token": "tok"}),
    ]
    with pytest.raises(ValueError, match="Connection 'secret' uses key_secret_name, which needs Airflow's Google provider"):
        ObjectStoragePath("gs://secret@bucket/x").fs
    with pytest.raises(KeyError, match="The conn_id `missing` isn't defined"):
        ObjectStoragePath("gs://missing@bucket/x").exists()
    with pytest.raises(ValueError, match="give the filesystem's options as keyword arguments of ObjectStoragePath"):
        ObjectStoragePath("sftp://user@host/x").fs
    monkeypatch.setattr(runtime, "current_context", None)
    with pytest.raises(DagDefinitionError, match="built while a task runs, not while the DAG file is parsed"):
        ObjectStoragePath("gs://not_attached_yet@bucket/x").fs


def test_a_remote_path_in_a_task_without_fsspec_fails_the_try_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_fsspec: None) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    outcome, _ = Project(folder, monkeypatch, whole_attempt=True).run(TASKS, "produce")
    assert outcome.outcome == "failed"
    assert outcome.reason.startswith("ImportError: s3://aws_default@airflow-tutorial-data/: s3:// paths are read and written through the fsspec package (and s3fs for s3://)")


def test_real_fsspec_memory_store() -> None:
    # fsspec is in the test venv (requirements-dev.txt): its in-memory filesystem, for real.
    base = ObjectStoragePath("memory://leoflow-test/dir")
    base.mkdir(parents=True, exist_ok=True)
    (base / "a.csv").write_text("x,y")
    assert (base / "a.csv").read_text() == "x,y" and [p.name for p in base.iterdir()] == ["a.csv"]
    (base / "a.csv").copy(ObjectStoragePath("memory://leoflow-test/b.csv"))
    assert ObjectStoragePath("memory://leoflow-test/b.csv").stat().st_size == 3
    base.rmdir()
    assert not base.exists()


# --------------------------------------------------------------------------------------------
# XComs


def test_a_returned_path_is_airflows_serialized_form_and_comes_back_as_a_path(project: Project, fake_fsspec: list[FakeFileSystem]) -> None:
    connections = {"aws_default": AWS_DEFAULT}
    outcome, produced = project.run(TASKS, "produce", agent=Agent(connections=connections))
    pushed = produced.pushed["return_value"]
    assert pushed == {
        "__classname__": CLASSNAME,
        "__version__": 1,
        "__data__": {"path": "s3://aws_default@airflow-tutorial-data/air_quality.csv", "conn_id": "aws_default", "kwargs": {}},
    }
    files = fake_fsspec[0].files
    # The next try is another process: its store is attached anew (onto the same files here).
    objectstorage._STORE_CACHE.clear()
    fake_fsspec.clear()
    agent = Agent(xcoms={("produce", "return_value"): json.loads(json.dumps(pushed))}, connections=connections)
    original = sys.modules["fsspec"].filesystem  # type: ignore[attr-defined]

    def same_files(protocol: str, **options: Any) -> FakeFileSystem:
        fs: FakeFileSystem = original(protocol, **options)
        fs.files = files
        return fs

    sys.modules["fsspec"].filesystem = same_files  # type: ignore[attr-defined]
    outcome, analyzed = project.run(TASKS, "analyze", agent=agent)
    assert outcome.outcome == "success"
    assert analyzed.pushed["return_value"] == {
        "type": "ObjectStoragePath", "str": "s3://aws_default@airflow-tutorial-data/air_quality.csv",
        "conn_id": "aws_default", "key": "air_quality.csv", "text": "pm10,pm2_5", "exists": True,
    }


def test_local_paths_cross_tasks_and_are_read_for_real(project: Project, tmp_path: Path, no_fsspec: None) -> None:
    body = f"""
from airflow.sdk import ObjectStoragePath

with DAG("d", schedule=None):
    @task
    def write():
        out = ObjectStoragePath("file://{tmp_path}/out")
        out.mkdir(exist_ok=True)
        (out / "data.txt").write_text("from write")
        return {{"files": [out / "data.txt"], "folder": out}}

    @task
    def read(found):
        [data] = found["files"]
        return [type(data).__name__, data.read_text(), [p.name for p in found["folder"].iterdir()]]

    read(write())
"""
    _, written = project.run(body, "write")
    pushed = written.pushed["return_value"]
    assert pushed["files"][0]["__data__"] == {"path": f"file://{tmp_path}/out/data.txt", "conn_id": None, "kwargs": {}}
    assert pushed["folder"]["__classname__"] == CLASSNAME
    _, read = project.run(body, "read", agent=Agent(xcoms={("write", "return_value"): pushed}))
    assert read.pushed["return_value"] == ["ObjectStoragePath", "from write", ["data.txt"]]


def test_only_airflows_shape_is_revived() -> None:
    path = ObjectStoragePath("s3://c@b/k", anon=True)
    encoded = to_json_value([path, {"p": path}], "the result")
    assert encoded[0] == {"__classname__": CLASSNAME, "__version__": 1, "__data__": {"path": "s3://c@b/k", "conn_id": "c", "kwargs": {"anon": True}}}
    revived = revive(encoded)
    assert revived == [path, {"p": path}] and revived[0].storage_options == {"anon": True}
    # Airflow 2's class name is read too; other classes and look-alikes stay dicts.
    old = {"__classname__": "airflow.io.path.ObjectStoragePath", "__version__": 1, "__data__": {"path": "s3://b/k", "conn_id": None, "kwargs": {}}}
    assert revive(old) == ObjectStoragePath("s3://b/k")
    other = {"__classname__": "x.Y", "__version__": 1, "__data__": {"path": "s3://b/k"}}
    assert revive(other) == other and revive({**old, "extra": 1}) == {**old, "extra": 1}
    with pytest.raises(ValueError, match="Cannot deserialize version 2"):
        revive({**old, "__version__": 2})
    with pytest.raises(TaskError, match="not JSON-serializable"):
        to_json_value(ObjectStoragePath("s3://b/k", client=object()), "the result")


# --------------------------------------------------------------------------------------------
# DAG files


def test_airflows_object_storage_tutorial_compiles_unmodified(tmp_path: Path) -> None:
    with zipfile.ZipFile(fetch_wheel()) as wheel:
        source = wheel.read("airflow/example_dags/tutorial_objectstorage.py")
    path = tmp_path / "tutorial_objectstorage.py"
    path.write_bytes(source)
    compiled = compile_file(path)
    assert compiled["ok"], compiled
    [dag] = compiled["dags"]
    tasks = {t["task_id"]: t for t in dag["tasks"]}
    assert dag["dag_id"] == "tutorial_objectstorage" and sorted(tasks) == ["analyze", "get_air_quality_data"]
    assert tasks["analyze"]["upstream"] == ["get_air_quality_data"]
    assert tasks["analyze"]["python"]["args"] == [{"__xcom__": {"task_id": "get_air_quality_data", "key": "return_value"}}]


def test_airflows_import_paths_give_the_same_class(project: Project) -> None:
    path = project.write("dag.py", """
from airflow.sdk import DAG, ObjectStoragePath
from airflow.sdk.io import ObjectStoragePath as FromIo, attach, get_fs, has_fs
from airflow.sdk.io.path import ObjectStoragePath as FromPath
from airflow.sdk.io.stat import stat_result
from airflow.io.path import ObjectStoragePath as Deprecated
from airflow.io.storage import attach as deprecated_attach

assert ObjectStoragePath is FromIo is FromPath is Deprecated and attach is deprecated_attach
assert has_fs("s3") and not has_fs("sftp")

with DAG("d", schedule=None):
    pass
""")
    assert compile_file(path)["ok"]

