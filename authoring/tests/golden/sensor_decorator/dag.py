import datetime
from airflow.sdk import DAG, task

with DAG("sensor_decorator", schedule=None):
    @task.sensor(poke_interval=10, timeout=datetime.timedelta(minutes=5), mode="poke", soft_fail=True)
    def file_ready():
        return True

    @task
    def process():
        pass

    file_ready() >> process()
