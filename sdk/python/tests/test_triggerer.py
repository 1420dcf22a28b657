"""The triggerer process (`leoflow.triggerer`), driven over its JSON lines as the control plane
drives it: triggers built from their class and arguments, their events, failures and logs,
cancelling, and a watcher's trigger running again after each event."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

FILE_TRIGGER = "airflow.providers.standard.triggers.file.FileTrigger"
FILE_DELETE_TRIGGER = "airflow.providers.standard.triggers.file.FileDeleteTrigger"

PROJECT_TRIGGERS = '''
import asyncio
from airflow.triggers.base import BaseTrigger, TriggerEvent

class Raising(BaseTrigger):
    def __init__(self, message):
        super().__init__()
        self.message = message
    def serialize(self):
        return ("my_triggers.Raising", {"message": self.message})
    async def run(self):
        print("this goes to its log")
        self.log.info("about to fail")
        raise RuntimeError(self.message)
        yield

class Silent(BaseTrigger):
    def serialize(self):
        return ("my_triggers.Silent", {})
    async def run(self):
        return
        yield

class Opaque(BaseTrigger):
    def serialize(self):
        return ("my_triggers.Opaque", {})
    async def run(self):
        yield TriggerEvent(object())

class Ending(BaseTrigger):
    def __init__(self, state):
        super().__init__()
        self.state = state
    def serialize(self):
        return ("my_triggers.Ending", {"state": self.state})
    async def run(self):
        from airflow.triggers.base import TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent
        events = {"success": TaskSuccessEvent, "failed": TaskFailedEvent, "skipped": TaskSkippedEvent}
        yield events[self.state](xcoms={"rows": [1, 2]} if self.state == "success" else None)

class Counting(BaseTrigger):
    def __init__(self, events):
        super().__init__()
        self.events = events
    def serialize(self):
        return ("my_triggers.Counting", {"events": self.events})
    async def run(self):
        for n in range(self.events):
            await asyncio.sleep(0.01)
            yield TriggerEvent({"n": n, "at": __import__("datetime").datetime(2026, 1, 1, tzinfo=__import__("datetime").timezone.utc)})
'''


class Triggerer:
    def __init__(self, project: Path) -> None:
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(SRC)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "leoflow.triggerer", str(project)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=project,
        )
        self.answers: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.next()["op"] == "ready"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.answers.put(json.loads(line))

    def send(self, **request: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()

    def run(self, trigger_id: str, classpath: str, kwargs: dict[str, Any], repeat: bool = False) -> None:
        self.send(op="run", id=trigger_id, classpath=classpath, kwargs=kwargs, repeat=repeat, paths=[])

    def next(self, timeout: float = 10.0, skip_logs: bool = True) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            answer = self.answers.get(timeout=max(deadline - time.monotonic(), 0.01))
            if not (skip_logs and answer["op"] == "log"):
                return answer

    def quiet_for(self, seconds: float) -> bool:
        try:
            answer = self.next(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected answer {answer}")


@pytest.fixture
def triggerer(tmp_path: Path) -> Iterator[Triggerer]:
    (tmp_path / "my_triggers.py").write_text(textwrap.dedent(PROJECT_TRIGGERS))
    running = Triggerer(tmp_path)
    yield running
    assert running.process.stdin is not None
    running.process.stdin.close()
    running.process.wait(timeout=10)
    assert running.process.returncode == 0


def test_a_file_trigger_fires_when_its_file_appears_and_says_so_in_its_log(triggerer: Triggerer, tmp_path: Path) -> None:
    target = tmp_path / "data" / "ready.csv"
    triggerer.run("t1", FILE_TRIGGER, {"filepath": str(target), "recursive": False, "poke_interval": 0.05})
    assert triggerer.quiet_for(0.3)
    target.parent.mkdir()
    target.write_text("x")
    answers = [triggerer.next(skip_logs=False) for _ in range(2)]
    assert answers[0]["op"] == "log" and answers[0]["id"] == "t1"
    assert f"Found file {target}" in answers[0]["line"]
    assert answers[1] == {"op": "fired", "id": "t1", "payload": True}
    # A deferral's trigger fires once.
    assert triggerer.quiet_for(0.3)


def test_a_cancelled_trigger_stops(triggerer: Triggerer, tmp_path: Path) -> None:
    target = tmp_path / "never"
    triggerer.run("t1", FILE_TRIGGER, {"filepath": str(target), "poke_interval": 0.05})
    triggerer.send(op="cancel", id="t1")
    time.sleep(0.1)
    target.write_text("x")
    assert triggerer.quiet_for(0.5)


def test_a_watchers_trigger_runs_again_after_each_event(triggerer: Triggerer, tmp_path: Path) -> None:
    target = tmp_path / "drop"
    triggerer.run("w", FILE_DELETE_TRIGGER, {"filepath": str(target), "poke_interval": 0.05}, repeat=True)
    for _ in range(3):
        target.write_text("x")
        assert triggerer.next() == {"op": "fired", "id": "w", "payload": True}
        assert not target.exists()  # FileDeleteTrigger deletes what it found


def test_a_raising_trigger_fails_with_its_traceback_and_what_it_prints_is_its_log(triggerer: Triggerer) -> None:
    triggerer.run("t1", "my_triggers.Raising", {"message": "the service said no"})
    assert triggerer.next(skip_logs=False) == {"op": "log", "id": "t1", "line": "this goes to its log"}
    log = triggerer.next(skip_logs=False)
    assert log == {"op": "log", "id": "t1", "line": "INFO - about to fail"}
    failed = triggerer.next()
    assert failed["op"] == "failed" and failed["id"] == "t1"
    assert failed["error"].startswith("Trigger my_triggers.Raising failed: Traceback")
    assert "RuntimeError: the service said no" in failed["error"]


@pytest.mark.parametrize(
    ("classpath", "kwargs", "expected"),
    [
        ("my_triggers.Silent", {}, "Trigger my_triggers.Silent ended without sending an event"),
        ("my_triggers.Opaque", {}, "a object cannot cross a deferral"),
        ("no_such_module.T", {}, "cannot import the trigger's module no_such_module"),
        ("my_triggers.PROJECT", {}, "my_triggers.PROJECT is not a trigger class"),
        ("os.path", {}, "os.path is not a trigger class"),
        ("my_triggers.Raising", {"wrong": 1}, "cannot be made with its serialized arguments ['wrong']"),
    ],
)
def test_a_trigger_that_cannot_run_fails_saying_why(triggerer: Triggerer, classpath: str, kwargs: dict[str, Any], expected: str) -> None:
    triggerer.run("t1", classpath, kwargs)
    failed = triggerer.next()
    assert failed["op"] == "failed", failed
    assert expected in failed["error"], failed["error"]


def test_payloads_cross_as_json_with_datetimes_tagged(triggerer: Triggerer) -> None:
    triggerer.run("w", "my_triggers.Counting", {"events": 2}, repeat=True)
    first, second = triggerer.next(), triggerer.next()
    assert first["payload"] == {"n": 0, "at": {"__type": "datetime", "__var": 1767225600.0}}
    assert second["payload"]["n"] == 1
    triggerer.send(op="cancel", id="w")


def test_arguments_arrive_deserialized(triggerer: Triggerer, tmp_path: Path) -> None:
    # A timedelta tagged as Airflow tags it is a timedelta again for the trigger.
    triggerer.run("t1", "airflow.providers.standard.triggers.temporal.TimeDeltaTrigger", {"delta": {"__type": "timedelta", "__var": 0.05}})
    fired = triggerer.next()
    assert fired["op"] == "fired" and fired["payload"]["__type"] == "datetime"


def test_an_unreadable_request_is_said_on_stderr_and_the_triggerer_goes_on(triggerer: Triggerer, tmp_path: Path) -> None:
    assert triggerer.process.stdin is not None
    triggerer.process.stdin.write("not json\n")
    triggerer.process.stdin.flush()
    triggerer.run("t1", "my_triggers.Silent", {})
    assert triggerer.next()["op"] == "failed"


@pytest.mark.parametrize(("state", "xcoms"), [("success", {"rows": [1, 2]}), ("failed", {}), ("skipped", {})])
def test_a_task_end_event_ends_the_task_with_its_xcoms(triggerer: Triggerer, state: str, xcoms: dict[str, Any]) -> None:
    triggerer.run("t1", "my_triggers.Ending", {"state": state})
    assert triggerer.next() == {"op": "ended", "id": "t1", "state": state, "xcoms": xcoms}


def test_a_watcher_s_trigger_cannot_end_a_task(triggerer: Triggerer) -> None:
    triggerer.run("w", "my_triggers.Ending", {"state": "success"}, repeat=True)
    failed = triggerer.next()
    assert failed["op"] == "failed" and "an asset watcher's trigger has no task to end" in failed["error"], failed
    triggerer.send(op="cancel", id="w")
