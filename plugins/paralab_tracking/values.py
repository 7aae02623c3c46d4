"""What the trackers record, taken the same way by all three so that they agree with each other
and with ``result.json``: the scalar metrics of a phase, the spec flattened to parameters.

A phase's metrics map ``"split/metric"`` to a number, or to a table of numbers for a metric that
returns one (``{"per_class": {"0": 0.9, ...}}``); values may still be tensors or numpy numbers
when the hook sees them. They are converted as ``result.json`` converts them (``tolist()``), so
a value read back from a tracker equals the one in ``result.json`` exactly. Lists (an accuracy
matrix) and audits stay in ``result.json`` only: a tracker's metric is one number per step.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

Scalar = int | float


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    return value


def scalars(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Scalar]:
    """``{"test/accuracy": 0.93, "test/per_class/3": 0.88, ...}``: every number in ``metrics``,
    tables flattened with ``/``; booleans, strings, lists and ``None`` are left out."""
    found: dict[str, Scalar] = {}
    for key, raw in metrics.items():
        name = f"{prefix}{key}"
        value = _plain(raw)
        if isinstance(value, Mapping):
            found.update(scalars(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found[name] = value
    return found


def finite(value: Scalar) -> bool:
    return not (isinstance(value, float) and not math.isfinite(value))


def resolved_spec(result: Any) -> dict[str, Any]:
    """The run's spec with each component's table as the run used it: its declared defaults
    filled in (``result.settings``), so two runs whose specs differ only in leaving an option
    at its default show the same parameter, and a changed default shows."""
    spec = json.loads(json.dumps(result.spec, default=str))
    for path, options in (getattr(result, "settings", None) or {}).items():
        match = re.fullmatch(r"(\w+)\[(\d+)\]", path)
        if match is None:
            if isinstance(spec.get(path), Mapping):
                spec[path] = dict(options)
        elif match.group(1) != "trackers":
            listed = spec.get(match.group(1))
            position = int(match.group(2))
            if isinstance(listed, list) and position < len(listed):
                listed[position] = dict(options)
    return spec


def flat_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec as ``{"method.lr": 0.05, "model.hidden": "[256, 256]", "losses.0.name": ...}``.

    Tables nest with ``.``, a list of component tables by position; other lists become their
    JSON text. Trackers are listed by name only (``"trackers": "csv,mlflow"``): their options
    may hold a server's address, which is not a parameter of the experiment. ``None`` values
    (no model, no output folder) are left out.
    """
    flat: dict[str, Any] = {}

    def visit(value: Any, key: str) -> None:
        if isinstance(value, Mapping):
            for name, item in value.items():
                visit(item, f"{key}.{name}" if key else str(name))
        elif isinstance(value, (list, tuple)) and value and all(
                isinstance(item, Mapping) for item in value):
            for position, item in enumerate(value):
                visit(item, f"{key}.{position}")
        elif isinstance(value, (list, tuple)):
            flat[key] = json.dumps(list(value), default=str)
        elif value is not None:
            flat[key] = value

    for name, value in spec.items():
        if name == "trackers":
            flat[name] = ",".join(str(item.get("name", item)) if isinstance(item, Mapping)
                                  else str(item) for item in value or ())
        else:
            visit(value, name)
    return flat


def study_value(study: Mapping[str, Any] | None, key: str) -> Any:
    """A value a study handed its runs: at the top of ``run.study`` or under its ``extra``."""
    if not study:
        return None
    if key in study:
        return study[key]
    extra = study.get("extra")
    return extra.get(key) if isinstance(extra, Mapping) else None
