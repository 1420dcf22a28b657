from airflow.sdk import dag, task

@dag(schedule=None)
def branch_decorator():
    @task.branch
    def pick(n: int):
        return "even" if n % 2 == 0 else "odd"

    @task
    def even():
        pass

    @task
    def odd():
        pass

    pick(4) >> [even(), odd()]

branch_decorator()
