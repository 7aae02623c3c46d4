"""Fairness of real-valued predictions: group losses and bounded group loss.

For regression the usual group criterion is that no group's loss is large: Agarwal, Dudik and
Wu (2019) constrain every group's mean loss to at most ``bound`` (fairlearn's
``BoundedGroupLoss`` moment). :func:`regression_table` reports per group the mean absolute and
squared errors, the mean prediction and target; as disparities the largest minus smallest
group MAE and MSE, their ratios, the worst group's loss and, with a ``bound``, by how much the
worst group exceeds it and which groups do. Each is one ``index_add`` per quantity over the
rows' group numbers.

paralab's runs are classifications (their targets are class labels), so this is a library
function, not yet an auditor mode.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from paralab_fairness.groups import encode_groups, group_label

LOSSES = ("absolute", "squared")
"""The group losses :func:`regression_table` bounds."""


def regression_table(
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    sensitive: Mapping[str, torch.Tensor],
    *,
    categories: Mapping[str, Sequence[str]] | None = None,
    loss: str = "absolute",
    bound: float | None = None,
    min_group_size: int = 0,
) -> dict[str, Any]:
    """Group losses of real-valued predictions, JSON-ready: ``groups``, ``metrics`` (per group:
    ``count``, ``mean_absolute_error``, ``mean_squared_error``, ``mean_prediction``,
    ``mean_target``), ``overall``, ``disparities`` over the groups with at least
    ``min_group_size`` rows and, with ``bound``, ``violating`` (the groups whose ``loss`` is
    above it).

    :raises ValueError: mismatched lengths, no rows, non-finite values, an unknown ``loss``, a
        negative or non-finite ``bound``, fewer than two groups.
    """
    if loss not in LOSSES:
        raise ValueError(f"fairness: loss = {loss!r}; expected one of {LOSSES}")
    if bound is not None and not (math.isfinite(bound) and bound >= 0):
        raise ValueError(f"fairness: bound = {bound}; it must be a finite number >= 0")
    n = int(y_true.numel())
    if n == 0 or int(y_pred.numel()) != n or y_true.ndim != 1 or y_pred.ndim != 1:
        raise ValueError(f"fairness: regression audit needs two 1-D tensors of the same rows, "
                         f"got shapes {tuple(y_true.shape)} and {tuple(y_pred.shape)}")
    truth, predicted = y_true.double(), y_pred.double().to(y_true.device)
    for what, values in (("targets", truth), ("predictions", predicted)):
        bad = ~torch.isfinite(values)
        if bad.any():
            raise ValueError(f"fairness: {what} contain {int(bad.sum())} NaN or infinite values "
                             f"(first at row {int(torch.nonzero(bad)[0])})")
    codes = encode_groups({k: v.to(truth.device) for k, v in sensitive.items()}, categories,
                          n_rows=n)
    numbers, compact = torch.unique(codes.combined(), return_inverse=True)
    groups = [group_label(g) for g in codes.decode(numbers.tolist())]
    if len(groups) < 2:
        raise ValueError(f"fairness: sensitive feature {'*'.join(codes.names)!r} has a single "
                         "group in these rows; a disparity needs at least two groups")
    error = predicted - truth
    columns = torch.stack([torch.ones_like(error), error.abs(), error.square(), predicted,
                           truth], dim=1)
    sums = torch.zeros(len(groups), 5, dtype=torch.float64, device=truth.device)
    sums.index_add_(0, compact, columns)
    count = sums[:, 0]
    means = sums[:, 1:] / count.unsqueeze(1)
    names = ("mean_absolute_error", "mean_squared_error", "mean_prediction", "mean_target")
    metrics = {"count": count.tolist(), **{name: means[:, i].tolist()
                                          for i, name in enumerate(names)}}
    overall_means = columns[:, 1:].mean(dim=0)
    overall = {"count": float(n), **{name: float(overall_means[i])
                                     for i, name in enumerate(names)}}
    kept = [p for p, c in enumerate(metrics["count"]) if c >= min_group_size]
    excluded = [groups[p] for p in range(len(groups)) if p not in kept]
    disparities: dict[str, float] = {}
    key = "mean_absolute_error" if loss == "absolute" else "mean_squared_error"
    for name, short in (("mean_absolute_error", "mae"), ("mean_squared_error", "mse")):
        values = [metrics[name][p] for p in kept]
        if len(values) < 2:
            disparities[f"{short}_difference"] = disparities[f"{short}_ratio"] = math.nan
            continue
        high, low = max(values), min(values)
        disparities[f"{short}_difference"] = high - low
        disparities[f"{short}_ratio"] = low / high if high > 0 else math.nan
    worst = max((metrics[key][p] for p in kept), default=math.nan)
    disparities["worst_group_loss"] = worst if len(kept) >= 2 else math.nan
    violating: list[str] = []
    if bound is not None:
        disparities["bounded_group_loss_violation"] = (
            max(0.0, worst - bound) if len(kept) >= 2 else math.nan)
        violating = [groups[p] for p in kept if metrics[key][p] > bound]
    return {"features": list(codes.names), "groups": groups, "loss": loss,
            "metrics": metrics, "overall": overall, "disparities": disparities,
            "excluded": excluded, "bound": bound, "violating": violating}
