"""The audit of one set of predictions: per-group metrics, disparities, intervals.

:func:`fairness_table` is the fast, library-level entry point (the auditor, the benchmark and
the parity tests call it): labels, predictions, optional scores and sensitive features in,
a :class:`FairnessTable` out. It validates its input first and never returns a number it
could not compute: undefined rates are NaN, with a :class:`FairnessWarning` naming the group.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from paralab_fairness.confusion import group_counts
from paralab_fairness.groups import encode_groups, group_label
from paralab_fairness.rates import (
    DENOMINATORS,
    DISPARITIES,
    RELATIVE,
    bootstrap_intervals,
    calibration_error,
    denominators,
    disparities,
    rates,
    relative,
    set_by,
    wilson_intervals,
)

REFERENCED = ("disparate_impact_ratio", "average_odds_difference")
"""The disparities that compare each group with the reference group."""


class FairnessWarning(UserWarning):
    """A fairness metric is undefined for a group (reported as NaN) or a group is tiny."""


@dataclass
class FairnessTable:
    """Per-group metrics of one grouping (one sensitive feature or an intersection).

    ``groups`` are label tuples (one label per feature in ``features``); ``metrics`` maps a
    metric name to one float per group; ``overall`` the same metrics on all rows;
    ``intervals`` maps a disparity to its bootstrap ``(low, high)``; ``undefined`` maps a
    metric to the groups where it is NaN. Small groups make large gaps by chance, so each
    rate also carries, per group, the rows it is computed from (``denominators``: a false
    positive rate's are the group's negatives) and its Wilson interval (``rate_intervals``),
    and each disparity names the two groups that set it (``set_by``: highest, lowest).
    ``variant`` is the class of a one-vs-rest table or ``"macro"``; ``reference`` is the
    group the disparate impact and average odds compare with (empty when
    the named reference is absent or excluded: those values are then NaN).
    """

    features: tuple[str, ...]
    groups: list[tuple[str, ...]]
    metrics: dict[str, list[float]]
    overall: dict[str, float]
    disparities: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    undefined: dict[str, list[str]] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)
    denominators: dict[str, list[int]] = field(default_factory=dict)
    rate_intervals: dict[str, list[list[float]]] = field(default_factory=dict)
    set_by: dict[str, list[str]] = field(default_factory=dict)
    reference: str = ""
    variant: str = ""
    _labels: list[str] = field(default_factory=list, repr=False, compare=False)

    @property
    def key(self) -> str:
        """``"race"`` or, for an intersection, ``"race*sex"``; a multiclass audit adds its
        class or ``macro``: ``"race|High"``, ``"race|macro"``."""
        key = "*".join(self.features)
        return f"{key}|{self.variant}" if self.variant else key

    @property
    def labels(self) -> list[str]:
        if len(self._labels) != len(self.groups):
            self._labels = [group_label(group) for group in self.groups]
        return self._labels

    def by_group(self, metric: str) -> dict[str, float]:
        return dict(zip(self.labels, self.metrics[metric]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN stays NaN here; the host's writer turns it into null)."""
        return {
            "features": list(self.features),
            "groups": self.labels,
            "metrics": {name: list(values) for name, values in self.metrics.items()},
            "overall": dict(self.overall),
            "disparities": dict(self.disparities),
            "intervals": {name: list(bounds) for name, bounds in self.intervals.items()},
            "undefined": {name: list(groups) for name, groups in self.undefined.items()},
            "excluded": list(self.excluded),
            "denominators": {name: list(values) for name, values in self.denominators.items()},
            "rate_intervals": {name: [list(pair) for pair in values]
                               for name, values in self.rate_intervals.items()},
            "set_by": {name: list(groups) for name, groups in self.set_by.items()},
            "reference": self.reference,
        }


def _binary(values: torch.Tensor, positive_class: int, what: str) -> torch.Tensor:
    if values.ndim != 1:
        raise ValueError(f"fairness: {what} must be 1-D, got shape {tuple(values.shape)}")
    if values.dtype == torch.bool:
        return values
    if values.dtype.is_floating_point and torch.isnan(values).any():
        raise ValueError(f"fairness: {what} contain NaN")
    return values == positive_class


