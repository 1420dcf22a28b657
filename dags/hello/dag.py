"""The smallest Leoflow project: two TaskFlow tasks, written exactly as for Airflow 3.2."""

import pendulum

from airflow.sdk import DAG, task

with DAG(
    dag_id="hello",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example"],
):

    @task
    def greet() -> str:
        return "Hello from Leoflow"

    @task
    def shout(message: str) -> None:
        print(message.upper())

    shout(greet())
