import datetime
from airflow.sdk import DAG
from airflow.providers.standard.operators.bash import BashOperator

with DAG("classic_bash", schedule="@daily", start_date=datetime.datetime(2026, 1, 1), catchup=False):
    first = BashOperator(task_id="first", bash_command="echo {{ ds }}", env={"GREETING": "hi"}, append_env=True)
    second = BashOperator(task_id="second", bash_command="exit 99", skip_on_exit_code=[99, 100], cwd="/tmp")
    first >> second
