"""Custom operators: BaseOperator subclasses with their own arguments, template fields, colours
and a mapped one (recorded as references to their classes; the runner builds them again)."""

from __future__ import annotations

import pendulum

from airflow.sdk import DAG, BaseOperator


class AddOneOperator(BaseOperator):
    """Adds one to its value."""

    def __init__(self, value: int, **kwargs):
        super().__init__(**kwargs)
        self.value = value

    def execute(self, context):
        return self.value + 1


class ReportOperator(BaseOperator):
    """Writes a report of the totals."""

    template_fields = ("title", "values")
    template_ext = (".md",)
    ui_color = "#e8b7e4"
    ui_fgcolor = "#333"

    def __init__(self, title: str, values, style: str = "short", **kwargs):
        super().__init__(**kwargs)
        self.title = title
        self.values = values
        self.style = style

    def execute(self, context):
        self.log.info("%s: %s", self.title, sum(self.values))
        return {"title": self.title, "total": sum(self.values)}


with DAG(
    dag_id="custom_operator",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    default_args={"style": "long"},
):
    added = AddOneOperator.partial(task_id="add_one", retries=2).expand(value=[1, 2, 3])
    ReportOperator(task_id="report", title="Totals on {{ ds }}", values=added.output, multiple_outputs=True)
