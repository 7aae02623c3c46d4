"""Per-group metrics and disparities, derived from confusion counts alone.

All functions take counts of shape ``(..., groups, 4)`` (cells ``tn, fp, fn, tp``) so the same
code serves one audit and a batch of bootstrap replicates. A rate whose denominator is zero
(a true positive rate for a group with no positives) is NaN, never a made-up number; the
caller warns and names the group.
"""

from __future__ import annotations

import torch

from paralab_fairness.inequality import between_group_entropy, generalized_entropy
from paralab_fairness.reference import (
    impact_ratios,
    odds_differences,
    reference_index,
    worst_difference,
    worst_position,
    worst_ratio,
)

METRICS = (
    "count",
    "base_rate",
    "selection_rate",
    "accuracy",
    "true_positive_rate",
    "false_positive_rate",
    "false_negative_rate",
    "precision",
    "generalized_entropy_index",
    "theil_index",
)
"""The per-group metrics computed from counts (calibration error needs scores as well).
The two inequality indices are within the group (AIF360's over the group's rows)."""

RELATIVE = ("disparate_impact", "average_odds_difference")
"""Per-group comparisons with the reference group (see :mod:`paralab_fairness.reference`)."""

DENOMINATORS = {
    "selection_rate": "no rows",
    "accuracy": "no rows",
    "true_positive_rate": "no rows with a positive label",
    "false_positive_rate": "no rows with a negative label",
    "false_negative_rate": "no rows with a positive label",
    "precision": "no positive predictions",
    "calibration_error": "no rows",
    "base_rate": "no rows",
    "generalized_entropy_index": "no rows, or every row a false negative (mean benefit 0)",
    "theil_index": "no rows, or every row a false negative (mean benefit 0)",
    "disparate_impact": "the reference group selects no one, or is absent or excluded",
    "average_odds_difference": "a rate of the group or of the reference is undefined, or the "
                               "reference is absent or excluded",
}
"""Why each rate can be undefined, for the warning."""

DISPARITIES = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equal_opportunity_difference",
    "disparate_impact_ratio",
    "average_odds_difference",
    "between_group_generalized_entropy_index",
    "between_group_theil_index",
)


def _divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    nan = torch.full_like(numerator, float("nan"))
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-300), nan)


def rates(counts: torch.Tensor, alpha: float = 2.0) -> dict[str, torch.Tensor]:
    """Every metric of :data:`METRICS` per group, float64, from ``(..., groups, 4)`` counts;
    ``alpha`` is the generalised entropy index's (> 0)."""
    counts = counts.double()
    tn, fp, fn, tp = counts.unbind(dim=-1)
    n = tn + fp + fn + tp
    positives, negatives, predicted = tp + fn, tn + fp, tp + fp
    return {
        "count": n,
        "base_rate": _divide(positives, n),
        "selection_rate": _divide(predicted, n),
        "accuracy": _divide(tn + tp, n),
        "true_positive_rate": _divide(tp, positives),
        "false_positive_rate": _divide(fp, negatives),
        "false_negative_rate": _divide(fn, positives),
        "precision": _divide(tp, predicted),
        "generalized_entropy_index": generalized_entropy(counts, alpha),
        "theil_index": generalized_entropy(counts, 1.0),
    }


