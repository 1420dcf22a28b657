"""`airflow.sensors` (Airflow 2's path): only `base` (any other module of it is refused)."""
