from airflow.sdk import DAG, TaskGroup
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("task_group_context", schedule=None):
    start = EmptyOperator(task_id="start")
    with TaskGroup("extract", tooltip="pull data", default_args={"retries": 3}) as extract:
        EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
        with TaskGroup("inner") as inner:
            EmptyOperator(task_id="c")
    with TaskGroup("flat", prefix_group_id=False) as flat:
        EmptyOperator(task_id="unprefixed")
    end = EmptyOperator(task_id="end")
    start >> extract >> flat >> end