def calibration_error(gap: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Expected calibration error per group: ``sum_bins |sum(score - y)| / rows``.

    This equals ``sum_b (n_b / n) * |mean score_b - mean y_b|`` over equal-width score bins.
    """
    return _divide(gap.abs().sum(dim=-1), count)


def spread(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The largest and smallest defined value over the last (group) dimension; NaN if none."""
    defined = ~torch.isnan(values)
    high = torch.where(defined, values, torch.full_like(values, -torch.inf)).amax(dim=-1)
    low = torch.where(defined, values, torch.full_like(values, torch.inf)).amin(dim=-1)
    none = ~defined.any(dim=-1)
    nan = torch.full_like(high, float("nan"))
    return torch.where(none, nan, high), torch.where(none, nan, low)


def difference(values: torch.Tensor) -> torch.Tensor:
    """Largest minus smallest defined group value (fairlearn's ``between_groups``)."""
    high, low = spread(values)
    return high - low


def ratio(values: torch.Tensor) -> torch.Tensor:
    """Smallest over largest defined group value (fairlearn's ``between_groups`` ratio)."""
    high, low = spread(values)
    return _divide(low, high)


def relative(
    metrics: dict[str, torch.Tensor], reference: int | None = None
) -> dict[str, torch.Tensor]:
    """Each group against the reference group (``reference``: its position; ``None``: the
    highest selection rate): :data:`RELATIVE`."""
    index = reference_index(metrics["selection_rate"], reference)
    return {
        "disparate_impact": impact_ratios(metrics["selection_rate"], index),
        "average_odds_difference": odds_differences(
            metrics["true_positive_rate"], metrics["false_positive_rate"], index),
    }


def disparities(
    metrics: dict[str, torch.Tensor], *, alpha: float = 2.0, reference: int | None = None
) -> dict[str, torch.Tensor]:
    """Every disparity of :data:`DISPARITIES` over the groups of ``metrics``.

    Equalized odds difference is the larger of the true- and false-positive-rate differences,
    as in fairlearn's ``equalized_odds_difference`` (``agg="worst_case"``). The disparate
    impact ratio and average odds difference compare each group with the reference
    (``reference``: its position among the groups; ``None``: the highest selection rate) and
    keep the worst (see :mod:`paralab_fairness.reference`). The between-group indices replace
    each row's benefit by its group's mean ``1 + selection_rate - base_rate``.
    """
    tpr_gap = difference(metrics["true_positive_rate"])
    fpr_gap = difference(metrics["false_positive_rate"])
    index = reference_index(metrics["selection_rate"], reference)
    compared = relative(metrics, reference)
    benefit = 1.0 + metrics["selection_rate"] - metrics["base_rate"]
    return {
        "demographic_parity_difference": difference(metrics["selection_rate"]),
        "demographic_parity_ratio": ratio(metrics["selection_rate"]),
        "equalized_odds_difference": torch.fmax(tpr_gap, fpr_gap),
        "equal_opportunity_difference": tpr_gap,
        "disparate_impact_ratio": worst_ratio(compared["disparate_impact"], index),
        "average_odds_difference": worst_difference(compared["average_odds_difference"], index),
        "between_group_generalized_entropy_index": between_group_entropy(
            metrics["count"], benefit, alpha),
        "between_group_theil_index": between_group_entropy(metrics["count"], benefit, 1.0),
    }


def bootstrap_intervals(
    counts: torch.Tensor,
    resamples: int,
    confidence: float = 0.95,
    generator: torch.Generator | None = None,
    *,
    alpha: float = 2.0,
    reference: int | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of every disparity, resampling rows (Poisson bootstrap).

    Giving each row a Poisson(1) weight makes a cell's resampled count the sum of its rows'
    weights: Poisson(count). So ``resamples`` replicates cost ``resamples x groups x 4``
    draws, not ``resamples x rows``, and are exact for the row-level Poisson bootstrap.
    """
    if resamples <= 0:
        return {}
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"fairness: confidence must be in (0, 1), got {confidence}")
    expanded = counts.double().unsqueeze(0).expand(resamples, *counts.shape).contiguous()
    drawn = torch.poisson(expanded, generator=generator)
    replicated = disparities(rates(drawn, alpha), alpha=alpha, reference=reference)
    tail = (1.0 - confidence) / 2.0
    levels = torch.tensor([tail, 1.0 - tail], dtype=torch.float64, device=counts.device)
    intervals = {}
    for name, values in replicated.items():
        low, high = torch.nanquantile(values, levels).tolist()
        intervals[name] = (low, high)
    return intervals


RATE_PARTS = {
    "selection_rate": ((1, 3), (0, 1, 2, 3)),
    "accuracy": ((0, 3), (0, 1, 2, 3)),
    "true_positive_rate": ((3,), (2, 3)),
    "false_positive_rate": ((1,), (0, 1)),
    "false_negative_rate": ((2,), (2, 3)),
    "precision": ((3,), (1, 3)),
}
"""Each rate as (numerator cells, denominator cells) of ``tn, fp, fn, tp``."""


def denominators(counts: torch.Tensor) -> dict[str, list[int]]:
    """Per rate, the rows each group's value is computed from (its ``n``)."""
    counts = counts.long()
    return {name: counts[..., list(below)].sum(dim=-1).tolist()
            for name, (_, below) in RATE_PARTS.items()}


def wilson_intervals(counts: torch.Tensor, confidence: float) -> dict[str, list[list[float]]]:
    """Wilson score intervals of every rate per group (``[low, high]``; NaN where the
    denominator is 0): the interval of a binomial proportion that stays inside [0, 1] and
    keeps its coverage for small groups and rates near 0 or 1, where the normal
    approximation does not."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    counts = counts.double()
    out: dict[str, list[list[float]]] = {}
    for name, (above, below) in RATE_PARTS.items():
        k = counts[..., list(above)].sum(dim=-1)
        n = counts[..., list(below)].sum(dim=-1)
        safe = n.clamp(min=1.0)
        p = k / safe
        centre = (p + z * z / (2 * safe)) / (1 + z * z / safe)
        half = z * torch.sqrt(p * (1 - p) / safe + z * z / (4 * safe * safe)) / (1 + z * z / safe)
        nan = torch.full_like(p, float("nan"))
        low = torch.where(n > 0, (centre - half).clamp(min=0.0), nan)
        high = torch.where(n > 0, (centre + half).clamp(max=1.0), nan)
        out[name] = torch.stack([low, high], dim=-1).tolist()
    return out


def set_by(
    metrics: dict[str, torch.Tensor], labels: list[str], reference: int | None = None
) -> dict[str, list[str]]:
    """Per disparity, the groups that set it: ``[highest, lowest]`` of the metric it compares
    (for equalized odds, of the larger of the two gaps; for the between-group indices, of the
    mean benefit); for a comparison with the reference, ``[the worst group, the reference]``;
    empty when it is undefined."""

    def ends(values: torch.Tensor) -> list[str]:
        defined = ~torch.isnan(values)
        if int(defined.sum()) < 2:
            return []
        high = torch.where(defined, values, torch.full_like(values, -torch.inf)).argmax()
        low = torch.where(defined, values, torch.full_like(values, torch.inf)).argmin()
        return [labels[int(high)], labels[int(low)]]

    tpr, fpr = metrics["true_positive_rate"], metrics["false_positive_rate"]
    odds = fpr if float(torch.nan_to_num(difference(fpr), nan=-1.0)) > float(
        torch.nan_to_num(difference(tpr), nan=-1.0)) else tpr
    index = reference_index(metrics["selection_rate"], reference)
    compared = relative(metrics, reference)

    def against_reference(name: str, signed_size: bool) -> list[str]:
        worst = worst_position(compared[name], index, signed_size=signed_size)
        return [] if worst is None else [labels[worst], labels[int(index)]]

    benefit = 1.0 + metrics["selection_rate"] - metrics["base_rate"]
    return {
        "demographic_parity_difference": ends(metrics["selection_rate"]),
        "demographic_parity_ratio": ends(metrics["selection_rate"]),
        "equalized_odds_difference": ends(odds),
        "equal_opportunity_difference": ends(tpr),
        "disparate_impact_ratio": against_reference("disparate_impact", False),
        "average_odds_difference": against_reference("average_odds_difference", True),
        "between_group_generalized_entropy_index": ends(benefit),
        "between_group_theil_index": ends(benefit),
    }
