"""`airflow.providers.standard.sensors`: the sensors Leoflow provides (any other module of it is refused)."""
