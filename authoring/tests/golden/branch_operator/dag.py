from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import BranchPythonOperator

def choose(**context):
    return "left"

with DAG("branch_operator", schedule=None):
    branch = BranchPythonOperator(task_id="branch", python_callable=choose)
    left, right = EmptyOperator(task_id="left"), EmptyOperator(task_id="right")
    join = EmptyOperator(task_id="join", trigger_rule="none_failed_min_one_success")
    branch >> [left, right] >> join
