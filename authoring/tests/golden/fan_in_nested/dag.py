from airflow.sdk import DAG, task

with DAG("fan_in_nested", schedule=None):
    @task
    def work(i: int) -> int:
        return i * i

    @task
    def aggregate(values: list, extra: dict) -> int:
        return sum(values) + sum(extra.values())

    aggregate([work(i) for i in range(4)], extra={"bonus": work(10)})
