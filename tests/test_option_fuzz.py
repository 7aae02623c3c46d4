"""Property: any option value outside its declaration is a SpecError naming the field.

Hypothesis draws a bundled component, one of its declared options and a value that breaks
the declaration (a wrong type, NaN or infinity, a bound crossed, a choice misspelt, a list too
short or holding a bad entry); ``paralab.run`` must raise :class:`paralab.SpecError` with a
problem that starts with the field's path, and leave no run folder. Any other exception, a
started run or a folder fails the property.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import paralab  # noqa: E402
from paralab import Option, SpecError  # noqa: E402

_POOL: list[Any] = ["x", "", 0, -1, 1, 2.5, -0.5, True, False, None, [], [1], ["x"], {"a": 1},
                    math.nan, math.inf, -math.inf, 1e300]


def _breaks(option: Option, value: Any) -> bool:
    return option.problem(value) is not None


def invalid_values(option: Option) -> st.SearchStrategy[Any]:
    """Values ``option`` rejects, built from its constraints (and a pool of odd values)."""
    candidates: list[Any] = [value for value in _POOL if _breaks(option, value)]
    for bound, step in (("gt", 0.0), ("ge", -1.0), ("lt", 0.0), ("le", 1.0)):
        limit = getattr(option, bound)
        if limit is not None:
            candidates.append(limit + step if bound in ("ge", "gt") and step < 0 else limit)
            candidates.append(limit - 1 if bound in ("gt", "ge") else limit + 1)
    if option.choices is not None:
        candidates.append("not-a-choice")
    if option.min_length:
        candidates.append([] if list in option.types else "")
    if option.items is not None:
        bad = [value for value in _POOL if _breaks(option.items, value)]
        candidates += [[item] for item in bad]
    candidates = [value for value in candidates if _breaks(option, value)]
    return st.sampled_from(candidates) if candidates else st.nothing()


def _cases() -> list[tuple[str, str, str, Option]]:
    registry = paralab.get_registry()
    cases = []
    for kind, specs in registry.components.items():
        for name, spec in sorted(specs.items()):
            for option_name, option in sorted(spec.declared_options().items()):
                if option.types or option.choices is not None:
                    cases.append((kind, name, option_name, option))
    return cases


CASES = _cases()

_FIELD = {"dataset": "dataset", "model": "model", "protocol": "protocol", "method": "method",
          "metric": "metrics", "auditor": "auditors", "loss": "losses", "middleware": "middleware",
          "tracker": "trackers"}


def _spec(kind: str, name: str, option: str, value: Any, output: str) -> tuple[dict, str]:
    """A digits/MLP/supervised spec carrying the component; the field path of the option."""
    registry = paralab.get_registry()
    spec: dict[str, Any] = {"dataset": "digits", "model": "mlp", "protocol": "supervised",
                            "method": "sgd", "output": output, "device": "cpu"}
    entry = {"name": name, option: value}
    if kind in ("dataset", "model", "protocol", "method"):
        spec[kind] = entry
        path = f"{kind}.{option}"
        if kind == "method":
            protocols = registry.component("method", name).protocols
            if protocols:
                spec["protocol"] = protocols[0]
        if kind == "protocol":
            from paralab.components import supports

            protocol = registry.component("protocol", name)
            method = next(m for m in registry.components["method"].values()
                          if supports(m, protocol))
            spec["method"] = method.name
    else:
        spec[_FIELD[kind]] = [entry]
        path = f"{_FIELD[kind]}[0].{option}"
    return spec, path


@pytest.mark.skipif(not CASES, reason="no declared options")
@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_values_outside_a_declaration_are_spec_errors_naming_the_field(data) -> None:
    kind, name, option_name, option = data.draw(st.sampled_from(CASES), label="option")
    value = data.draw(invalid_values(option), label="value")
    with tempfile.TemporaryDirectory() as output:
        spec, path = _spec(kind, name, option_name, value, output)
        with pytest.raises(SpecError) as caught:
            paralab.run(spec)
        assert any(problem.startswith(f"{path} = ") for problem in caught.value.problems), (
            path, value, caught.value.problems)
        assert not any(Path(output).iterdir()), "a rejected spec writes no run folder"


def test_every_declared_option_has_an_invalid_value_to_draw() -> None:
    """The property covers every declaration: each can be broken by some drawn value."""
    unbreakable = [f"{kind} {name}.{option}" for kind, name, option, declared in CASES
                   if not [v for v in _POOL if _breaks(declared, v)]]
    assert not unbreakable, unbreakable
