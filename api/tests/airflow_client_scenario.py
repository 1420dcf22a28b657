"""Drives a running Leoflow with Airflow's own Python client, `apache-airflow-client==3.2.2`,
the way an Airflow user's scripts do: log in, list DAGs, unpause, trigger with conf, wait for
success, read task instances, logs and XComs, clear a task, and create / read / update /
delete a Variable, a Connection and a Pool. The client's pydantic models check every response.

    LEOFLOW_URL=http://127.0.0.1:8088 ADMIN_PASSWORD=… DAG_ID=scenario python airflow_client_scenario.py

Exits non-zero (with the failing step) when anything is not as Airflow would have it.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from typing import Any

import airflow_client.client as airflow
from airflow_client.client.api import (
    connection_api,
    dag_api,
    dag_run_api,
    pool_api,
    task_instance_api,
    variable_api,
    x_com_api,
)
from airflow_client.client.exceptions import ApiException
from airflow_client.client.models import (
    ClearTaskInstancesBody,
    ClearTaskInstancesBodyTaskIdsInner,
    ConnectionBody,
    DAGPatchBody,
    PoolBody,
    PoolPatchBody,
    TriggerDAGRunPostBody,
    VariableBody,
)

BASE = os.environ.get("LEOFLOW_URL", "http://127.0.0.1:8088")
DAG_ID = os.environ.get("DAG_ID", "scenario")


def step(name: str) -> None:
    print(f"== {name}", flush=True)


def token(password: str) -> str:
    """Logs in the way Airflow's simple auth manager takes it: POST /auth/token."""
    request = urllib.request.Request(
        f"{BASE}/auth/token",
        data=json.dumps({"username": "admin", "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201, response.status
        body: dict[str, Any] = json.load(response)
    return str(body["access_token"])


def expect_status(status: int, call: Any, *args: Any, **kwargs: Any) -> None:
    try:
        call(*args, **kwargs)
    except ApiException as error:
        assert error.status == status, f"expected {status}, got {error.status}: {error.body}"
        return
    raise AssertionError(f"expected {status}, the call succeeded")


def main() -> int:
    step("log in (a wrong password is refused)")
    try:
        token("not-the-password")
        raise AssertionError("a wrong password was accepted")
    except urllib.error.HTTPError as error:
        assert error.code == 401, error.code
    configuration = airflow.Configuration(host=BASE, access_token=token(os.environ["ADMIN_PASSWORD"]))
    with airflow.ApiClient(configuration) as client:
        dags = dag_api.DAGApi(client)
        runs = dag_run_api.DagRunApi(client)
        tis = task_instance_api.TaskInstanceApi(client)
        xcoms = x_com_api.XComApi(client)

        step("list DAGs")
        listed = dags.get_dags(limit=100)
        ids = [d.dag_id for d in listed.dags]
        assert DAG_ID in ids, ids
        assert listed.total_entries == len(ids)

        step("unpause")
        patched = dags.patch_dag(DAG_ID, DAGPatchBody(is_paused=False))
        assert patched.is_paused is False
        assert dags.get_dag(DAG_ID).is_paused is False

        step("trigger with conf (and a conf that breaks params is refused)")
        expect_status(400, runs.trigger_dag_run, DAG_ID, TriggerDAGRunPostBody(logical_date=None, conf={"count": "many"}))
        run = runs.trigger_dag_run(DAG_ID, TriggerDAGRunPostBody(logical_date=None, conf={"count": 3}))
        assert run.conf == {"count": 3}, run.conf
        run_id = run.dag_run_id

        step("wait for success")
        deadline = time.monotonic() + 120
        while True:
            state = runs.get_dag_run(DAG_ID, run_id).state
            if state.value in ("success", "failed"):
                break
            assert time.monotonic() < deadline, f"run {run_id} still {state}"
            time.sleep(0.5)
        assert state.value == "success", state

        step("task instances")
        instances = tis.get_task_instances(DAG_ID, run_id)
        by_task = {(t.task_id, t.map_index): t for t in instances.task_instances}
        assert ("produce", -1) in by_task, sorted(by_task)
        assert all(t.state.value == "success" for t in instances.task_instances), instances
        mapped = [t for t in instances.task_instances if t.task_id == "square"]
        assert sorted(t.map_index for t in mapped) == [0, 1, 2], mapped

        step("logs")
        log = tis.get_log(DAG_ID, run_id, "produce", 1)
        text = "\n".join(str(line.actual_instance.event if hasattr(line, "actual_instance") else line) for line in log.content)
        assert "producing 3 items" in text, text

        step("XCom")
        entries = xcoms.get_xcom_entries(DAG_ID, run_id, "produce")
        assert [e.key for e in entries.xcom_entries] == ["return_value"], entries
        value = xcoms.get_xcom_entry(DAG_ID, "produce", run_id, "return_value")
        assert value.actual_instance.value == [0, 1, 2], value
        square = xcoms.get_xcom_entry(DAG_ID, "square", run_id, "return_value", map_index=2)
        assert square.actual_instance.value == 4, square

        step("clear a task (it runs again, with a second try)")
        cleared = tis.post_clear_task_instances(
            DAG_ID,
            ClearTaskInstancesBody(dry_run=False, dag_run_id=run_id, task_ids=[ClearTaskInstancesBodyTaskIdsInner("total")]),
        )
        assert cleared.total_entries >= 1
        deadline = time.monotonic() + 120
        while True:
            total = tis.get_task_instance(DAG_ID, run_id, "total")
            if total.try_number == 2 and total.state is not None and total.state.value == "success":
                break
            assert time.monotonic() < deadline, f"total not re-run: {total}"
            time.sleep(0.5)

        step("Variables: create, read, update, delete")
        variables = variable_api.VariableApi(client)
        variables.post_variable(VariableBody(key="scenario_var", value="one", description="made by the client"))
        expect_status(409, variables.post_variable, VariableBody(key="scenario_var", value="again"))
        assert variables.get_variable("scenario_var").value == "one"
        variables.patch_variable("scenario_var", VariableBody(key="scenario_var", value="two"))
        assert variables.get_variable("scenario_var").value == "two"
        assert "scenario_var" in [v.key for v in variables.get_variables().variables]
        variables.delete_variable("scenario_var")
        expect_status(404, variables.get_variable, "scenario_var")

        step("Connections: create, read, update, delete (the password never comes back)")
        connections = connection_api.ConnectionApi(client)
        connections.post_connection(
            ConnectionBody(connection_id="scenario_db", conn_type="postgres", host="db", login="me", password="s3cret", port=5432)
        )
        read = connections.get_connection("scenario_db")
        assert read.host == "db" and read.port == 5432, read
        assert read.password in (None, "***"), read.password
        connections.patch_connection("scenario_db", ConnectionBody(connection_id="scenario_db", conn_type="postgres", host="db2"))
        assert connections.get_connection("scenario_db").host == "db2"
        connections.delete_connection("scenario_db")
        expect_status(404, connections.get_connection, "scenario_db")

        step("Pools: create, read, update, delete")
        pools = pool_api.PoolApi(client)
        pools.post_pool(PoolBody(name="scenario_pool", slots=3, description="for the client"))
        assert pools.get_pool("scenario_pool").slots == 3
        pools.patch_pool("scenario_pool", PoolPatchBody(slots=5))
        assert pools.get_pool("scenario_pool").slots == 5
        assert "default_pool" in [p.name for p in pools.get_pools().pools]
        pools.delete_pool("scenario_pool")
        expect_status(404, pools.get_pool, "scenario_pool")

    print("scenario passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
