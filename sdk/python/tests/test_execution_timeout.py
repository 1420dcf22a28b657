"""The execution timeout's alarm never splits a request to the task agent from its reply: it is
raised once the reply is read, so the next request (a failure callback's) reads its own."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from leoflow.exceptions import AirflowTaskTimeout
from leoflow.runner import Channel, execution_timeout


def test_the_alarm_waits_for_the_reply_of_the_request_in_flight() -> None:
    to_agent_r, to_agent_w = os.pipe()
    to_runner_r, to_runner_w = os.pipe()
    requests, answers = os.fdopen(to_agent_w, "w"), os.fdopen(to_runner_r)

    def agent() -> None:
        with os.fdopen(to_agent_r) as incoming, os.fdopen(to_runner_w, "w") as outgoing:
            for n, line in enumerate(incoming):
                time.sleep(0.5 if n == 0 else 0)  # the first reply comes after the alarm
                key = json.loads(line)["key"]
                outgoing.write(json.dumps({"ok": True, "found": True, "value": f"answer to {key}"}) + "\n")
                outgoing.flush()

    threading.Thread(target=agent, daemon=True).start()
    channel = Channel(requests, answers)
    started = time.monotonic()
    with pytest.raises(AirflowTaskTimeout):
        with execution_timeout(0.1):
            channel.look_up({"op": "variable", "key": "first"})
            time.sleep(5)
    # Raised once the first reply was read (after 0.5 s), not at 0.1 s mid-request.
    assert 0.4 < time.monotonic() - started < 2
    # The next request reads its own reply, not the first one's.
    assert channel.look_up({"op": "variable", "key": "second"}) == (True, "answer to second")
