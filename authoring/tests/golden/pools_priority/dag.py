from airflow.sdk import DAG
from airflow.providers.standard.operators.bash import BashOperator

with DAG("pools_priority", schedule=None, max_active_tasks=3):
    BashOperator(task_id="heavy", bash_command="true", pool="heavy_pool", pool_slots=4, priority_weight=10, queue="big")
    BashOperator(task_id="light", bash_command="true", priority_weight=1)
