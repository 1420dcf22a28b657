import datetime
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("schedule_timedelta", schedule=datetime.timedelta(hours=6, minutes=30),
         start_date=datetime.datetime(2026, 1, 1), dagrun_timeout=datetime.timedelta(hours=1)):
    EmptyOperator(task_id="tick")
