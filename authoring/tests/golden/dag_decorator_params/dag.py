from airflow.sdk import dag, task

@dag(schedule=None, tags=["decorated"], is_paused_upon_creation=False)
def dag_decorator_params(email: str = "ops@example.com", limit: int = 10):
    """Sends a report.

    The docstring becomes the DAG's doc_md.
    """

    @task
    def report(to, n):
        print(to, n)

    report(email, limit)

dag_decorator_params()
