"""Edge labels: `a >> Label("...") >> b`, from lists and to lists, written right to left too."""

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Label

with DAG(dag_id="edge_labels", schedule=None):
    check = EmptyOperator(task_id="check")
    save = EmptyOperator(task_id="save")
    describe = EmptyOperator(task_id="describe")
    report = EmptyOperator(task_id="report")
    archive = EmptyOperator(task_id="archive")

    check >> Label("No errors") >> save >> report
    check >> Label("Errors found") >> describe
    [save, describe] >> Label("then") >> [report, archive]
    archive << Label("kept") << check
