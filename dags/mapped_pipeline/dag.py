"""Dynamic task mapping: `make_items` returns a list, `square` is expanded over it (one mapped
task instance per item, created at run time), and `total` reduces the mapped results to their
sum. The `items` param says how many items there are; trigger with conf `{"items": 10}` to
change it."""

import pendulum

from airflow.sdk import DAG, Param, task

with DAG(
    dag_id="mapped_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    params={
        "items": Param(
            5, type="integer", minimum=1, maximum=100, description="How many items to map over"
        ),
    },
    tags=["example", "mapping"],
):

    @task
    def make_items(params=None) -> list[int]:
        items = list(range(1, params["items"] + 1))
        print(f"mapping over {len(items)} items: {items}")
        return items

    @task
    def square(item: int) -> int:
        return item * item

    @task
    def total(squares: list[int]) -> int:
        result = sum(squares)
        print(f"sum of {len(squares)} squares: {result}")
        return result

    total(square.expand(item=make_items()))
