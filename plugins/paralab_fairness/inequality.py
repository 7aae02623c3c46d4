"""Generalised entropy and Theil indices of the benefit ``b = y_hat - y + 1`` (Speicher et al.
2018, AIF360's ``ClassificationMetric.generalized_entropy_index``), from confusion counts.

A row's benefit takes three values only: 0 for a false negative, 1 for a correct decision and
2 for a false positive. So the index of a group is a function of its four counts, and the
between-group index (every row's benefit replaced by its group's mean) of the groups' counts:
both cost ``groups x 4`` numbers, bootstrap replicates included, never a pass over the rows.

``alpha`` must be > 0: for ``alpha <= 0`` a single false negative (benefit 0) makes the index
infinite, so such a value would say nothing about the model. ``alpha = 1`` is the Theil index.
"""

from __future__ import annotations

import torch


def _nan_where(condition: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.where(condition, torch.full_like(values, float("nan")), values)


def mean_benefit(counts: torch.Tensor) -> torch.Tensor:
    """``mean(b)`` per group of ``(..., groups, 4)`` counts (``tn, fp, fn, tp``); NaN if empty."""
    counts = counts.double()
    tn, fp, _, tp = counts.unbind(dim=-1)
    n = counts.sum(dim=-1)
    return _nan_where(n <= 0, (tn + tp + 2.0 * fp) / n.clamp(min=1e-300))


def _index_of_ratios(weights: torch.Tensor, ratios: torch.Tensor, alpha: float) -> torch.Tensor:
    """``sum_k w_k * f(r_k)`` over the last dimension, with ``sum w = 1``: the generalised
    entropy ``(r^alpha - 1) / (alpha (alpha - 1))``, or ``r log r`` (Theil) at ``alpha = 1``
    (``0 log 0 = 0``)."""
    if alpha == 1.0:
        return (weights * torch.xlogy(ratios, ratios)).sum(dim=-1)
    return ((weights * ratios.pow(alpha)).sum(dim=-1) - 1.0) / (alpha * (alpha - 1.0))


def generalized_entropy(counts: torch.Tensor, alpha: float) -> torch.Tensor:
    """The index within each group (over its rows' benefits); NaN for an empty group or one
    whose mean benefit is 0 (every row a false negative)."""
    counts = counts.double()
    tn, fp, fn, tp = counts.unbind(dim=-1)
    n = counts.sum(dim=-1)
    mu = mean_benefit(counts)
    safe_n, safe_mu = n.clamp(min=1e-300), torch.nan_to_num(mu, nan=1.0).clamp(min=1e-300)
    # Benefit values 0, 1, 2 with their shares of the group's rows.
    weights = torch.stack([fn, tn + tp, fp], dim=-1) / safe_n.unsqueeze(-1)
    levels = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64, device=counts.device)
    ratios = levels / safe_mu.unsqueeze(-1)
    value = _index_of_ratios(weights, ratios, alpha)
    return _nan_where(torch.isnan(mu) | (mu <= 0), value)


def between_group_entropy(
    count: torch.Tensor, benefit: torch.Tensor, alpha: float
) -> torch.Tensor:
    """The index over all compared rows when each row's benefit is its group's mean
    (AIF360's ``between_all_groups_generalized_entropy_index``): the part of the inequality
    that is between groups. ``count`` and ``benefit`` are ``(..., groups)``; an empty group
    weighs nothing; NaN when the overall mean benefit is 0 or there are no rows."""
    count = count.double()
    benefit = torch.nan_to_num(benefit.double(), nan=0.0)
    total = count.sum(dim=-1, keepdim=True)
    weights = count / total.clamp(min=1e-300)
    mu = (weights * benefit).sum(dim=-1, keepdim=True)
    ratios = benefit / mu.clamp(min=1e-300)
    value = _index_of_ratios(weights, ratios, alpha)
    return _nan_where((total.squeeze(-1) <= 0) | (mu.squeeze(-1) <= 0), value)
