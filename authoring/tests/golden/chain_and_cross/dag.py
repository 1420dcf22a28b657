from airflow.sdk import DAG, chain, cross_downstream
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("chain_and_cross", schedule=None):
    t = {name: EmptyOperator(task_id=name) for name in "abcdefgh"}
    chain(t["a"], [t["b"], t["c"]], [t["d"], t["e"]], t["f"])
    cross_downstream([t["f"], t["g"]], [t["h"]])
