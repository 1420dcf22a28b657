"""`airflow.providers.standard.triggers`."""
