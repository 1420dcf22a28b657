"""Fan-out / fan-in: one task feeds three independent tasks that run in parallel, and a join
task waits for all three (a listed dependency) and combines their results, pulled from XCom."""

import pendulum

from airflow.sdk import DAG, task

TEXT = """Leoflow runs Airflow DAGs.
Each task runs in its own process.
Results travel between tasks through XCom."""

with DAG(
    dag_id="fan_out_fan_in",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["example", "xcom"],
):

    @task
    def fetch_text() -> str:
        print(f"fetched {len(TEXT)} characters")
        return TEXT

    @task
    def count_lines(text: str) -> int:
        return len(text.splitlines())

    @task
    def count_words(text: str) -> int:
        return len(text.split())

    @task
    def count_characters(text: str) -> int:
        return len(text)

    @task
    def summarize(ti=None):
        lines, words, characters = ti.xcom_pull(
            task_ids=["count_lines", "count_words", "count_characters"]
        )
        summary = {"lines": lines, "words": words, "characters": characters}
        print(f"summary: {summary}")
        return summary

    text = fetch_text()
    counts = [count_lines(text), count_words(text), count_characters(text)]
    counts >> summarize()
