"""The triggerer: runs Airflow triggers on one asyncio loop, as Airflow's triggerer does, for
the control plane that starts it (executors/src/triggerer.rs).

It reads JSON lines on stdin:
- `{"op": "run", "id", "classpath", "kwargs", "repeat", "paths"}` builds the trigger again from
  its class and arguments (as `serialize()` gave them) and runs it. A deferral's trigger
  (`repeat` false) runs until its first event; an asset watcher's (`repeat` true) runs again each
  time it ends, and after a failure, waiting longer each time.
- `{"op": "cancel", "id"}` stops a trigger (its `cleanup()` runs).

and answers with JSON lines on stdout: `{"op": "ready"}`, then for each trigger
`{"op": "fired", "id", "payload"}`, `{"op": "failed", "id", "error"}` (it raised, could not be
built, or ended without an event) and `{"op": "log", "id", "line"}` (what it logged). Anything
a trigger prints goes to stderr, never into the answers.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import json
import logging
import os
import sys
import traceback
from typing import IO, Any

from leoflow.errors import DagDefinitionError
from leoflow.triggers import BaseTrigger, TriggerEvent, deserialize_value, serialize_value

#: The trigger whose code runs now (each trigger is an asyncio task with its own context).
_CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("leoflow_trigger", default=None)

#: A watcher's trigger that failed waits this long before it runs again, doubling to `_MOST_PAUSE`.
_FIRST_PAUSE = 1.0
_MOST_PAUSE = 60.0


class Answers:
    """The answers' channel: the process's real stdout, one JSON object per line."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def send(self, **answer: Any) -> None:
        self._stream.write(json.dumps(answer) + "\n")
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
            self._answers.send(op="log", id=trigger_id, line=self.format(record))
        except Exception:  # noqa: BLE001 - a log line must never stop a trigger
            self.handleError(record)


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
                self.fired(trigger_id, classpath, event)
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

    def fired(self, trigger_id: str, classpath: str, event: Any) -> None:
        if not isinstance(event, TriggerEvent):
            raise DagDefinitionError(f"{classpath} yielded {event!r}, not a TriggerEvent")
        payload = serialize_value(event.payload, f"the event of trigger {classpath}")
        self.answers.send(op="fired", id=trigger_id, payload=payload)


async def _clean_up(trigger: BaseTrigger) -> None:
    try:
        await trigger.cleanup()
    except Exception:  # noqa: BLE001 - a failed cleanup is only logged
        trigger.log.exception("the trigger's cleanup failed")


async def serve(requests: IO[str], answers: Answers) -> None:
    """Answers requests until stdin closes (the control plane is gone), then stops every trigger."""
    triggerer = Triggerer(answers)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), requests)
    answers.send(op="ready")
    while line := await reader.readline():
        triggerer.handle(line.decode())
    for trigger_id in list(triggerer.running):
        triggerer.cancel(trigger_id)
    await asyncio.sleep(0)


def main(argv: list[str] | None = None) -> int:
    """`python -m leoflow.triggerer [PROJECT]`: the project's modules importable, as a task's are."""
    argv = sys.argv if argv is None else argv
    from leoflow.compiler import AIRFLOW_SHIM

    if AIRFLOW_SHIM not in sys.path:
        sys.path.insert(0, AIRFLOW_SHIM)
    if len(argv) > 1 and argv[1] not in sys.path:
        sys.path.insert(1, argv[1])
    # The answers own the real stdout; what triggers print goes to stderr.
    answers = Answers(os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8"))
    sys.stdout = sys.stderr
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
