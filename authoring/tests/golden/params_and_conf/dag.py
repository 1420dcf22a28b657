from airflow.sdk import DAG, Param, task

with DAG("params_and_conf", schedule=None, params={
    "rows": Param(100, type="integer", minimum=1, maximum=1000, description="How many rows"),
    "mode": Param("fast", enum=["fast", "safe"]),
    "note": "plain default",
    "day": Param(type=["null", "string"], format="date"),
}):
    @task
    def use(params=None):
        pass

    use()
