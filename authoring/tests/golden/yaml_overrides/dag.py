from airflow.sdk import DAG, task

with DAG("original_id", schedule=None, description="from dag.py", tags=["py"]):
    @task(retries=1)
    def extract():
        pass

    @task
    def load():
        pass

    extract() >> load()
