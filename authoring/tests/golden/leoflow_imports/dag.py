from leoflow import DAG, BashOperator, EmptyOperator, PythonOperator, task

def hello():
    print("hello")

with DAG("leoflow_imports", schedule=None):
    @task
    def t():
        return 1

    t() >> PythonOperator(task_id="py", python_callable=hello) >> BashOperator(task_id="sh", bash_command="true") >> EmptyOperator(task_id="done")
