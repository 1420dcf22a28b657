from airflow.sdk import DAG, task
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator

def show(value):
    print(value)

with DAG("mapping_classic", schedule=None):
    @task
    def commands():
        return ["echo a", "echo b"]

    BashOperator.partial(task_id="run", retries=1).expand(bash_command=commands())
    PythonOperator.partial(task_id="show", python_callable=show).expand_kwargs([{"op_args": [1]}, {"op_args": [2]}])
