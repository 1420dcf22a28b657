"""`airflow.triggers`."""
