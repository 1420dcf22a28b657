import datetime
from airflow.sdk import DAG, task

default_args = {
    "owner": "data-team",
    "retries": 3,
    "retry_delay": datetime.timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": datetime.timedelta(minutes=10),
    "execution_timeout": datetime.timedelta(minutes=2),
    "depends_on_past": False,
    "email_on_failure": False,
}

with DAG("retry_policy", schedule=None, default_args=default_args):
    @task
    def flaky():
        pass

    @task(retries=0, execution_timeout=5)
    def strict():
        pass

    flaky() >> strict()
