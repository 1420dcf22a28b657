"""The triggerer: runs Airflow triggers on one asyncio loop, as Airflow's triggerer does, for
the control plane that starts it (executors/src/triggerer.rs).

It reads JSON lines on stdin:
- `{"op": "run", "id", "classpath", "kwargs", "repeat", "paths"}` builds the trigger again from
  its class and arguments (as `serialize()` gave them) and runs it. A deferral's trigger
  (`repeat` false) runs until its first event; an asset watcher's (`repeat` true) runs again each
  time it ends, and after a failure, waiting longer each time.
- `{"op": "cancel", "id"}` stops a trigger (its `cleanup()` runs).
- `{"op": "answer", "id", "ask", "reply"}` answers what the trigger's code asked (below).

and answers with JSON lines on stdout: `{"op": "ready"}`, then for each trigger
`{"op": "fired", "id", "payload"}`, `{"op": "ended", "id", "state", "xcoms"}` (a deferral's
trigger yielded a `TaskSuccessEvent`, `TaskFailedEvent` or `TaskSkippedEvent`: the task ends
there), `{"op": "failed", "id", "error"}` (it raised, could not be
built, or ended without an event) and `{"op": "log", "id", "line"}` (what it logged or printed,
a line at a time). What is printed outside any trigger goes to stderr, never into the answers.
A DAG callback's code (in a thread) asks the control plane for Variables, Connections and its
run's XComs with `{"op": "ask", "id", "ask": n, "request"}` and waits for the answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import importlib
import io
import itertools
import json
import logging
import os
import sys
import threading
import traceback
from typing import IO, Any

from leoflow.errors import DagDefinitionError
from leoflow.triggers import BaseTaskEndEvent, BaseTrigger, TriggerEvent, deserialize_value, serialize_value

#: The trigger whose code runs now (each trigger is an asyncio task with its own context).
_CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("leoflow_trigger", default=None)


def ask(request: dict[str, Any]) -> dict[str, Any]:
    """The control plane's reply to what the running trigger's code asks (from a thread, as a
    DAG callback runs): `{"ok", "found", "value"}` or `{"ok": false, "error"}`."""
    trigger_id = _CURRENT.get()
    if _RUNNING is None or trigger_id is None:
        return {"ok": False, "error": "no control plane to ask: this code does not run in the triggerer"}
    return _RUNNING.ask(trigger_id, request)

#: How long code waits for the control plane's answer to what it asked.
ASK_TIMEOUT = 30.0

#: A watcher's trigger that failed waits this long before it runs again, doubling to `_MOST_PAUSE`.
_FIRST_PAUSE = 1.0
_MOST_PAUSE = 60.0


class Answers:
    """The answers' channel: the process's real stdout, one JSON object per line."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        # DAG callbacks run in threads: one answer at a time, whole.
        self._lock = threading.Lock()

    def send(self, **answer: Any) -> None:
        line = json.dumps(answer) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


