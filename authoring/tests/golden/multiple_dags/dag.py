from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("first_of_two", schedule=None):
    EmptyOperator(task_id="a")

with DAG("second_of_two", schedule="@daily"):
    EmptyOperator(task_id="b")
