from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.operators.empty import EmptyOperator
from airflow.operators.python import PythonOperator

def f():
    pass

with DAG("airflow2_import_paths", schedule=None):
    EmptyOperator(task_id="start") >> BashOperator(task_id="sh", bash_command="true") >> PythonOperator(task_id="py", python_callable=f)
