"""The zygote, driven the way `leoflow agent` drives it: a header and four descriptors over its
Unix socket, the runner's protocol on the pipes. Real processes throughout."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leoflow.compiler import compile_file
from leoflow.runner import source_sha256

SDK = str(Path(__file__).resolve().parents[1] / "src")

DAG = """
import os
from pathlib import Path
from airflow.sdk import DAG, task

# Each process that runs this file leaves its pid here.
with open(Path(__file__).parent / "imports.log", "a") as log:
    log.write(f"{os.getpid()}\\n")

with DAG("z", schedule=None):
    @task
    def pid():
        return os.getpid()

    pid()
"""


class Zygote:
    def __init__(self, project: Path) -> None:
        self.project = project
        self.socket = str(project / "zygote.sock")
        bootstrap = f"import sys; sys.path.insert(0, {SDK!r}); from leoflow.zygote import main; sys.exit(main())"
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-u", "-c", bootstrap, self.socket], cwd=project, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def run(self, source: str, try_number: int, on_disk: str | None = None) -> dict[str, Any]:
        """Runs task `pid` of the DAG in `source` as one attempt, with `on_disk` in the file
        (when it was edited since); returns what happened."""
        (self.project / "dag.py").write_text(source)
        compiled = compile_file(self.project / "dag.py")
        if on_disk is not None:
            (self.project / "dag.py").write_text(on_disk)
        task = compiled["dags"][0]["tasks"][0]
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        lifeline_r, lifeline_w = os.pipe()
        header = {"cwd": str(self.project), "fileloc": "dag.py", "source_sha256": source_sha256(source)}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self.socket)
            socket.send_fds(conn, [json.dumps(header).encode()], [stdin_r, stdout_w, stderr_w, lifeline_r])
            answer = json.loads(conn.makefile().readline())
        for fd in (stdin_r, stdout_w, stderr_w, lifeline_r):
            os.close(fd)
        start = {
            "dag_id": "z", "run_id": "r", "task_id": "pid", "map_index": -1, "try_number": try_number,
            "task": task, "source": source, "fileloc": "dag.py", "run": {"run_id": "r", "conf": {}},
        }  # fmt: skip
        with os.fdopen(stdin_w, "w") as to_runner, os.fdopen(stdout_r) as requests, os.fdopen(stderr_r) as log:
            to_runner.write(json.dumps(start) + "\n")
            to_runner.flush()
            pushed: list[Any] = []
            outcome: dict[str, Any] = {}
            for line in requests:
                request = json.loads(line)
                if request["op"] == "xcom_push":
                    pushed.append(request["value"])
                elif request["op"] == "done":
                    outcome = request
                to_runner.write(json.dumps({"ok": True}) + "\n")
                to_runner.flush()
            text = log.read()
        os.close(lifeline_w)
        return {"pid": answer["pid"], "pushed": pushed, "outcome": outcome, "log": text}

    def imports(self) -> list[int]:
        """Pids of the processes that ran the DAG file, but this one (compiling runs it too)."""
        pids = [int(p) for p in (self.project / "imports.log").read_text().split()]
        return [p for p in pids if p != os.getpid()]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def zygote(tmp_path: Path) -> Iterator[Zygote]:
    z = Zygote(tmp_path)
    yield z
    z.stop()


def until_preloaded(zygote: Zygote, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(zygote.imports()) < count:
        assert time.monotonic() < deadline, "the preloaded zygote never ran the DAG file"
        time.sleep(0.02)


def test_runners_of_a_known_version_find_their_dag_already_loaded(zygote: Zygote) -> None:
    first = zygote.run(DAG, 1)
    assert first["outcome"]["outcome"] == "success", first["log"]
    assert first["pushed"] == [first["pid"]]
    # The first runner ran the file itself; meanwhile a preloaded zygote ran it once more.
    until_preloaded(zygote, 2)
    time.sleep(0.2)  # let the preloaded zygote report ready
    later = [zygote.run(DAG, n) for n in (2, 3)]
    for attempt in later:
        assert attempt["outcome"]["outcome"] == "success", attempt["log"]
        assert attempt["pushed"] == [attempt["pid"]]
    imports = zygote.imports()
    assert len(imports) == 2, "later runners did not run the file again"
    assert first["pid"] in imports
    assert not {a["pid"] for a in later} & set(imports)


def test_a_new_version_runs_its_own_source(zygote: Zygote) -> None:
    zygote.run(DAG, 1)
    until_preloaded(zygote, 2)
    changed = DAG.replace("return os.getpid()", "return -os.getpid()")
    attempt = zygote.run(changed, 2)
    assert attempt["pushed"] == [-attempt["pid"]], "the new version's code ran"


def test_a_version_no_longer_on_disk_is_not_preloaded_and_its_runners_run_its_own_source(zygote: Zygote) -> None:
    # The run executes the version it was queued with, while dag.py was edited since.
    edited = DAG.replace("return os.getpid()", "return 0")
    attempts = [zygote.run(DAG, n, on_disk=edited) for n in (1, 2, 3)]
    time.sleep(0.3)
    for attempt in attempts:
        assert attempt["outcome"]["outcome"] == "success", attempt["log"]
        assert attempt["pushed"] == [attempt["pid"]]
    # Every runner ran the file itself; the preloaded zygote refused the changed file.
    assert zygote.imports() == [a["pid"] for a in attempts]
