"""The rendered chart, byte for byte, against golden files in snapshots/: any change to the
output is seen in review. `LEOFLOW_UPDATE_GOLDEN=1` rewrites them (never under CI); review the
diff before committing it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from leoflow_chart import Rendered

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"


def as_text(rendered: Rendered) -> str:
    """Every template's output, in path order, as `helm template` prints it."""
    parts = []
    for path, text in sorted(rendered.templates.items()):
        body = text.strip("\n")
        if body.strip():
            parts.append(f"# Source: {path}\n{body}\n")
    return "---\n".join(parts)


@pytest.mark.parametrize("which", ["required", "all_toggles"])
def test_the_rendered_chart_matches_its_snapshot(
    which: str, request: pytest.FixtureRequest
) -> None:
    update = "LEOFLOW_UPDATE_GOLDEN" in os.environ
    in_ci = "CI" in os.environ
    assert not (update and in_ci), (
        "LEOFLOW_UPDATE_GOLDEN is set in CI: golden tests never rewrite themselves there"
    )
    rendered: Rendered = request.getfixturevalue(which)
    actual = as_text(rendered)
    golden = SNAPSHOTS / f"{which.replace('_', '-')}.yaml"
    if update:
        golden.write_text(actual)
        return
    assert golden.is_file(), f"no {golden.name}: run with LEOFLOW_UPDATE_GOLDEN=1 and review it"
    expected = golden.read_text()
    if actual != expected:
        import difflib

        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                f"snapshots/{golden.name}",
                "rendered",
            )
        )
        pytest.fail(f"the rendered chart differs from snapshots/{golden.name}:\n{diff}")
