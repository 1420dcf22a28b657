"""Fixtures: the chart loaded once by Helm's library, and the two renders most tests read."""

from __future__ import annotations

from collections.abc import Iterator

import helm_python as helm
import pytest
from leoflow_chart import CHART_DIR, Rendered, Values, load_values, render


@pytest.fixture(scope="session")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def required_values() -> Values:
    return load_values("required")


@pytest.fixture(scope="session")
def all_toggles_values() -> Values:
    return load_values("all-toggles")


@pytest.fixture(scope="session")
def required(chart: helm.Chart, required_values: Values) -> Rendered:
    """The defaults plus the values an install cannot do without."""
    return render(chart, required_values)


@pytest.fixture(scope="session")
def all_toggles(chart: helm.Chart, all_toggles_values: Values) -> Rendered:
    """Every toggle on."""
    return render(chart, all_toggles_values)
