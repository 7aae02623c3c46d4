"""Robust aggregation of client deltas: coordinate median, trimmed mean, Krum and Multi-Krum.

The weighted mean (FedAvg) lets one client move the global model arbitrarily far; these rules
bound what a minority of Byzantine clients can do (``aggregation`` option of the protocol):

* ``median`` (Yin et al. 2018): the coordinate-wise median of the deltas (the mean of the two
  middle values for an even count, as numpy's and Flower's ``FedMedian``);
* ``trimmed_mean`` (Yin et al. 2018): per coordinate, the mean after cutting
  ``int(trim_fraction * n)`` values at each end (Flower's ``FedTrimmedAvg``, scipy's
  ``trim_mean``);
* ``krum`` (Blanchard et al. 2017): the one delta whose ``n - f - 2`` nearest neighbours are
  closest (sum of squared L2 distances), ``f = krum_malicious``;
* ``multi_krum``: the example-weighted mean of the ``multi_krum_keep`` deltas of lowest Krum
  score (0: ``n - f``), as Flower's ``aggregate_krum`` with ``to_keep``.

The rules ignore the clients' weights (except Multi-Krum's mean), as Flower's do. Every client
of a round starts from the same global model, so a rule on the deltas is the rule on the client
models shifted by the global one (each is shift-invariant): the test compares with Flower's
functions on the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from paralab import Update

Params = dict[str, torch.Tensor]


def _stacked(updates: Sequence[Update]) -> Params:
    return {n: torch.stack([u.delta[n] for u in updates]) for n in updates[0].delta}


def coordinate_median(updates: Sequence[Update]) -> Params:
    """Per coordinate, the median of the clients' deltas (mean of the middle two if even)."""
    result = {}
    for n, values in _stacked(updates).items():
        ordered = values.sort(dim=0).values
        count = ordered.shape[0]
        middle = count // 2
        result[n] = ordered[middle] if count % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return result


def trimmed_mean(updates: Sequence[Update], trim_fraction: float) -> Params:
    """Per coordinate, the mean of the values left after cutting ``int(trim_fraction * n)``
    at each end."""
    count = len(updates)
    cut = int(trim_fraction * count)
    return {n: values.sort(dim=0).values[cut:count - cut].mean(dim=0)
            for n, values in _stacked(updates).items()}


def krum_scores(updates: Sequence[Update], malicious: int) -> torch.Tensor:
    """Each delta's Krum score: the sum of squared distances to its ``max(1, n - f - 2)``
    nearest other deltas."""
    flat = torch.cat([v.flatten(1).double() for v in _stacked(updates).values()], dim=1)
    squared = torch.cdist(flat, flat).pow(2)
    closest = max(1, len(updates) - malicious - 2)
    # Sorted row i starts with its own distance 0; the next ``closest`` are its neighbours.
    return squared.sort(dim=1).values[:, 1:closest + 1].sum(dim=1)


def krum(updates: Sequence[Update], malicious: int, keep: int = 0,
         multi: bool = False) -> Params:
    """Krum's chosen delta, or with ``multi`` the weighted mean of the ``keep`` (0:
    ``n - malicious``) lowest-scored deltas."""
    scores = krum_scores(updates, malicious)
    if not multi:
        chosen = updates[int(torch.argmin(scores))]
        return {n: v.clone() for n, v in chosen.delta.items()}
    keep = keep or max(1, len(updates) - malicious)
    best = torch.argsort(scores, stable=True)[:min(keep, len(updates))].tolist()
    total = float(sum(updates[i].weight for i in best))
    stacked = _stacked([updates[i] for i in best])
    first = next(iter(stacked.values()))
    weights = torch.tensor([updates[i].weight / total for i in best], dtype=first.dtype,
                           device=first.device)
    return {n: torch.tensordot(weights, values, dims=1) for n, values in stacked.items()}


def robust_aggregate(updates: Sequence[Update], rule: str, *, trim_fraction: float = 0.1,
                     malicious: int = 0, keep: int = 0) -> Params:
    """The aggregate delta of ``updates`` under ``rule`` (one of :data:`ROBUST_RULES`)."""
    if not updates:
        raise ValueError("no update to aggregate")
    if rule == "median":
        return coordinate_median(updates)
    if rule == "trimmed_mean":
        return trimmed_mean(updates, trim_fraction)
    if rule in ("krum", "multi_krum"):
        return krum(updates, malicious, keep, multi=rule == "multi_krum")
    raise ValueError(f"unknown robust aggregation {rule!r}")


ROBUST_RULES = ("median", "trimmed_mean", "krum", "multi_krum")
