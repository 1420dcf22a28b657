"""`airflow.exceptions`."""

from leoflow.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout, AirflowSkipException

__all__ = ["AirflowException", "AirflowFailException", "AirflowSensorTimeout", "AirflowSkipException"]
