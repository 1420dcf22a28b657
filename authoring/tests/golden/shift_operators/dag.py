from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("shift_operators", schedule=None):
    a, b, c, d = (EmptyOperator(task_id=x) for x in "abcd")
    a >> [b, c]
    d << [b, c]
    [a] >> d
    b.set_downstream(c)
