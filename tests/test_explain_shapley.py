"""Exact Shapley values: the axioms, closed forms, and shap.KernelExplainer converging to them."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from paralab_explain.errors import ExplainError
from paralab_explain.explainers import explain
from paralab_explain.model_output import ClassOutput
from paralab_explain.players import resolve_players
from paralab_explain.shapley import coalitions, exact_shapley
from tests.explain_helpers import linear_model, trained_mlp


def _brute_force(game, players: int) -> list[float]:
    """Shapley values from the permutation definition, for a handful of players."""
    values = [0.0] * players
    orders = list(itertools.permutations(range(players)))
    for order in orders:
        present: set[int] = set()
        for player in order:
            before = game(frozenset(present))
            present.add(player)
            values[player] += (game(frozenset(present)) - before) / len(orders)
    return values


def test_kernel_matrix_matches_the_permutation_definition():
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0])
    interaction = lambda s: float(sum(weights[list(s)])) + (2.0 if {0, 1} <= s else 0.0)  # noqa: E731
    members, kernel = coalitions(4)
    v = torch.tensor([interaction(frozenset(torch.nonzero(row).flatten().tolist()))
                      for row in members], dtype=torch.float64)
    ours = (v @ kernel).tolist()
    assert ours == pytest.approx(_brute_force(interaction, 4), abs=1e-12)
    # the interaction of players 0 and 1 is split evenly between them
    assert ours[0] == pytest.approx(1.0 + 1.0) and ours[1] == pytest.approx(-2.0 + 1.0)


def test_linear_logit_model_gets_weight_times_difference():
    torch.manual_seed(0)
    weights = torch.randn(6)
    model = linear_model(weights)
    x = torch.randn(5, 6)
    baseline = torch.randn(6)
    attribution = explain(model, x, method="exact_shapley", target=1, baseline=baseline,
                          output="logit")
    expected = weights * (x - baseline)
    assert torch.allclose(attribution.values, expected, atol=1e-5)


def test_efficiency_and_groups_on_a_trained_mlp():
    model, data = trained_mlp("wine")
    x = data.x[data.splits["test"][:6]]
    attribution = explain(model, x, method="exact_shapley", groups=5, baseline="mean",
                          reference=data.x[data.splits["train"]],
                          feature_names=data.feature_names)
    assert attribution.values.shape == (6, 5)
    function = ClassOutput(model, (13,))
    full = function.target_values(x, attribution.target)
    empty = function.target_values(attribution.baseline.expand_as(x), attribution.target)
    assert torch.allclose(attribution.values.sum(dim=1), full - empty, atol=1e-5)
    assert attribution.players.names[0] == "alcohol..ash"


def test_chunked_enumeration_equals_one_batch():
    model, data = trained_mlp("wine")
    x = data.x[:7]
    function = ClassOutput(model, (13,))
    players = resolve_players(8, 13)
    target = function(x).argmax(dim=1)
    baseline = torch.zeros(13)
    whole = exact_shapley(function, x, baseline, target, players)
    chunked = exact_shapley(function, x, baseline, target, players, max_batch=256 * 13)
    assert torch.allclose(whole, chunked, atol=1e-6)


def test_kernel_explainer_converges_to_exact_values():
    """shap's KernelExplainer (Lundberg and Lee 2017) reaches our values as samples grow."""
    model, data = trained_mlp("wine")
    x = data.x[data.splits["test"][:4]]
    reference = data.x[data.splits["train"]]
    options = dict(groups=8, baseline="mean", reference=reference)
    exact = explain(model, x, method="exact_shapley", **options).values
    errors = []
    for samples in (40, 120, 2**8):
        sampled = explain(model, x, method="kernel_shap", samples=samples, **options).values
        errors.append(float((sampled - exact).abs().max()))
    # with all 2^8 coalitions KernelExplainer enumerates and agrees to float precision
    assert errors[-1] < 1e-5
    assert errors[0] > errors[-1]
    assert errors[1] < 0.5 * errors[0] or errors[1] < 1e-3


def test_too_many_players_is_refused_before_computing():
    model, data = trained_mlp("wine")
    with pytest.raises(ExplainError) as error:
        explain(model, data.x[:2], method="exact_shapley", max_players=10)
    message = str(error.value)
    assert "13 players" in message and f"{2**13:,}" in message
    assert "kernel_shap" in message and "group" in message


def test_columns_grouping_joins_one_hot_columns():
    names = ("age", "sex=Female", "sex=Male", "race=A", "race=B", "race=C")
    players = resolve_players("columns", 6, names)
    assert players.names == ("age", "sex", "race")
    assert players.membership.sum(dim=1).tolist() == [1, 2, 3]


def test_bad_groups_name_the_problem():
    with pytest.raises(ExplainError, match="no feature named 'height'"):
        resolve_players([["age", "height"]], 2, ("age", "weight"))
    with pytest.raises(ExplainError, match="more than one group"):
        resolve_players([[0, 1], [1]], 2)
    with pytest.raises(ExplainError, match="needs image data"):
        resolve_players("patches:2", 16)


def test_patches_group_image_pixels():
    players = resolve_players("patches:2", 16, image_shape=(1, 4, 4))
    assert players.count == 4
    assert torch.nonzero(players.membership[0]).flatten().tolist() == [0, 1, 4, 5]
    assert math.isclose(float(players.membership.sum()), 16)


def test_first_layer_factorization_equals_masked_inputs():
    """The fast path (first linear layer once per player) computes the same values."""
    model, data = trained_mlp("wine")
    x = data.x[:9]
    function = ClassOutput(model, (13,))
    assert function.split_first_linear() is not None
    players = resolve_players([[0, 1, 2], [3], [5, 6, 7, 8], [9, 12]], 13)  # 4, 10, 11 unowned
    target = function(x).argmax(dim=1)
    baseline = data.x[data.splits["train"]].mean(dim=0)
    fast = exact_shapley(function, x, baseline, target, players)
    generic = exact_shapley(function, x, baseline, target, players, factorize=False)
    assert torch.allclose(fast, generic, atol=1e-6)
