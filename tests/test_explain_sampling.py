"""KernelSHAP and LIME through their libraries: numbers on models whose answer is known."""

from __future__ import annotations

import pytest
import torch

import paralab
import paralab_explain
from paralab.testing import TinyDataPlugin, isolated_registry
from paralab_explain.explainers import explain
from tests.explain_helpers import linear_model


def test_lime_recovers_a_linear_models_weights_on_standardized_features():
    torch.manual_seed(0)
    weights = torch.tensor([1.5, -2.0, 0.0, 0.7])
    reference = torch.randn(400, 4) * torch.tensor([1.0, 2.0, 0.5, 3.0])
    x = torch.randn(3, 4)
    attribution = explain(linear_model(weights), x, method="lime", target=1, output="logit",
                          reference=reference, samples=2000)
    expected = weights * reference.double().std(dim=0).float()  # lime scales by training std
    assert attribution.values.shape == (3, 4)
    assert torch.allclose(attribution.values, expected.expand(3, 4), atol=0.05, rtol=0.05)


def test_kernel_shap_on_a_linear_model_is_weight_times_difference():
    weights = torch.tensor([1.0, -1.0, 2.0, 0.5, -0.5])
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(3))
    attribution = explain(linear_model(weights), x, method="kernel_shap", target=1,
                          output="logit", samples=2**5)
    assert torch.allclose(attribution.values, weights * x, atol=1e-5)


def test_kernel_shap_and_lime_as_auditor_methods():
    registry = isolated_registry(("paralab_tiny", TinyDataPlugin()),
                                 ("paralab_explain", paralab_explain))
    spec = {"dataset": "paralab_tiny", "model": {"name": "mlp", "hidden": [16]},
            "protocol": {"name": "supervised", "epochs": 1}, "output": None, "device": "cpu",
            "auditors": [{"name": "attributions", "method": "kernel_shap", "rows": 4,
                          "groups": 4, "samples": 16},
                         {"name": "faithfulness", "methods": ["lime"], "rows": 4,
                          "samples": 200, "sensitivity": False}]}
    result = paralab.run(spec, registry=registry)
    audits = result.phases[-1]["audits"]
    assert audits["attributions/test"]["completeness_relative_gap"] < 1e-4  # KernelSHAP is efficient
    lime = audits["faithfulness/test"]["lime"]
    assert "infidelity" in lime and 0 <= lime["deletion_auc"] <= 1


def test_quantum_classifier_of_paralab_quantum_is_explained():
    """Any torch model a run trains: paralab_quantum's vqc on its native simulator."""
    from paralab.host import get_registry

    registry = get_registry()
    if "vqc" not in registry.components["model"]:
        pytest.skip("paralab_quantum's vqc model is not installed")
    spec = {"dataset": "iris", "model": "vqc", "output": None, "device": "cpu",
            "protocol": {"name": "supervised", "epochs": 1}, "method": {"name": "adam", "lr": 0.05},
            "auditors": [{"name": "attributions", "method": "integrated_gradients", "rows": 8,
                          "steps": 16},
                         {"name": "faithfulness", "methods": ["exact_shapley", "saliency"],
                          "rows": 8, "perturbations": 2}]}
    result = paralab.run(spec, registry=registry)
    audits = result.phases[-1]["audits"]
    assert audits["attributions/test"]["completeness_relative_gap"] < 0.01
    assert len(audits["attributions/test"]["importance"]) == 4
    assert audits["faithfulness/test"]["exact_shapley"]["completeness_relative_gap"] < 1e-4
