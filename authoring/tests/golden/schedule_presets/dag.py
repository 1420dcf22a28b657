import datetime
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

for preset in ["@once", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"]:
    with DAG(f"preset_{preset[1:]}", schedule=preset, start_date=datetime.datetime(2026, 1, 1)):
        EmptyOperator(task_id="tick")
