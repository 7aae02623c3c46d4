"""Permutation-sampling Shapley values: standard errors that cover the exact values, antithetic
sampling, stopping at a target error, and shap.PermutationExplainer beyond 16 players."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import paralab
import paralab_explain
from paralab.testing import TinyDataPlugin, isolated_registry
from paralab_explain.background import resolve_background
from paralab_explain.errors import ExplainError
from paralab_explain.explainers import explain
from paralab_explain.model_output import ClassOutput
from tests.explain_helpers import random_mlp, trained_mlp


def _ten_players():
    model, data = trained_mlp("wine")
    x = data.x[data.splits["test"][:30]]
    options = dict(background="sample:8", reference=data.x[data.splits["train"]], groups=10,
                   seed=1)
    exact = explain(model, x, method="exact_shapley", **options).values
    return model, x, options, exact


def test_standard_errors_cover_the_exact_values_on_ten_players():
    model, x, options, exact = _ten_players()
    sampled = explain(model, x, method="permutation_shapley", permutations=128, **options)
    assert sampled.values.shape == exact.shape == (30, 10)
    z = ((sampled.values - exact) / sampled.standard_error).flatten()
    within = {k: float((z.abs() <= k).float().mean()) for k in (1.0, 1.96, 3.0)}
    # 300 values against the normal rates 0.68 / 0.95 / 0.997: the error is neither hidden
    # (too few covered) nor inflated (nearly all within one error)
    assert 0.55 <= within[1.0] <= 0.8
    assert within[1.96] >= 0.88
    assert within[3.0] >= 0.97
    assert float(sampled.standard_error.mean()) < 0.2 * float(exact.abs().mean())
    assert sampled.permutations.tolist() == [128] * 30
    # four times the orders: half the error
    more = explain(model, x, method="permutation_shapley", permutations=512, **options)
    ratio = float(sampled.standard_error.mean() / more.standard_error.mean())
    assert 1.6 < ratio < 2.5
    assert float((more.values - exact).abs().mean()) < float((sampled.values - exact).abs().mean())


def test_every_estimate_is_efficient():
    model, x, options, exact = _ten_players()
    for antithetic in (True, False):
        sampled = explain(model, x[:5], method="permutation_shapley", permutations=8,
                          antithetic=antithetic, **options)
        assert torch.allclose(sampled.values.sum(dim=1), exact[:5].sum(dim=1), atol=1e-5)


class _Quadratic(nn.Module):
    """Logits ``[0, x A x + w x]``: a game with pairwise interactions only."""

    def __init__(self, features: int):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.a = nn.Parameter(torch.randn(features, features, generator=generator))
        self.w = nn.Parameter(torch.randn(features, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = torch.einsum("rf,fg,rg->r", x, self.a, x) + x @ self.w
        return torch.stack([torch.zeros_like(value), value], dim=1)


def test_antithetic_pairs_are_exact_for_pairwise_interactions():
    """Forward and reverse orders together give every pair's interaction exactly half to each
    player, so antithetic sampling has no variance on such a game; plain sampling has."""
    model = _Quadratic(12)
    x = torch.randn(4, 12, generator=torch.Generator().manual_seed(1))
    options = dict(target=1, output="logit", baseline=torch.zeros(12))
    exact = explain(model, x, method="exact_shapley", **options).values
    paired = explain(model, x, method="permutation_shapley", permutations=8, **options)
    plain = explain(model, x, method="permutation_shapley", permutations=8, antithetic=False,
                    **options)
    assert torch.allclose(paired.values, exact, atol=1e-4)
    assert float(paired.standard_error.max()) < 1e-4
    assert float((plain.values - exact).abs().max()) > 1e-2
    assert float(plain.standard_error.mean()) > 1e-2


def test_sampling_stops_at_the_target_error():
    model, x, options, exact = _ten_players()
    target = 0.01
    sampled = explain(model, x, method="permutation_shapley", permutations=2048,
                      target_error=target, **options)
    assert bool(sampled.converged.all())
    assert float(sampled.standard_error.max(dim=1).values.max()) <= target
    spent = sampled.permutations
    assert int(spent.max()) < 2048 and int(spent.min()) >= 4
    assert len(set(spent.tolist())) > 1  # each row stops on its own
    # an unreachable target spends the whole budget and says it did not converge
    capped = explain(model, x[:3], method="permutation_shapley", permutations=64,
                     target_error=1e-7, **options)
    assert not bool(capped.converged.any())
    assert capped.permutations.tolist() == [64] * 3


def test_too_few_permutations_for_an_error_is_refused():
    with pytest.raises(ExplainError, match="no standard error"):
        explain(random_mlp(4, 2), torch.randn(2, 4), method="permutation_shapley",
                permutations=3)


def test_means_equal_shap_permutation_explainer_beyond_sixteen_players():
    shap = pytest.importorskip("shap")
    players = 20
    model = random_mlp(players, 2, hidden=24, seed=3)
    generator = torch.Generator().manual_seed(0)
    train, x = torch.randn(300, players, generator=generator), torch.randn(2, players,
                                                                           generator=generator)
    background = resolve_background("sample:10", train, seed=0)
    orders = 200  # 100 forward-and-reverse pairs on both sides
    ours = explain(model, x, method="permutation_shapley", background=background,
                   permutations=orders, target=1, output="logit")
    function = ClassOutput(model, (players,), "logit")

    def output(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return function(torch.as_tensor(rows, dtype=torch.float32))[:, 1].double().numpy()

    masker = shap.maskers.Independent(background.rows.double().numpy())
    explainer = shap.PermutationExplainer(output, masker, seed=0)
    theirs = explainer(x.double().numpy(), max_evals=(orders // 2) * (2 * players + 1)).values
    difference = np.abs(theirs - ours.values.double().numpy())
    error = ours.standard_error.double().numpy()
    # the same estimator on both sides: the difference of two independent estimates has about
    # sqrt(2) times our standard error
    assert (difference <= 4.5 * np.sqrt(2) * error + 1e-6).all()
    assert difference.mean() < 0.1 * np.abs(theirs).mean()
    # both are efficient against the same background
    assert np.allclose(theirs.sum(axis=1), ours.values.double().numpy().sum(axis=1), atol=1e-4)


def test_permutation_shapley_as_an_auditor_method_on_many_players():
    registry = isolated_registry(("paralab_tiny", TinyDataPlugin()),
                                 ("paralab_explain", paralab_explain))
    spec = {"dataset": "digits", "model": {"name": "mlp", "hidden": [16]},
            "protocol": {"name": "supervised", "epochs": 1}, "output": None, "device": "cpu",
            "auditors": [{"name": "attributions", "method": "permutation_shapley", "rows": 4,
                          "background": "kmeans:4", "permutations": 64, "target_error": 0.5}]}
    result = paralab.run(spec, registry=registry)
    audit = result.phases[-1]["audits"]["attributions/test"]
    assert len(audit["importance"]) == 64  # 64 pixels, far beyond exact enumeration
    assert audit["completeness_relative_gap"] < 1e-4
    assert audit["converged"] == 1.0 and audit["standard_error_max"] <= 0.5
    assert 4 <= audit["permutations_mean"] < 64

