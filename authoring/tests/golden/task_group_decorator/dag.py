from airflow.sdk import dag, task, task_group

@dag(schedule=None)
def task_group_decorator():
    @task
    def source():
        return 1

    @task_group
    def double_then_print(value):
        @task
        def double(v):
            return v * 2

        @task
        def show(v):
            print(v)

        return show(double(value))

    @task_group(group_id="custom", tooltip="second")
    def second():
        @task
        def noop():
            pass
        noop()

    double_then_print(source()) >> second()

task_group_decorator()