class _TriggerLog(logging.Handler):
    """Sends what a trigger logs as `log` answers naming it."""

    def __init__(self, answers: Answers) -> None:
        super().__init__()
        self._answers = answers
        self.setFormatter(logging.Formatter("%(levelname)s - %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        trigger_id = _CURRENT.get()
        if trigger_id is None:
            return
        try:
            # A traceback is several lines of the try's log.
            for line in self.format(record).splitlines():
                self._answers.send(op="log", id=trigger_id, line=line)
        except Exception:  # noqa: BLE001 - a log line must never stop a trigger
            self.handleError(record)


class _Prints(io.TextIOBase):
    """`sys.stdout` in the triggerer: what a trigger (or a DAG callback) prints becomes lines of
    its log; what is printed outside any trigger goes to `elsewhere`."""

    def __init__(self, answers: Answers, elsewhere: IO[str]) -> None:
        self._answers = answers
        self._elsewhere = elsewhere
        self._partial: dict[str, str] = {}
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        trigger_id = _CURRENT.get()
        if trigger_id is None:
            return self._elsewhere.write(text)
        with self._lock:
            *lines, rest = (self._partial.pop(trigger_id, "") + text).split("\n")
            if rest:
                self._partial[trigger_id] = rest
        for line in lines:
            self._answers.send(op="log", id=trigger_id, line=line)
        return len(text)

    def flush(self) -> None:
        self._elsewhere.flush()


def build(classpath: str, kwargs: dict[str, Any]) -> BaseTrigger:
    """The trigger `classpath` names, made with `kwargs`; a clear error when it cannot be."""
    module_name, _, class_name = classpath.rpartition(".")
    if not module_name:
        raise DagDefinitionError(f"the trigger's class {classpath!r} is not a module's class (module.Class)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise DagDefinitionError(f"cannot import the trigger's module {module_name}: {error}") from error
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, BaseTrigger):
        raise DagDefinitionError(f"{classpath} is not a trigger class (a subclass of airflow.triggers.base.BaseTrigger)")
    try:
        return cls(**deserialize_value(kwargs))
    except TypeError as error:
        raise DagDefinitionError(f"{classpath} cannot be made with its serialized arguments {sorted(kwargs)}: {error}") from error


class Triggerer:
    """The running triggers, by id."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.running: dict[str, asyncio.Task[None]] = {}
        #: What code asked and waits for, by number.
        self.asked: dict[int, concurrent.futures.Future[dict[str, Any]]] = {}
        self._asks = itertools.count(1)

    def ask(self, trigger_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """The control plane's reply to `request` of trigger `trigger_id`; called from a thread
        (the loop reads the reply)."""
        number = next(self._asks)
        waiting: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self.asked[number] = waiting
        try:
            self.answers.send(op="ask", id=trigger_id, ask=number, request=request)
            return waiting.result(timeout=ASK_TIMEOUT)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"the control plane did not answer {request.get('op')} within {ASK_TIMEOUT:g} s") from None
        finally:
            self.asked.pop(number, None)

    def handle(self, line: str) -> None:
        try:
            request = json.loads(line)
            op = request["op"]
        except (ValueError, KeyError, TypeError):
            print(f"[leoflow triggerer] an unreadable request: {line!r}", file=sys.stderr)
            return
        if op == "run":
            self.cancel(request["id"])
            for path in request.get("paths") or []:
                if path not in sys.path:
                    sys.path.insert(1, path)
            task = asyncio.get_running_loop().create_task(self.run(request), name=request["id"])
            self.running[request["id"]] = task
        elif op == "cancel":
            self.cancel(request["id"])
        elif op == "answer":
            waiting = self.asked.get(request.get("ask"))
            if waiting is not None and not waiting.done():
                waiting.set_result(request.get("reply") or {})
        else:
            print(f"[leoflow triggerer] an unknown request: {op!r}", file=sys.stderr)

    def cancel(self, trigger_id: str) -> None:
        task = self.running.pop(trigger_id, None)
        if task is not None:
            task.cancel()

    async def run(self, request: dict[str, Any]) -> None:
        """Runs one trigger: once for a deferral, on and on for a watcher."""
        trigger_id: str = request["id"]
        _CURRENT.set(trigger_id)
        repeat = bool(request.get("repeat"))
        pause = _FIRST_PAUSE
        try:
            while True:
                error = await self.run_once(trigger_id, request["classpath"], request.get("kwargs") or {}, repeat)
                if not repeat:
                    return
                if error is None:
                    pause = _FIRST_PAUSE
                    continue
                await asyncio.sleep(pause)
                pause = min(pause * 2, _MOST_PAUSE)
        finally:
            if self.running.get(trigger_id) is asyncio.current_task():
                del self.running[trigger_id]

    async def run_once(self, trigger_id: str, classpath: str, kwargs: dict[str, Any], repeat: bool) -> str | None:
        """Builds and runs the trigger until it ends (a deferral's: until its first event);
        returns why it failed, if it did (said in a `failed` answer)."""
        trigger: BaseTrigger | None = None
        fired = False
        try:
            trigger = build(classpath, kwargs)
            async for event in trigger.run():
                self.fired(trigger_id, classpath, event, repeat)
                fired = True
                if not repeat:
                    return None
            if fired:
                return None
            error = f"Trigger {classpath} ended without sending an event"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a trigger raises fails its wait
            error = f"Trigger {classpath} failed: {''.join(traceback.format_exception(exc)).rstrip()}"
        finally:
            if trigger is not None:
                await _clean_up(trigger)
        self.answers.send(op="failed", id=trigger_id, error=error)
        return error

    def fired(self, trigger_id: str, classpath: str, event: Any, repeat: bool) -> None:
        if not isinstance(event, TriggerEvent):
            raise DagDefinitionError(f"{classpath} yielded {event!r}, not a TriggerEvent")
        if isinstance(event, BaseTaskEndEvent):
            if repeat:
                raise DagDefinitionError(f"{classpath} yielded {event!r}: an asset watcher's trigger has no task to end")
            xcoms = serialize_value(event.xcoms or {}, f"the XComs of {classpath}'s {type(event).__name__}")
            self.answers.send(op="ended", id=trigger_id, state=event.task_instance_state, xcoms=xcoms)
            return
        payload = serialize_value(event.payload, f"the event of trigger {classpath}")
        self.answers.send(op="fired", id=trigger_id, payload=payload)


#: The triggerer this process runs (what `ask` sends through).
_RUNNING: Triggerer | None = None


async def _clean_up(trigger: BaseTrigger) -> None:
    try:
        await trigger.cleanup()
    except Exception:  # noqa: BLE001 - a failed cleanup is only logged
        trigger.log.exception("the trigger's cleanup failed")


async def serve(requests: IO[str], answers: Answers) -> None:
    """Answers requests until stdin closes (the control plane is gone), then stops every trigger."""
    global _RUNNING
    triggerer = _RUNNING = Triggerer(answers)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), requests)
    answers.send(op="ready")
    while line := await reader.readline():
        triggerer.handle(line.decode())
    for trigger_id in list(triggerer.running):
        triggerer.cancel(trigger_id)
    await asyncio.sleep(0)
    # A DAG callback's thread cannot be stopped, and asyncio would wait for it: the process
    # ends without (the control plane runs the callback again if it had not finished).
    sys.stderr.flush()
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    """`python -m leoflow.triggerer [PROJECT]`: the project's modules importable, as a task's are."""
    argv = sys.argv if argv is None else argv
    # Run as `python -m leoflow.triggerer`, this module is `__main__`: code importing it (a DAG
    # callback's `ask`) must find this one, with its triggerer and trigger context.
    sys.modules.setdefault("leoflow.triggerer", sys.modules[__name__])
    from leoflow.compiler import AIRFLOW_SHIM

    if AIRFLOW_SHIM not in sys.path:
        sys.path.insert(0, AIRFLOW_SHIM)
    if len(argv) > 1 and argv[1] not in sys.path:
        sys.path.insert(1, argv[1])
    # The answers own the real stdout; what triggers print goes to their logs.
    answers = Answers(os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8"))
    sys.stdout = _Prints(answers, sys.stderr)
    root = logging.getLogger()
    root.addHandler(_TriggerLog(answers))
    root.setLevel(logging.INFO)
    try:
        asyncio.run(serve(sys.stdin, answers))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