def check_scores(scores: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Scores must be one finite probability per row."""
    if scores.ndim != 1 or scores.numel() != n_rows:
        raise ValueError(
            f"fairness: scores have shape {tuple(scores.shape)}, expected ({n_rows},): one "
            "probability of the positive class per row"
        )
    bad = ~torch.isfinite(scores)
    if bad.any():
        first = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"fairness: scores contain {int(bad.sum())} NaN or infinite values (first at row "
            f"{first}); a calibration error cannot be computed from them"
        )
    if float(scores.min()) < 0.0 or float(scores.max()) > 1.0:
        raise ValueError("fairness: scores must be probabilities in [0, 1]")
    return scores


@contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run the passes over the rows on one CPU thread (no effect on a GPU).

    They are memory-bound, so a second thread gains little, and on a shared machine each
    parallel region waits for its slowest, possibly descheduled, thread: measured at 1M rows
    under load, 0.13 s on one thread against 0.7 s (median) on two. The thread count is
    process-wide, so it is restored right after.
    """
    previous = torch.get_num_threads()
    if device.type != "cpu" or previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fairness_table(
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    sensitive: Mapping[str, torch.Tensor],
    *,
    scores: torch.Tensor | None = None,
    categories: Mapping[str, Sequence[str]] | None = None,
    positive_class: int = 1,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    bins: int = 10,
    min_group_size: int = 0,
    alpha: float = 2.0,
    reference: str | None = None,
) -> FairnessTable:
    """Audit predictions over the groups of ``sensitive`` (their intersection when several).

    :param y_true: targets (class labels, or bool where True is positive).
    :param y_pred: predicted labels, same length.
    :param sensitive: feature name -> integer group code per row; several features give the
        intersectional groups (only combinations that occur).
    :param scores: the predicted probability of ``positive_class`` per row, for calibration.
    :param categories: labels of each feature's codes (default: the codes as strings).
    :param bootstrap: resamples for the disparities' percentile intervals (0: none).
    :param min_group_size: groups with fewer rows are reported but left out of the
        disparities (with a warning naming them), so two people cannot decide a gap.
    :param alpha: the generalised entropy index's parameter (> 0; 1 is the Theil index).
    :param reference: the label of the group that the disparate impact and average odds
        compare every group with (AIF360's privileged group); ``None``: the compared group
        with the highest selection rate.
    :raises ValueError: mismatched lengths, NaN scores, non-integer codes, a single group.
    """
    with one_cpu_thread(y_true.device):
        return _fairness_table(
            y_true, y_pred, sensitive, scores=scores, categories=categories,
            positive_class=positive_class, bootstrap=bootstrap, confidence=confidence,
            seed=seed, bins=bins, min_group_size=min_group_size, alpha=alpha,
            reference=reference,
        )


def _fairness_table(
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    sensitive: Mapping[str, torch.Tensor],
    *,
    scores: torch.Tensor | None,
    categories: Mapping[str, Sequence[str]] | None,
    positive_class: int,
    bootstrap: int,
    confidence: float,
    seed: int,
    bins: int,
    min_group_size: int,
    alpha: float,
    reference: str | None,
) -> FairnessTable:
    n = int(y_true.numel())
    if int(y_pred.numel()) != n:
        raise ValueError(
            f"fairness: y_true has {n} rows but y_pred has {int(y_pred.numel())}; they must "
            "be the same rows"
        )
    if n == 0:
        raise ValueError("fairness: no rows to audit")
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(
            f"fairness: alpha = {alpha} but the generalised entropy index needs a finite alpha "
            "> 0 (at alpha <= 0 one false negative makes it infinite)"
        )
    device = y_true.device
    truth = _binary(y_true.to(device), positive_class, "targets")
    predicted = _binary(y_pred.to(device), positive_class, "predictions")
    if scores is not None:
        scores = check_scores(scores.to(device), n)
    codes = encode_groups(
        {name: values.to(device) for name, values in sensitive.items()}, categories, n_rows=n
    )
    counted = group_counts(codes, truth, predicted, scores, bins)
    groups = codes.decode(counted.numbers.tolist())
    if len(groups) < 2:
        only = group_label(groups[0]) if groups else "none"
        raise ValueError(
            f"fairness: sensitive feature {'*'.join(codes.names)!r} has a single group "
            f"({only!r}) in these {n} rows; a disparity needs at least two groups"
        )
    per_group = rates(counted.counts, alpha)
    overall = rates(counted.counts.sum(dim=0, keepdim=True), alpha)
    if counted.calibration_gap is not None:
        per_group["calibration_error"] = calibration_error(
            counted.calibration_gap, per_group["count"]
        )
        overall["calibration_error"] = calibration_error(
            counted.calibration_gap.sum(dim=0, keepdim=True), overall["count"]
        )
    kept = per_group["count"] >= min_group_size
    small = [group_label(g) for g, keep in zip(groups, kept.tolist()) if not keep]
    if small:
        warnings.warn(
            f"fairness: {'*'.join(codes.names)} group(s) {small} have fewer than "
            f"{min_group_size} rows; reported, but left out of the disparities",
            FairnessWarning,
            stacklevel=3,
        )
    comparable = int(kept.sum()) >= 2
    if not comparable:
        # The groups are still reported (with their n and intervals); a gap between fewer
        # than two groups would be a number that cannot be right, so it is NaN.
        warnings.warn(
            f"fairness: fewer than two {'*'.join(codes.names)} groups have at least "
            f"min_group_size = {min_group_size} rows, so its disparities are undefined (NaN); "
            "lower min_group_size to compare smaller groups",
            FairnessWarning,
            stacklevel=3,
        )
    compared = {name: values[kept] for name, values in per_group.items()}
    labels = [group_label(g) for g, keep in zip(groups, kept.tolist()) if keep]
    position = _reference_position(reference, labels, groups, codes.names)
    usable = position != -1
    known = position if position != -1 else None
    gaps = ({name: float(value) for name, value in
             disparities(compared, alpha=alpha, reference=known).items()} if comparable
            else dict.fromkeys(DISPARITIES, math.nan))
    generator = torch.Generator(device=device).manual_seed(seed)
    intervals = (bootstrap_intervals(counted.counts[kept], bootstrap, confidence, generator,
                                     alpha=alpha, reference=known)
                 if comparable else {})
    metrics = {name: values.cpu().tolist() for name, values in per_group.items()}
    chosen = ""
    if comparable and usable:
        at = known if known is not None else int(torch.nan_to_num(
            compared["selection_rate"], nan=-math.inf).argmax())
        chosen = labels[at]
        everywhere = int(torch.nonzero(kept).flatten()[at])
        metrics.update({name: values.cpu().tolist()
                        for name, values in relative(per_group, everywhere).items()})
    else:
        metrics.update({name: [math.nan] * len(groups) for name in RELATIVE})
        for name in REFERENCED:
            gaps[name] = math.nan
            if name in intervals:
                intervals[name] = (math.nan, math.nan)
    table = FairnessTable(
        features=codes.names,
        groups=groups,
        metrics=metrics,
        overall={name: float(values[0]) for name, values in overall.items()},
        disparities=gaps,
        intervals=intervals,
        excluded=small,
        denominators=denominators(counted.counts),
        rate_intervals=wilson_intervals(counted.counts, confidence),
        set_by=set_by(compared, labels, known) if comparable else {},
        reference=chosen,
    )
    if comparable and not chosen:
        for name in REFERENCED:
            table.set_by[name] = []
    _warn_undefined(table)
    return table


def _reference_position(
    reference: str | None, labels: list[str], groups: list[tuple[str, ...]],
    names: tuple[str, ...],
) -> int | None:
    """The named reference's position among the compared groups; ``None`` for the default;
    ``-1`` (with a warning) when it is absent from these rows or excluded as small."""
    if reference is None or reference == "":
        return None
    if reference in labels:
        return labels.index(reference)
    present = [group_label(g) for g in groups]
    why = ("has fewer than min_group_size rows" if reference in present
           else f"is not among the groups present {present}")
    warnings.warn(
        f"fairness: the reference group {reference!r} of {'*'.join(names)} {why}; "
        f"{', '.join(REFERENCED)} are undefined (NaN)",
        FairnessWarning,
        stacklevel=4,
    )
    return -1


def _warn_undefined(table: FairnessTable) -> None:
    for metric, values in table.metrics.items():
        missing = [label for label, value in zip(table.labels, values) if math.isnan(value)]
        if not missing:
            continue
        table.undefined[metric] = missing
        if metric in RELATIVE and not table.reference:
            continue  # no reference to compare with: said once, by its own warning
        warnings.warn(
            f"fairness: {metric} is undefined ({DENOMINATORS.get(metric, 'no rows')}) for "
            f"{table.key} group(s) {missing}; reported as NaN and left out of the disparities",
            FairnessWarning,
            stacklevel=4,
        )
