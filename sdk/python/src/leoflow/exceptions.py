"""Exceptions a task raises to steer its own outcome (the task runner gives them meaning)."""


class AirflowException(Exception):
    """A task failure."""


class AirflowSkipException(AirflowException):
    """Raised by a task to end as skipped."""


class AirflowFailException(AirflowException):
    """Raised by a task to fail at once, without retries."""


class AirflowSensorTimeout(AirflowException):
    """A sensor ran out of time."""
