"""Batched integrated gradients: parity with Captum, completeness, and the clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from paralab_explain.errors import ExplainError
from paralab_explain.explainers import explain
from paralab_explain.gradients import quadrature
from paralab_explain.model_output import ClassOutput
from tests.explain_helpers import linear_model, trained_mlp


@pytest.mark.parametrize("integration", ["gausslegendre", "riemann_trapezoid", "riemann_middle"])
def test_integrated_gradients_match_captum(integration):
    from captum.attr import IntegratedGradients

    model, data = trained_mlp("wine")
    x = data.x[data.splits["test"][:10]]
    reference = data.x[data.splits["train"]]
    ours = explain(model, x, method="integrated_gradients", steps=32, integration=integration,
                   baseline="mean", reference=reference)
    function = ClassOutput(model, (13,))
    theirs = IntegratedGradients(function).attribute(
        x, baselines=ours.baseline.unsqueeze(0), target=ours.target, n_steps=32,
        method=integration,
    )
    assert torch.allclose(ours.values, theirs.float(), atol=1e-6, rtol=1e-4)


def test_completeness_holds_with_enough_steps():
    """Sundararajan et al. 2017: attributions sum to f(x) - f(baseline)."""
    model, data = trained_mlp("wine")
    x = data.x[data.splits["test"][:20]]
    function = ClassOutput(model, (13,))
    gaps = []
    for steps in (4, 64):
        attribution = explain(model, x, method="integrated_gradients", steps=steps)
        full = function.target_values(x, attribution.target)
        empty = function.target_values(torch.zeros_like(x), attribution.target)
        gaps.append(float(((attribution.values.sum(1) - (full - empty)).abs()).max()))
    assert gaps[1] < 1e-4
    assert gaps[1] < gaps[0]


def test_linear_model_integrated_gradients_are_exact():
    weights = torch.tensor([2.0, -1.0, 0.5])
    model = linear_model(weights)
    x = torch.tensor([[1.0, 2.0, 3.0]])
    attribution = explain(model, x, method="integrated_gradients", target=1, output="logit",
                          steps=2, integration="trapezoid")
    assert attribution.values[0].tolist() == pytest.approx([2.0, -2.0, 1.5], abs=1e-6)


def test_quadrature_weights():
    for method in ("gausslegendre", "trapezoid"):
        alphas, weights = quadrature(10, method)
        assert weights.sum() == pytest.approx(1.0)
        assert alphas.min() >= 0 and alphas.max() <= 1
    # Captum's trapezoid rule: weights sum to 1 - 1/steps (kept for parity)
    assert quadrature(10, "riemann_trapezoid")[1].sum() == pytest.approx(0.9)
    with pytest.raises(ExplainError, match="valid: gausslegendre"):
        quadrature(10, "simpson")


@pytest.mark.parametrize("method", ["saliency", "deeplift", "gradient_shap"])
def test_captum_methods_run_on_flat_and_image_inputs(method):
    model, data = trained_mlp("digits", hidden=(16,), epochs=30)
    x = data.x[:4]
    attribution = explain(model, x, method=method, reference=data.x[:50], groups="patches:4",
                          image_shape=data.info.image_shape, steps=5)
    assert attribution.values.shape == (4, 4)
    assert attribution.features.shape == (4, 64)
    assert torch.isfinite(attribution.values).all()
    # the patch attribution is the sum of its pixels' attributions
    assert torch.allclose(attribution.values[:, 0],
                          attribution.features[:, [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19,
                                                   24, 25, 26, 27]].sum(1), atol=1e-5)


def test_deeplift_is_complete_on_a_relu_network():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(6, 5)
    attribution = explain(model, x, method="deeplift", output="logit")
    function = ClassOutput(model, (5,), "logit")
    difference = function.target_values(x, attribution.target) - function.target_values(
        torch.zeros_like(x), attribution.target)
    assert torch.allclose(attribution.values.sum(1), difference, atol=1e-5)


class _Thresholded(nn.Module):
    """A model whose output is a step function of its inputs: no gradient reaches x."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        votes = (x > 0).float().sum(dim=1, keepdim=True)
        return torch.cat([votes, -votes], dim=1)


def test_non_differentiable_model_is_refused_for_gradient_methods():
    x = torch.randn(3, 4)
    with pytest.raises(ExplainError) as error:
        explain(_Thresholded(), x, method="integrated_gradients")
    assert "not differentiable" in str(error.value) and "exact_shapley" in str(error.value)
    # a forward-only method works on it
    values = explain(_Thresholded(), x, method="exact_shapley", output="logit").values
    assert values.shape == (3, 4)


def test_baseline_of_the_wrong_shape_is_refused():
    model, data = trained_mlp("wine")
    with pytest.raises(ExplainError) as error:
        explain(model, data.x[:2], baseline=torch.zeros(12))
    assert "(12,)" in str(error.value) and "13 features" in str(error.value)
    with pytest.raises(ExplainError, match="'median' unknown"):
        explain(model, data.x[:2], baseline="median")


def test_unknown_method_suggests_the_closest():
    model, data = trained_mlp("wine")
    with pytest.raises(ExplainError, match="did you mean 'saliency'"):
        explain(model, data.x[:2], method="salency")
