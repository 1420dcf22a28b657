from airflow.sdk import DAG, TriggerRule
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("trigger_rules", schedule=None):
    start = [EmptyOperator(task_id="up_a"), EmptyOperator(task_id="up_b")]
    EmptyOperator(task_id="all_success", trigger_rule="all_success").set_upstream(start)
    EmptyOperator(task_id="all_failed", trigger_rule="all_failed").set_upstream(start)
    EmptyOperator(task_id="all_done", trigger_rule="all_done").set_upstream(start)
    EmptyOperator(task_id="all_done_min_one_success", trigger_rule="all_done_min_one_success").set_upstream(start)
    EmptyOperator(task_id="all_done_setup_success", trigger_rule="all_done_setup_success").set_upstream(start)
    EmptyOperator(task_id="all_skipped", trigger_rule="all_skipped").set_upstream(start)
    EmptyOperator(task_id="one_success", trigger_rule="one_success").set_upstream(start)
    EmptyOperator(task_id="one_failed", trigger_rule="one_failed").set_upstream(start)
    EmptyOperator(task_id="one_done", trigger_rule="one_done").set_upstream(start)
    EmptyOperator(task_id="none_failed", trigger_rule="none_failed").set_upstream(start)
    EmptyOperator(task_id="none_failed_min_one_success", trigger_rule="none_failed_min_one_success").set_upstream(start)
    EmptyOperator(task_id="none_skipped", trigger_rule="none_skipped").set_upstream(start)
    EmptyOperator(task_id="always", trigger_rule="always").set_upstream(start)
    EmptyOperator(task_id="enum_rule", trigger_rule=TriggerRule.NONE_FAILED).set_upstream(start)
