"""The two paper reproductions, piece by piece (the full runs take about a minute; see
``paralab reproduce sundararajan2017_ig --quick`` and ``lundberg2017_shap --quick``)."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import torch

from paralab.papers import find_papers_dir
from tests.explain_helpers import trained_mlp


def _module(paper: str):
    path = Path(find_papers_dir()) / paper / "reproduce.py"
    spec = importlib.util.spec_from_file_location(f"explain_paper_{paper}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _claimed(paper: str) -> set[str]:
    config = tomllib.loads((Path(find_papers_dir()) / paper / "paper.toml").read_text("utf-8"))
    names = {claim["metric"] for claim in config["claims"]}
    for ordering in config.get("orderings", []):
        names |= set(ordering["metrics"])
    return names


def test_integrated_gradients_completeness_error_shrinks_with_steps():
    ig = _module("sundararajan2017_ig")
    model, data = trained_mlp("wine")
    x = data.x[data.splits["test"][:10]]
    riemann = [ig.completeness_error(model, x, steps, "riemann_right") for steps in (5, 50, 300)]
    assert riemann[0] > riemann[1] > riemann[2]
    assert riemann[2] < 0.05  # the paper's 5%
    assert ig.completeness_error(model, x, 50, "gausslegendre") < 0.01  # the 1%
    produced = {f"{name}/{rule}_{steps}_steps" for name in ("digits", "breast_cancer")
                for rule in ("riemann", "gausslegendre") for steps in ig.STEPS}
    produced |= {"digits/test_accuracy", "breast_cancer/test_accuracy"}
    assert _claimed("sundararajan2017_ig") <= produced


def test_shapley_sampling_converges_and_groups_are_the_ten_measurements():
    shap_paper = _module("lundberg2017_shap")
    from paralab.data import load_dataset
    from paralab_explain.explainers import explain
    from paralab_explain.model_output import ClassOutput

    names = load_dataset("breast_cancer").feature_names
    groups = shap_paper.measurement_groups(names)
    assert len(groups) == 10 and groups["radius"] == ["mean radius", "radius error",
                                                      "worst radius"]
    model, data = trained_mlp("wine")
    x = data.x[data.splits["test"][:3]]
    exact = explain(model, x, method="exact_shapley", groups=6)
    function = ClassOutput(model, (13,))
    errors = [
        float((shap_paper.shapley_sampling(function, x, exact.baseline, exact.target,
                                           exact.players, budget) - exact.values).abs().mean())
        for budget in (14, 7 * 400)
    ]
    assert errors[1] < errors[0] and errors[1] < 0.1 * float(exact.values.abs().mean()) + 1e-4
    # every permutation estimate is efficient: it sums to f(x) - f(baseline) exactly
    one = shap_paper.shapley_sampling(function, x, exact.baseline, exact.target, exact.players, 7)
    assert torch.allclose(one.sum(1), exact.values.sum(1), atol=1e-5)
    produced = {f"{m}/error_{n}" for m in ("kernel_shap", "shapley_sampling")
                for n in shap_paper.SAMPLES} | {"kernel_shap/max_abs_error_all_coalitions"}
    assert _claimed("lundberg2017_shap") <= produced
