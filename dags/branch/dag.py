"""Branching: `@task.branch` picks one of two paths from the `path` param; the path not taken
is skipped, the join after them runs with `trigger_rule="none_failed_min_one_success"`, and a
BashOperator renders Jinja templates (`{{ params.path }}`, `{{ run_id }}`) into its command.
Trigger with conf `{"path": "thorough"}` to take the other path."""

import pendulum

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param, task

with DAG(
    dag_id="branch",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    params={"path": Param("quick", enum=["quick", "thorough"], description="Which path to take")},
    tags=["example", "branching"],
):

    @task.branch
    def choose(params=None) -> str:
        path = params["path"]
        print(f"taking the {path} path")
        return f"{path}_check"

    @task
    def quick_check() -> str:
        return "checked a sample"

    @task
    def thorough_check() -> str:
        return "checked every row"

    @task(trigger_rule="none_failed_min_one_success")
    def report(ti=None) -> str:
        quick, thorough = ti.xcom_pull(task_ids=["quick_check", "thorough_check"])
        outcome = quick or thorough
        print(f"report: {outcome}")
        return outcome

    announce = BashOperator(
        task_id="announce",
        bash_command="echo 'run {{ run_id }} took the {{ params.path }} path'",
    )

    choose() >> [quick_check(), thorough_check()] >> report() >> announce
