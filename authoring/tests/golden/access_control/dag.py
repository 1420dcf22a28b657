"""Per-DAG access in both of Airflow's spellings, under a project-wide grant in leoflow.yaml."""

from airflow.sdk import DAG, task

with DAG(
    "access_by_dag",
    schedule=None,
    access_control={
        "team-a": {"can_read", "can_edit"},
        "ops": {"DAGs": {"can_read"}, "DAG Runs": {"can_create", "can_read"}},
    },
):

    @task
    def report():
        return "ok"

    report()

with DAG("access_from_project_only", schedule=None):

    @task
    def tidy():
        pass

    tidy()
