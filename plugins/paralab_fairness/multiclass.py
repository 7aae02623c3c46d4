"""Multiclass fairness: macro averages of the one-vs-rest audits, from one confusion matrix
per group.

One-vs-rest for class ``c`` is the binary audit with ``positive_class = c`` (the auditor runs
:func:`paralab_fairness.table.fairness_table` once per class). The macro audit averages, as
scikit-learn's ``average="macro"`` does, each group's per-class rates (macro recall is the
mean true positive rate) and each disparity over the classes. All of it comes from a
``classes x classes`` confusion matrix per group, counted in one ``bincount`` over
``group * K^2 + K * y + y_hat``: class ``c``'s one-vs-rest counts are ``tp = C[c, c]``,
``fp = column c - tp``, ``fn = row c - tp`` and ``tn`` the rest. The bootstrap draws each of
the ``K^2`` cells Poisson (the row-level Poisson bootstrap, as the binary audit does) and
derives every class from the same draw, so the classes stay jointly resampled.

A class absent from a group's labels has no true positive rate there; the macro mean is
over the classes where the value is defined (NaN when none is).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import torch

from paralab_fairness.groups import encode_groups, group_label
from paralab_fairness.rates import DISPARITIES, rates
from paralab_fairness.rates import disparities as binary_disparities
from paralab_fairness.table import FairnessTable

MACRO_METRICS = ("true_positive_rate", "false_positive_rate", "false_negative_rate",
                 "precision")
"""The per-group rates whose class mean the macro audit reports (a class mean of selection
rates is 1 / K whatever the model does, so it is left out)."""


def confusion_by_group(
    codes: torch.Tensor, y_true: torch.Tensor, y_pred: torch.Tensor, n_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The group numbers that occur and their ``(groups, K, K)`` confusion matrices (float64,
    rows: labels, columns: predictions)."""
    numbers, compact = torch.unique(codes, return_inverse=True)
    cell = y_true.long() * n_classes + y_pred.long()
    index = compact * (n_classes * n_classes) + cell
    counts = torch.bincount(index, minlength=len(numbers) * n_classes * n_classes)
    return numbers, counts.view(len(numbers), n_classes, n_classes).double()


def one_vs_rest(confusion: torch.Tensor) -> torch.Tensor:
    """``(..., groups, K, K)`` confusion matrices -> ``(..., K, groups, 4)`` one-vs-rest counts
    (``tn, fp, fn, tp``) of each class."""
    tp = torch.diagonal(confusion, dim1=-2, dim2=-1)
    fp = confusion.sum(dim=-2) - tp
    fn = confusion.sum(dim=-1) - tp
    tn = confusion.sum(dim=(-2, -1)).unsqueeze(-1) - tp - fp - fn
    return torch.stack([tn, fp, fn, tp], dim=-1).movedim(-2, -3)


def _macro(values: torch.Tensor) -> torch.Tensor:
    """The mean over the class dimension (``-2`` of ``(..., K, groups)``, or ``-1`` of
    ``(..., K)`` when reduced) of the defined values."""
    return torch.nanmean(values, dim=-2 if values.ndim >= 2 else -1)


def macro_disparities(
    confusion: torch.Tensor, alpha: float = 2.0
) -> dict[str, torch.Tensor]:
    """Each disparity of the binary audit, per class (one-vs-rest), averaged over classes."""
    per_class = binary_disparities(rates(one_vs_rest(confusion), alpha), alpha=alpha)
    return {name: torch.nanmean(values, dim=-1) for name, values in per_class.items()}


def macro_table(
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    sensitive: Mapping[str, torch.Tensor],
    n_classes: int,
    *,
    categories: Mapping[str, Sequence[str]] | None = None,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    min_group_size: int = 0,
    alpha: float = 2.0,
    class_names: Sequence[str] = (),
) -> FairnessTable:
    """The macro audit of one grouping (``variant = "macro"``): ``metrics`` per group are
    ``count``, multiclass ``accuracy``, the class means of :data:`MACRO_METRICS` and each
    class's one-vs-rest value (``true_positive_rate|<class>``); ``overall`` the same on all
    rows; ``disparities`` the class means of the binary disparities over the groups with at
    least ``min_group_size`` rows, with bootstrap ``intervals``.

    :raises ValueError: labels or predictions outside ``0..n_classes-1``, mismatched lengths,
        fewer than two groups.
    """
    n = int(y_true.numel())
    if int(y_pred.numel()) != n or n == 0:
        raise ValueError(f"fairness: macro audit needs as many predictions as labels (> 0), got "
                         f"{int(y_pred.numel())} and {n}")
    for what, values in (("targets", y_true), ("predictions", y_pred)):
        if values.dtype.is_floating_point or int(values.min()) < 0 or int(values.max()) >= n_classes:
            raise ValueError(f"fairness: macro audit {what} must be class indices in "
                             f"0..{n_classes - 1}")
    codes = encode_groups(dict(sensitive), categories, n_rows=n)
    numbers, confusion = confusion_by_group(codes.combined(), y_true, y_pred, n_classes)
    groups = codes.decode(numbers.tolist())
    labels = [group_label(g) for g in groups]
    if len(groups) < 2:
        raise ValueError(f"fairness: sensitive feature {'*'.join(codes.names)!r} has a single "
                         "group in these rows; a disparity needs at least two groups")
    names = [str(c) for c in class_names] or [str(c) for c in range(n_classes)]
    metrics = _macro_metrics(confusion, names, alpha)
    overall = {name: values[0] for name, values in
               _macro_metrics(confusion.sum(dim=0, keepdim=True), names, alpha).items()}
    count = confusion.sum(dim=(-2, -1))
    kept = count >= min_group_size
    excluded = [label for label, keep in zip(labels, kept.tolist()) if not keep]
    if int(kept.sum()) >= 2:
        gaps = {k: float(v) for k, v in macro_disparities(confusion[kept], alpha).items()}
    else:
        gaps = dict.fromkeys(DISPARITIES, math.nan)
    intervals: dict[str, tuple[float, float]] = {}
    if bootstrap > 0 and int(kept.sum()) >= 2:
        generator = torch.Generator(device=confusion.device).manual_seed(seed)
        expanded = confusion[kept].unsqueeze(0).expand(bootstrap, *confusion[kept].shape)
        drawn = torch.poisson(expanded.contiguous(), generator=generator)
        replicated = macro_disparities(drawn, alpha)
        tail = (1.0 - confidence) / 2.0
        levels = torch.tensor([tail, 1.0 - tail], dtype=torch.float64, device=drawn.device)
        for name, values in replicated.items():
            low, high = torch.nanquantile(values, levels).tolist()
            intervals[name] = (low, high)
    return FairnessTable(features=codes.names, groups=groups, metrics=metrics, overall=overall,
                         disparities=gaps, intervals=intervals, excluded=excluded,
                         variant="macro")


def _macro_metrics(confusion: torch.Tensor, names: list[str], alpha: float) -> dict[str, list]:
    per_class = rates(one_vs_rest(confusion), alpha)  # (K, groups)
    count = confusion.sum(dim=(-2, -1))
    correct = torch.diagonal(confusion, dim1=-2, dim2=-1).sum(-1)
    metrics: dict[str, list] = {"count": count.tolist(), "accuracy": (correct / count).tolist()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-NaN: NaN, on purpose
        metrics.update({name: _macro(per_class[name]).tolist() for name in MACRO_METRICS})
    for name in MACRO_METRICS:
        for position, label in enumerate(names):
            metrics[f"{name}|{label}"] = per_class[name][position].tolist()
    return metrics
