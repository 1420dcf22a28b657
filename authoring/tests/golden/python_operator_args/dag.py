from airflow.sdk import DAG
from airflow.providers.standard.operators.python import PythonOperator

def add(a, b, *, scale=1):
    return (a + b) * scale

with DAG("python_operator_args", schedule=None):
    PythonOperator(task_id="add", python_callable=add, op_args=[1, 2], op_kwargs={"scale": 10},
                   templates_dict={"day": "{{ ds }}"}, multiple_outputs=False)
