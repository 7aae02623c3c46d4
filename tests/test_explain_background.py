"""Background distributions: SHAP values as expectations over sampled or k-means background
rows, against shap's own ExactExplainer and KernelExplainer computed here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import paralab
import paralab_explain
from paralab.testing import TinyDataPlugin, isolated_registry
from paralab_explain.background import kmeans, resolve_background
from paralab_explain.errors import ExplainError
from paralab_explain.explainers import explain
from paralab_explain.model_output import ClassOutput
from tests.explain_helpers import random_mlp, trained_mlp

shap = pytest.importorskip("shap")


def _numpy_output(function: ClassOutput, column: int):
    def output(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            values = function(torch.as_tensor(rows, dtype=torch.float32))
        return values[:, column].double().numpy()

    return output


def test_kmeans_summary_equals_shap_kmeans():
    _, data = trained_mlp("wine")
    train = data.x[data.splits["train"]]
    ours = kmeans(train, 6)
    theirs = shap.kmeans(train.double().numpy(), 6)
    assert np.abs(ours.rows.double().numpy() - theirs.data).max() < 1e-6
    assert np.allclose(ours.weights.double().numpy(), theirs.weights / theirs.weights.sum(),
                       atol=1e-7)
    assert len(set(ours.weights.tolist())) > 1  # cluster sizes differ: a weighted summary


def test_exact_shapley_over_a_sampled_background_equals_shap_exact_explainer():
    model = random_mlp(8, 3)
    torch.manual_seed(1)
    train, x = torch.randn(200, 8), torch.randn(4, 8)
    background = resolve_background("sample:25", train, seed=3)
    assert len(background) == 25
    ours = explain(model, x, method="exact_shapley", background=background, target=2,
                   output="logit")
    function = ClassOutput(model, (8,), "logit")
    masker = shap.maskers.Independent(background.rows.double().numpy(), max_samples=100)
    theirs = shap.ExactExplainer(_numpy_output(function, 2), masker)(x.double().numpy()).values
    assert np.abs(ours.values.double().numpy() - theirs).max() < 1e-5
    # ... and it is not the single-baseline value at the background's mean
    at_mean = explain(model, x, method="exact_shapley", baseline=background.rows.mean(0),
                      target=2, output="logit")
    assert float((at_mean.values - ours.values).abs().max()) > 1e-3


def test_exact_shapley_over_a_kmeans_background_equals_kernel_explainer():
    model, data = trained_mlp("wine")
    train = data.x[data.splits["train"]]
    x = data.x[data.splits["test"][:3]]
    ours = explain(model, x, method="exact_shapley", background="kmeans:6", reference=train,
                   target=0)
    function = ClassOutput(model, (13,))
    explainer = shap.KernelExplainer(_numpy_output(function, 0),
                                     shap.kmeans(train.double().numpy(), 6))
    theirs = explainer.shap_values(x.double().numpy(), nsamples=2**13, l1_reg=False, silent=True)
    assert np.abs(ours.values.double().numpy() - theirs).max() < 1e-5
    # efficiency against the weighted background: sum = f(x) - E_b f(b)
    full = function.target_values(x, ours.target)
    expected = ours.reference_weights @ function(ours.references)[:, 0].detach()
    assert torch.allclose(ours.values.sum(dim=1), full - expected, atol=1e-5)
    assert float(expected) == pytest.approx(float(np.asarray(explainer.expected_value)), abs=1e-6)


def test_kernel_shap_with_a_background_and_groups_equals_exact():
    model, data = trained_mlp("wine")
    train = data.x[data.splits["train"]]
    x = data.x[data.splits["test"][:3]]
    options = dict(background="sample:12", reference=train, groups=6, seed=5)
    exact = explain(model, x, method="exact_shapley", **options).values
    kernel = explain(model, x, method="kernel_shap", samples=2**6, **options).values
    assert torch.allclose(exact, kernel, atol=1e-5)


def test_background_value_is_the_weighted_mean_of_single_baseline_values():
    """Linearity of the Shapley value in the game (fails for an estimator that ignores rows)."""
    model = random_mlp(6, 2, seed=4)
    torch.manual_seed(2)
    rows, x = torch.randn(3, 6), torch.randn(5, 6)
    weights = torch.tensor([0.5, 0.3, 0.2])
    from paralab_explain.background import Background

    ours = explain(model, x, method="exact_shapley", background=Background(rows, weights),
                   target=1).values
    mixed = sum(float(w) * explain(model, x, method="exact_shapley", baseline=row,
                                   target=1).values for row, w in zip(rows, weights))
    assert torch.allclose(ours, mixed, atol=1e-6)


def test_bad_background_names_the_valid_forms():
    model = random_mlp(4, 2)
    for bad, needle in (("median:3", "unknown"), ("kmeans:x", "whole number"),
                        ("sample:0", "at least 1")):
        with pytest.raises(ExplainError, match=needle):
            explain(model, torch.randn(2, 4), method="exact_shapley", background=bad,
                    reference=torch.randn(10, 4))
    with pytest.raises(ExplainError, match="needs reference rows"):
        explain(model, torch.randn(2, 4), method="exact_shapley", background="kmeans:2")
    with pytest.raises(ExplainError, match="more centres"):
        explain(model, torch.randn(2, 4), method="exact_shapley", background="kmeans:20",
                reference=torch.randn(10, 4))


def _registry():
    return isolated_registry(("paralab_tiny", TinyDataPlugin()),
                             ("paralab_explain", paralab_explain))


def test_auditor_with_a_kmeans_background(tmp_path):
    spec = {"dataset": "paralab_tiny", "model": {"name": "mlp", "hidden": [16]},
            "protocol": {"name": "supervised", "epochs": 1}, "output": None, "device": "cpu",
            "auditors": [{"name": "attributions", "method": "exact_shapley", "rows": 6,
                          "groups": 4, "background": "kmeans:5"}]}
    result = paralab.run(spec, registry=_registry())
    audit = result.phases[-1]["audits"]["attributions/test"]
    assert audit["background_rows"] == 5
    assert audit["completeness_relative_gap"] < 1e-4  # efficient against the weighted background
    bad = dict(spec, output=str(tmp_path))
    bad["auditors"] = [dict(spec["auditors"][0], background="median:3")]
    with pytest.raises(paralab.SpecError, match="auditors\\[0\\].*background"):
        paralab.run(bad, registry=_registry())
    assert list(tmp_path.iterdir()) == []
