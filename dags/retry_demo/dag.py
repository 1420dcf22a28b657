"""Retries: `flaky` fails on its first try and succeeds on its second (`retries=1`, a two-second
`retry_delay`), telling the tries apart with `ti.try_number`; the UI shows both tries and
their logs."""

from datetime import timedelta

import pendulum

from airflow.sdk import DAG, task

with DAG(
    dag_id="retry_demo",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["example", "retries"],
):

    @task(retries=1, retry_delay=timedelta(seconds=2))
    def flaky(ti=None) -> str:
        print(f"this is try {ti.try_number}")
        if ti.try_number == 1:
            raise RuntimeError("the first try fails on purpose; the retry will succeed")
        return f"succeeded on try {ti.try_number}"

    @task
    def after(result: str) -> None:
        print(f"flaky said: {result}")

    after(flaky())
