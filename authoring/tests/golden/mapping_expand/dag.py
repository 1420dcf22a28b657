from airflow.sdk import DAG, task

with DAG("mapping_expand", schedule=None):
    @task
    def numbers():
        return [1, 2, 3]

    @task
    def multiply(x, factor):
        return x * factor

    @task
    def total(values):
        return sum(values)

    total(multiply.partial(factor=10).expand(x=numbers()))
    multiply.expand(x=[1, 2], factor=[3, 4])
