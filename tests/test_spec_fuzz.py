"""Property: whatever shape a spec has, ``paralab.run`` answers with a SpecError (no folder), a
completed run or a clean RunError, never another exception and never a hang (issue 14).

Hypothesis mutates a small valid spec (iris, a tiny MLP, one supervised epoch): it sets a few
fields, known or unknown, to values of any shape (numbers at the edges, NaN, strings, lists,
tables naming real or unknown components with real or unknown options). A run that starts has
a deadline, so a loop that a value makes spin fails the property.
"""

from __future__ import annotations

import math
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import paralab  # noqa: E402
from paralab import RunError, SpecError  # noqa: E402
from paralab.spec import MANY, SETTINGS, SINGLE  # noqa: E402

# output stays in a temporary folder (its own checks are in test_run_safety.py)
FIELDS = [*SINGLE, *MANY, *(s for s in SETTINGS if s != "output"), "nmae", "epochs"]
_REGISTRY = paralab.get_registry()
NAMES = sorted({name for specs in _REGISTRY.components.values() for name in specs}) + [
    "", "nope", "sdg", "../x"]
OPTIONS = sorted({option for specs in _REGISTRY.components.values() for spec in specs.values()
                  for option in spec.options})[:200] + ["nope"]

scalars = st.sampled_from([0, 1, 2, -1, 2**63, 2**64, 0.5, -0.0, 1e308, math.nan, math.inf,
                           -math.inf, True, False, "", "x", "auto", "cpu", "cuda", "cuda:9",
                           "a/b", "..", "\x00", "é" * 300, None])
components = st.one_of(
    st.sampled_from(NAMES),
    st.fixed_dictionaries({"name": st.sampled_from(NAMES)},
                          optional={option: scalars for option in OPTIONS[:40]}),
    st.dictionaries(st.sampled_from(["name", *OPTIONS[:20]]), scalars, max_size=3),
)
values = st.one_of(scalars, components, st.lists(st.one_of(scalars, components), max_size=3),
                   st.dictionaries(st.sampled_from(OPTIONS), scalars, max_size=2))


def _base(output: str) -> dict[str, Any]:
    return {"dataset": "iris", "model": {"name": "mlp", "hidden": [8]},
            "protocol": {"name": "supervised", "epochs": 1}, "method": "sgd",
            "device": "cpu", "output": output}


@settings(max_examples=300, deadline=timedelta(seconds=60), derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from(FIELDS), values, min_size=1, max_size=3))
def test_any_spec_shape_is_a_spec_error_or_a_clean_run(changes: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as output:
        spec = {**_base(output), **changes}
        try:
            result = paralab.run(spec)
        except SpecError as error:
            assert error.problems and all(isinstance(p, str) and p for p in error.problems)
            assert not any(Path(output).iterdir()), "a rejected spec writes no run folder"
            return
        except RunError as error:
            assert error.result.status == "failed" and error.result.error["message"] is not None
            return
        assert result.status == "completed"
