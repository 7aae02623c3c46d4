"""Exact Shapley values by enumerating every coalition in batched forward passes.

For ``M`` players there are ``2^M`` coalitions. Each row's value function
``v(S) = f(x_S, baseline_rest)[target]`` is evaluated for all of them at once (rows x coalitions
masked inputs in one batch on the device), and the Shapley values are one matrix product
``phi = V @ W`` with the Shapley kernel matrix

    W[S, i] = +|S-1|! (M - |S|)! / M!   when i is in S   (S = T + i)
    W[S, i] = -|S|! (M - |S| - 1)! / M! when i is not in S.

That is the definition (Shapley 1953), computed without sampling or regression: what
``shap.KernelExplainer`` converges to as its samples grow (tests/test_explain_shapley.py checks
that). With a background distribution of ``B`` weighted rows instead of one baseline row
(:mod:`paralab_explain.background`), ``v(S)`` is the weighted mean over the background rows,
which is what SHAP computes (``shap.ExactExplainer`` with an ``Independent`` masker,
``KernelExplainer`` with that background data; tests/test_explain_background.py): every row is
enumerated against every background row in the same batches.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from paralab_explain.background import Background, single
from paralab_explain.choices import MAX_PLAYERS
from paralab_explain.errors import ExplainError
from paralab_explain.model_output import ClassOutput
from paralab_explain.players import Players


def check_player_count(players: int, max_players: int = MAX_PLAYERS) -> None:
    """Refuse an enumeration that is too large, saying how large and what to do instead."""
    if players > max_players:
        raise ExplainError(
            f"exact_shapley: {players} players means 2^{players} = {2 ** players:,} coalitions "
            f"per row, more than the limit of {max_players} players (2^{max_players} = "
            f"{2 ** max_players:,}); use method 'kernel_shap' (sampled), or group the features "
            "(groups = 'columns', an integer number of blocks, 'patches:<size>' or explicit "
            "lists), or raise max_players"
        )


@lru_cache(maxsize=8)
def _coalitions_cpu(players: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All coalitions as a ``(2^M, M)`` 0/1 matrix and the ``(2^M, M)`` Shapley kernel."""
    codes = torch.arange(2**players)
    members = ((codes.unsqueeze(1) >> torch.arange(players)) & 1).double()
    size = members.sum(dim=1).long()
    factorial = torch.tensor([math.factorial(k) for k in range(players + 1)], dtype=torch.float64)
    total = math.factorial(players)
    # weight of the marginal contribution v(T + i) - v(T) where |T| = k
    weight = factorial[: players] * factorial.flip(0)[1:] / total  # k! (M-k-1)! / M!, k=0..M-1
    plus = weight[(size - 1).clamp(min=0)].unsqueeze(1) * members
    minus = weight[size.clamp(max=players - 1)].unsqueeze(1) * (1 - members)
    return members, plus - minus


def coalitions(players: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    members, kernel = _coalitions_cpu(players)
    return members.to(device), kernel.to(device)


def exact_shapley(
    function: ClassOutput,
    x: torch.Tensor,
    baseline: torch.Tensor | Background,
    target: torch.Tensor,
    players: Players,
    *,
    max_players: int = MAX_PLAYERS,
    max_batch: int = 1 << 25,
    factorize: bool = True,
) -> torch.Tensor:
    """Shapley values ``(rows, M)`` of ``function(x)[target]`` for flat rows ``x``.

    ``max_batch`` bounds the number of values built at once (rows x coalitions x width, 128 MB
    of float32 by default); rows are processed in as few chunks as that allows: few large
    batches keep the device (or every CPU thread) busy. When the model starts with a linear layer
    (``factorize``), its output for a coalition is ``W b + c + sum over present players of
    W (x - b)`` restricted to the player's features: computed once per player and combined by one
    matrix product, instead of running the layer on every masked input (same values, see
    tests/test_explain_shapley.py; much less work when features outnumber players).

    ``baseline`` is one row ``(F,)`` or a :class:`Background` of weighted rows: each explained
    row is then repeated once per background row, and the values averaged with the weights.
    """
    check_player_count(players.count, max_players)
    device = x.device
    background = baseline if isinstance(baseline, Background) else single(baseline)
    background = background.to(device)
    n_background = len(background)
    members, kernel = coalitions(players.count, device)
    members = members.to(x.dtype)
    players = players.to(device)
    split = function.split_first_linear() if factorize else None
    n_coalitions = len(members)
    width = split[0].out_features if split is not None else x.shape[1]
    rows_per_chunk = max(1, max_batch // (n_coalitions * width * n_background))
    weights = background.weights.double()
    values = []
    with torch.inference_mode():
        for start in range(0, len(x), rows_per_chunk):
            # each row once per background row (row-major: row r, background b at r * B + b)
            rows = x[start : start + rows_per_chunk].repeat_interleave(n_background, dim=0)
            base = background.rows.to(x.dtype).repeat(len(rows) // n_background, 1)
            if n_background == 1:
                base = base[0]
            # coalition-major order (K, r * B): the combination below is one matrix product
            index = target[start : start + rows_per_chunk].repeat_interleave(n_background)
            index = index.repeat(n_coalitions)
            if split is None:
                out = function(_masked_inputs(rows, base, members, players))
            else:
                out = split[1](_first_layer(split[0], rows, base, members, players))
            v = out.gather(1, index.unsqueeze(1)).reshape(n_coalitions, -1, n_background)
            values.append(kernel.T @ (v.double() @ weights))  # (M, r)
    return torch.cat(values, dim=1).T.to(x.dtype)


def _masked_inputs(rows: torch.Tensor, baseline: torch.Tensor, members: torch.Tensor,
                   players: Players) -> torch.Tensor:
    """Every coalition's input for every row, ``(K * rows, F)`` coalition-major: the baseline
    (one row ``(F,)`` or one per row ``(rows, F)``) where a player is absent."""
    mask = players.feature_mask(members).to(rows.dtype).unsqueeze(1)  # (K, 1, F)
    shift = (rows - baseline).unsqueeze(0)  # (1, r, F)
    return torch.addcmul(baseline, mask, shift).reshape(-1, rows.shape[1])


def _first_layer(layer: torch.nn.Linear, rows: torch.Tensor, baseline: torch.Tensor,
                 members: torch.Tensor, players: Players) -> torch.Tensor:
    """The first linear layer's output for every coalition of every row, ``(K * rows, H)``
    coalition-major: one ``addmm`` of the coalitions with the players' contributions."""
    membership = players.membership.to(rows.dtype)  # (M, F)
    uncovered = 1.0 - membership.sum(dim=0).clamp(max=1.0)  # features no player owns
    shift = rows - baseline  # (r, F)
    weight = layer.weight  # (H, F)
    at_baseline = torch.nn.functional.linear(baseline, weight, layer.bias)  # (H,) or (r, H)
    fixed = at_baseline + (shift * uncovered) @ weight.T  # (r, H)
    per_player = (membership.unsqueeze(1) * shift) @ weight.T  # (M, r, H)
    hidden = torch.addmm(fixed.reshape(1, -1), members, per_player.reshape(len(members[0]), -1))
    return hidden.reshape(-1, weight.shape[0])
