"""Metrics from any plugin, evaluated per group by the fairness auditor.

A metric is any component a plugin declares with ``MetricSpec`` (``paralab_metrics``): the
auditor option ``metrics = ["brier", { name = "ece", bins = 15 }]`` names them (with options
checked against the metric's own declaration) and each one is called on every group's rows
(``predictions.subset``), on all rows (``overall``), and its largest minus smallest group value
is a disparity ``<name>_difference`` over the compared groups. The audit's own counts cannot
compute an arbitrary function, so its optional bootstrap resamples rows (each resample calls
the metric once per group; option ``metric_bootstrap``).

A metric the spec already lists under ``metrics`` with the same options is the run's own
object; any other is built from the registry of the run (``run.registry`` when the host gives
one, else the process registry, :func:`paralab.get_registry`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from paralab_fairness.groups import encode_groups

if TYPE_CHECKING:
    from paralab import Predictions, RunContext, SharedDataset
    from paralab_fairness.table import FairnessTable

MetricEntry = str | Mapping[str, Any]
"""One entry of the option: a metric's name, or ``{"name": ..., **options}``."""


@dataclass
class GroupedMetric:
    """A built metric and the key it is reported under (its name)."""

    name: str
    function: Any


def _registry(run: RunContext) -> Any:
    registry = getattr(run, "registry", None)
    if registry is not None:
        return registry
    from paralab import get_registry

    return get_registry()


def _split_entry(entry: MetricEntry, position: int) -> tuple[str, dict[str, Any]]:
    where = f"auditor fairness: option metrics[{position}]"
    if isinstance(entry, str):
        if not entry:
            raise ValueError(f"{where} is empty; name a metric")
        return entry, {}
    if isinstance(entry, Mapping):
        options = dict(entry)
        name = options.pop("name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where} = {dict(entry)!r} needs name = '<a metric>'")
        return name, options
    raise ValueError(f"{where} = {entry!r}: expected a metric name or a table with a name")


def _checked_options(spec: Any, name: str, options: dict[str, Any], position: int) -> dict:
    where = f"auditor fairness: option metrics[{position}] ({name!r} of {spec.provider})"
    declared = spec.declared_options()
    unknown = sorted(set(options) - set(declared))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; it takes {sorted(declared)}")
    required = sorted(o for o, d in declared.items() if d.required and o not in options)
    if required:
        raise ValueError(f"{where}: needs option(s) {required}")
    for option, value in options.items():
        problem = declared[option].problem(value)
        if problem:
            raise ValueError(f"{where}: {option} = {value!r}: {problem}")
    return {**spec.defaults(), **options}


def build_metrics(entries: Sequence[MetricEntry], run: RunContext) -> list[GroupedMetric]:
    """The metrics the option names, built and validated against the run (before training).

    :raises ValueError: an unknown metric (listing those available), a bad option, a metric
        the auditor already computes, or a name given twice.
    """
    from paralab_fairness.rates import DISPARITIES, METRICS, RELATIVE

    own = {*METRICS, *RELATIVE, "calibration_error"}
    registry = _registry(run)
    spec_options = {ref.name: dict(ref.options) for ref in getattr(run.spec, "metrics", ())}
    built: list[GroupedMetric] = []
    for position, entry in enumerate(entries):
        name, options = _split_entry(entry, position)
        if name in own or f"{name}_difference" in DISPARITIES:
            raise ValueError(
                f"auditor fairness: option metrics[{position}] = {name!r} is one of the "
                "auditor's own metrics, which every audit already computes per group"
            )
        if any(metric.name == name for metric in built):
            raise ValueError(f"auditor fairness: option metrics names {name!r} twice")
        try:
            spec = registry.component("metric", name)
        except Exception as error:  # the registry's unknown-component error lists the choices
            raise ValueError(f"auditor fairness: option metrics[{position}]: {error}") from None
        full = _checked_options(spec, name, options, position)
        mine = run.metrics.get(name)
        if mine is not None and {**spec.defaults(), **spec_options.get(name, {})} == full:
            function = mine
        else:
            function = spec.load()(**full)
        validate = getattr(function, "validate", None)
        if callable(validate):
            validate(run)
        built.append(GroupedMetric(name, function))
    return built


def _number(value: Any, name: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(
        f"auditor fairness: metric {name!r} returned {type(value).__name__} {value!r}; a "
        "metric evaluated per group must return one number"
    )


def _spread(values: Sequence[float]) -> tuple[float, int, int]:
    defined = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
    if len(defined) < 2:
        return math.nan, -1, -1
    high, low = max(defined), min(defined)
    return high[0] - low[0], high[1], low[1]


def group_rows(predictions: Predictions, features: Sequence[str],
               dataset: SharedDataset) -> list[torch.Tensor]:
    """Row positions of each group that occurs, in the table's group order."""
    codes = encode_groups({name: predictions.feature(name) for name in features},
                          dataset.categories, n_rows=len(predictions))
    combined = codes.combined()
    numbers = torch.unique(combined)
    return [torch.nonzero(combined == number).flatten() for number in numbers]


def add_metrics(
    table: FairnessTable,
    metrics: Sequence[GroupedMetric],
    predictions: Predictions,
    dataset: SharedDataset,
    *,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> None:
    """Evaluate each metric per group of ``table`` (in place): ``metrics``, ``overall``,
    ``disparities["<name>_difference"]`` over the groups not excluded, ``set_by`` and, with
    ``bootstrap``, a percentile interval from resampled rows."""
    if not metrics:
        return
    rows = group_rows(predictions, table.features, dataset)
    if len(rows) != len(table.groups):
        raise RuntimeError("fairness: the groups of the table and of the rows disagree")
    compared = [p for p, label in enumerate(table.labels) if label not in table.excluded]
    generator = torch.Generator().manual_seed(seed)
    for metric in metrics:
        values = [_number(metric.function(predictions.subset(r.to(predictions.indices.device)),
                                          dataset), metric.name) for r in rows]
        table.metrics[metric.name] = values
        table.overall[metric.name] = _number(metric.function(predictions, dataset), metric.name)
        key = f"{metric.name}_difference"
        gap, high, low = _spread([values[p] for p in compared])
        table.disparities[key] = gap
        table.set_by[key] = ([] if math.isnan(gap)
                             else [table.labels[compared[high]], table.labels[compared[low]]])
        missing = [table.labels[p] for p, v in enumerate(values) if math.isnan(v)]
        if missing:
            table.undefined[metric.name] = missing
        if bootstrap > 0 and not math.isnan(gap):
            table.intervals[key] = _bootstrap(metric, predictions, dataset,
                                              [rows[p] for p in compared], bootstrap,
                                              confidence, generator)


def _bootstrap(metric: GroupedMetric, predictions: Predictions, dataset: SharedDataset,
               rows: list[torch.Tensor], resamples: int, confidence: float,
               generator: torch.Generator) -> tuple[float, float]:
    """Percentile interval of the group difference, resampling each group's rows (stratified
    by group, so every replicate has every group)."""
    gaps = []
    for _ in range(resamples):
        values = []
        for group in rows:
            drawn = group[torch.randint(len(group), (len(group),), generator=generator)]
            subset = predictions.subset(drawn.to(predictions.indices.device))
            values.append(_number(metric.function(subset, dataset), metric.name))
        gaps.append(_spread(values)[0])
    finite = torch.tensor([g for g in gaps if not math.isnan(g)], dtype=torch.float64)
    if finite.numel() == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    low, high = torch.quantile(finite, torch.tensor([tail, 1.0 - tail],
                                                    dtype=torch.float64)).tolist()
    return low, high
