from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator

def is_weekday():
    return True

with DAG("short_circuit_operator", schedule=None):
    gate = ShortCircuitOperator(task_id="gate", python_callable=is_weekday, ignore_downstream_trigger_rules=False)
    gate >> EmptyOperator(task_id="after")
