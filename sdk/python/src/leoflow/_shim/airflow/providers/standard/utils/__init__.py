"""`airflow.providers.standard.utils`: only `weekday` (any other module of it is refused)."""
