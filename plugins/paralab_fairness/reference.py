"""Comparisons of every group with one reference group (AIF360's privileged group).

AIF360 compares an unprivileged group with a privileged one; with more than two groups
paralab compares each group with the reference and reports, as the disparity, the group that
is worst off: the smallest selection-rate ratio (the four-fifths rule reads it) and the
average odds difference largest in size (signed). With two groups both equal AIF360's
``disparate_impact`` and ``average_odds_difference`` exactly.

The reference is a group named by the auditor's ``reference`` option or, by default, the
compared group with the highest selection rate (the most favoured group, as the four-fifths
rule takes it); then the disparate impact ratio equals ``demographic_parity_ratio``. The
default is recomputed in every bootstrap replicate, a named reference stays fixed.
All functions take ``(..., groups)`` tensors, so one call serves the audit and a batch of
replicates.
"""

from __future__ import annotations

import torch


def _nan() -> float:
    return float("nan")


def reference_index(selection_rate: torch.Tensor, reference: int | None) -> torch.Tensor:
    """``(..., 1)`` index of the reference group: ``reference``, or the highest defined
    selection rate (first on ties)."""
    if reference is not None:
        shape = (*selection_rate.shape[:-1], 1)
        return torch.full(shape, reference, dtype=torch.long, device=selection_rate.device)
    filled = torch.nan_to_num(selection_rate, nan=-torch.inf)
    return filled.argmax(dim=-1, keepdim=True)


def _divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    nan = torch.full_like(numerator, _nan())
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-300), nan)


def impact_ratios(selection_rate: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Each group's selection rate over the reference's (NaN where the reference selects no
    one: the ratio is undefined)."""
    return _divide(selection_rate, selection_rate.gather(-1, index))


def odds_differences(
    true_positive_rate: torch.Tensor, false_positive_rate: torch.Tensor, index: torch.Tensor
) -> torch.Tensor:
    """``((FPR_g - FPR_ref) + (TPR_g - TPR_ref)) / 2`` per group (AIF360's average odds
    difference of group g against the reference)."""
    tpr_gap = true_positive_rate - true_positive_rate.gather(-1, index)
    fpr_gap = false_positive_rate - false_positive_rate.gather(-1, index)
    return 0.5 * (tpr_gap + fpr_gap)


def _others(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values`` with the reference's entry set to NaN (it is compared with itself)."""
    positions = torch.arange(values.shape[-1], device=values.device)
    return torch.where(positions == index, torch.full_like(values, _nan()), values)


def worst_ratio(ratios: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The smallest defined ratio over the groups other than the reference; NaN if none."""
    others = _others(ratios, index)
    defined = ~torch.isnan(others)
    low = torch.where(defined, others, torch.full_like(others, torch.inf)).amin(dim=-1)
    return torch.where(defined.any(dim=-1), low, torch.full_like(low, _nan()))


def worst_difference(differences: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The defined difference largest in size (with its sign) over the other groups."""
    others = _others(differences, index)
    defined = ~torch.isnan(others)
    size = torch.where(defined, others.abs(), torch.full_like(others, -torch.inf))
    chosen = others.gather(-1, size.argmax(dim=-1, keepdim=True)).squeeze(-1)
    return torch.where(defined.any(dim=-1), chosen, torch.full_like(chosen, _nan()))


def worst_position(values: torch.Tensor, index: torch.Tensor, *, signed_size: bool) -> int | None:
    """The group setting :func:`worst_ratio` (or :func:`worst_difference` with
    ``signed_size``) of one audit's ``(groups,)`` values; None if undefined."""
    others = _others(values, index)
    defined = ~torch.isnan(others)
    if not bool(defined.any()):
        return None
    if signed_size:
        return int(torch.where(defined, others.abs(), torch.full_like(others, -torch.inf))
                   .argmax())
    return int(torch.where(defined, others, torch.full_like(others, torch.inf)).argmin())
