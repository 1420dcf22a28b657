"""`macros` in a task's templates: Airflow 3.2's `airflow.sdk.execution_time.macros`.

    {{ macros.ds_add(ds, 7) }}  {{ macros.ds_format(ds, "%Y-%m-%d", "%d/%m/%Y") }}
    {{ macros.datetime.now() }}  {{ macros.timedelta(days=1) }}  {{ macros.uuid.uuid4() }}

The modules and functions Airflow's macros expose (`datetime`, `timedelta`, `json`, `time`,
`uuid`, `random`, `dateutil` when installed) are here under the same names.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from random import random
from typing import Any

try:  # Airflow's macros expose dateutil; a task environment without it simply lacks the name.
    import dateutil
except ImportError:  # pragma: no cover - depends on the environment
    pass

__all__ = [
    "datetime", "datetime_diff_for_humans", "dateutil", "ds_add", "ds_format", "ds_format_locale", "json",
    "random", "time", "timedelta", "uuid",
]


def ds_add(ds: str, days: int) -> str:
    """Adds (or, negative, subtracts) days to a `YYYY-MM-DD` date: `ds_add("2015-01-01", 5)` is
    `"2015-01-06"`."""
    if not days:
        return str(ds)
    moved = datetime.strptime(str(ds), "%Y-%m-%d") + timedelta(days=days)
    return moved.strftime("%Y-%m-%d")


def ds_format(ds: str, input_format: str, output_format: str) -> str:
    """A date string in another format: `ds_format("1/5/2015", "%m/%d/%Y", "%Y-%m-%d")` is
    `"2015-01-05"`."""
    return datetime.strptime(str(ds), input_format).strftime(output_format)


def datetime_diff_for_humans(dt: Any, since: Any = None) -> str:
    """How long ago (or ahead) `dt` is from `since` (default: now), in words (needs pendulum)."""
    import pendulum

    return str(pendulum.instance(dt).diff_for_humans(since))


def ds_format_locale(ds: str, input_format: str, output_format: str, locale: Any = None) -> str:
    """A date string in a Babel format and locale (needs the babel package)."""
    from babel import Locale
    from babel.dates import LC_TIME, format_datetime

    return str(
        format_datetime(
            datetime.strptime(str(ds), input_format),
            format=output_format,
            locale=locale or LC_TIME or Locale("en_US"),
        )
    )
