import pendulum
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("schedule_cron_catchup", schedule="30 6 * * MON-FRI", catchup=True,
         start_date=pendulum.datetime(2026, 3, 1, tz="Europe/Amsterdam"),
         end_date=pendulum.datetime(2026, 12, 31, tz="Europe/Amsterdam"),
         max_active_runs=2):
    EmptyOperator(task_id="tick")
