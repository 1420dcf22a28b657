import pendulum
from airflow.sdk import DAG, task

with DAG(dag_id="taskflow_basic", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), tags=["golden"]):
    @task
    def greet() -> str:
        return "hello"

    @task
    def shout(message: str) -> None:
        print(message.upper())

    shout(greet())
