"""Permutation-sampling Shapley values with standard errors, for any number of players.

Exact enumeration costs ``2^M`` evaluations per row; beyond about 16 players the Shapley value
is estimated instead, as the mean over random orders of the players of each player's marginal
contribution ``v(predecessors + i) - v(predecessors)`` (Castro et al. 2009; Strumbelj and
Kononenko 2014). Each order costs ``M + 1`` evaluations and its marginal contributions sum to
``v(all) - v(none)`` exactly, so every estimate is efficient, whatever the number of orders.

* **Antithetic sampling** (on by default): each order is paired with its reverse, whose
  marginal contributions are negatively correlated with the forward ones (Mitchell et al. 2022);
  the pair's mean is one sample. This is what ``shap.PermutationExplainer`` does (forward and
  backward through each permutation).
* **Standard errors**: the samples (pairs, or single orders) are independent, so each value's
  standard error is the samples' standard deviation over the square root of their number;
  tests/test_explain_permutation.py checks that the exact values fall within the intervals at
  the advertised rate.
* **Convergence**: with ``target_error``, orders are drawn in rounds of ``batch`` and a row stops
  as soon as the largest standard error of its values is at or below the target (or when
  ``permutations`` orders are spent); the result says which rows converged.

All orders of all rows still running in a round are evaluated in batched forward passes, each
coalition against every background row (:mod:`paralab_explain.background`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from paralab_explain.background import Background, single
from paralab_explain.errors import ExplainError
from paralab_explain.model_output import ClassOutput
from paralab_explain.players import Players


@dataclass
class SampledShapley:
    """Estimated values ``(R, M)``, their standard errors ``(R, M)``, the orders spent per row
    ``(R,)`` and whether each row reached ``target_error`` (all true without a target)."""

    values: torch.Tensor
    standard_error: torch.Tensor
    permutations: torch.Tensor
    converged: torch.Tensor


def check_sampling(permutations: int, batch: int, antithetic: bool,
                   target_error: float | None) -> None:
    """Refuse settings that cannot give a standard error, before any evaluation."""
    per_sample = 2 if antithetic else 1
    if permutations < 2 * per_sample:
        raise ExplainError(
            f"permutations: {permutations} orders give fewer than 2 independent samples, so no "
            f"standard error; use at least {2 * per_sample}"
            + (" (antithetic sampling pairs each order with its reverse)" if antithetic else "")
        )
    if batch < 1:
        raise ExplainError(f"batch: need at least 1 order per round, got {batch}")
    if target_error is not None and not target_error > 0:
        raise ExplainError(f"target_error: must be > 0 (a standard error), got {target_error}")


def coalition_values(
    function: ClassOutput,
    x: torch.Tensor,
    masks: torch.Tensor,
    background: Background,
    target: torch.Tensor,
    players: Players,
    *,
    max_batch: int = 1 << 23,
) -> torch.Tensor:
    """``E_b f(x_S, b_rest)[target]`` for items ``(x[i], masks[i], target[i])``, ``(N,)``.

    ``masks`` are player masks ``(N, M)``; every item is built against every background row;
    ``max_batch`` bounds the input values built at once (items x background x features).
    """
    rows = background.rows.to(x.dtype)
    n_background, n_features = rows.shape
    chunk = max(1, max_batch // (n_background * n_features))
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), chunk):
            feature_mask = players.feature_mask(masks[start : start + chunk]).to(x.dtype)
            shift = x[start : start + chunk].unsqueeze(1) - rows  # (n, B, F)
            inputs = torch.addcmul(rows, feature_mask.unsqueeze(1), shift).reshape(-1, n_features)
            index = target[start : start + chunk].repeat_interleave(n_background)
            values = function(inputs).gather(1, index.unsqueeze(1)).view(-1, n_background)
            out.append(background.expected(values.double()))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64, device=x.device)


def _marginals(values: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """Marginal contributions ``(r, P, M)`` from prefix values ``(r, P, M + 1)`` of orders
    whose player ``m`` comes at position ``rank[..., m]``."""
    return values.gather(2, rank + 1) - values.gather(2, rank)


def permutation_shapley(
    function: ClassOutput,
    x: torch.Tensor,
    baseline: torch.Tensor | Background,
    target: torch.Tensor,
    players: Players,
    *,
    permutations: int = 256,
    antithetic: bool = True,
    target_error: float | None = None,
    batch: int = 32,
    seed: int = 0,
    max_batch: int = 1 << 23,
) -> SampledShapley:
    """Permutation-sampling Shapley values of ``function(x)[target]`` (see the module docstring).

    :param permutations: the most orders spent per row (antithetic: forward and reverse each
        count, so ``permutations / 2`` independent samples).
    :param target_error: stop a row once its largest standard error is at most this.
    :param batch: orders per round (rounded up to even with ``antithetic``).
    """
    check_sampling(permutations, batch, antithetic, target_error)
    device = x.device
    background = (baseline if isinstance(baseline, Background) else single(baseline)).to(device)
    players = players.to(device)
    rows, n_players = len(x), players.count
    per_sample = 2 if antithetic else 1
    samples_per_round = max(1, -(-batch // per_sample))
    max_samples = permutations // per_sample
    generator = torch.Generator(device="cpu").manual_seed(seed)
    total = torch.zeros(rows, n_players, dtype=torch.float64, device=device)
    squares = torch.zeros_like(total)
    count = torch.zeros(rows, dtype=torch.long, device=device)
    active = torch.ones(rows, dtype=torch.bool, device=device)
    positions = torch.arange(n_players + 1, device=device)
    while bool(active.any()):
        live = torch.nonzero(active).flatten()
        draw = min(samples_per_round, max_samples - int(count[live].max()))
        # a uniformly random order per sample; rank[m] = the position of player m
        rank = torch.rand(len(live), draw, n_players, generator=generator).argsort(dim=2)
        rank = rank.to(device)
        orders = [rank] if not antithetic else [rank, n_players - 1 - rank]
        samples = 0.0
        for order in orders:
            # prefix k holds the players at positions < k: (r, P, M + 1, M)
            masks = (order.unsqueeze(2) < positions.view(1, 1, -1, 1)).to(x.dtype)
            items = masks.reshape(-1, n_players)
            repeat = draw * (n_players + 1)
            values = coalition_values(
                function, x[live].repeat_interleave(repeat, dim=0), items, background,
                target[live].repeat_interleave(repeat), players, max_batch=max_batch,
            ).view(len(live), draw, n_players + 1)
            samples = samples + _marginals(values, order) / len(orders)
        total[live] += samples.sum(dim=1)
        squares[live] += (samples**2).sum(dim=1)
        count[live] += draw
        mean, error = _estimate(total[live], squares[live], count[live])
        spent = count[live] >= max_samples
        if target_error is not None:
            reached = (error.max(dim=1).values <= target_error) & (count[live] >= 2)
            active[live[reached | spent]] = False
        else:
            active[live[spent]] = False
    mean, error = _estimate(total, squares, count)
    converged = (error.max(dim=1).values <= target_error) if target_error is not None else (
        torch.ones(rows, dtype=torch.bool, device=device))
    return SampledShapley(mean.to(x.dtype), error.to(x.dtype), count * per_sample, converged)


def _estimate(total: torch.Tensor, squares: torch.Tensor, count: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard error of the mean per value from running sums (``count`` per row)."""
    n = count.to(total.dtype).unsqueeze(1)
    mean = total / n
    variance = ((squares - n * mean**2) / (n - 1).clamp(min=1)).clamp(min=0)
    return mean, (variance / n).sqrt()
