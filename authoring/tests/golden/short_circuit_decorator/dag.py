from airflow.sdk import DAG, task

with DAG("short_circuit_decorator", schedule=None):
    @task.short_circuit
    def worth_it(value):
        return value > 0

    @task
    def produce():
        return 3

    @task
    def consume():
        pass

    worth_it(produce()) >> consume()
