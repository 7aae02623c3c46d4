"""The Agarwal et al. 2018 reproduction (quick mode) and the fairness examples run."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

import paralab
from paralab.spec import ExperimentSpec

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.mark.data
@pytest.mark.slow
def test_exponentiated_gradient_cuts_compas_disparity_as_the_paper_reports(
    data_root, tmp_path, monkeypatch
) -> None:
    """The pieces of the reproduction on COMPAS, epsilon 0.01 (the full paper and its quick
    mode both take minutes: `paralab reproduce agarwal2018_reductions [--quick]`)."""
    monkeypatch.chdir(tmp_path)  # the plot goes to runs/papers/... under the working folder
    path = REPOSITORY / "papers/agarwal2018_reductions/reproduce.py"
    spec = importlib.util.spec_from_file_location("agarwal2018_reproduce", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    ours = script.reproduce(quick=True, datasets=("compas",), epsilons=(0.01,))
    base, fair = "compas/unmitigated", "compas/eg_eps=0.01"
    assert ours[f"{base}/violation"] > 0.1  # the paper's COMPAS baseline is clearly unfair
    assert ours[f"{fair}/violation"] < ours[f"{base}/violation"] / 3
    assert ours[f"{fair}/violation"] < 0.035  # epsilon 0.01 plus generalization slack
    assert ours[f"{fair}/error"] < ours[f"{base}/error"] + 0.04  # at a small cost in error
    assert (tmp_path / "runs/papers/agarwal2018_reductions/tradeoff.png").stat().st_size > 0


def test_the_synthetic_example_spec_runs() -> None:
    spec = ExperimentSpec.from_toml(REPOSITORY / "examples/fairness_audit.toml").to_dict()
    spec.update(output=None, device="cpu")
    spec["protocol"] = {**spec["protocol"], "epochs": 2}
    spec["dataset"] = {**spec["dataset"], "n": 800}
    spec["auditors"] = [{"name": "fairness", "bootstrap": 20, "plots": False}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = paralab.run(spec)
    assert result.status == "completed"
    assert "test/demographic_parity_difference" in result.metrics
    assert len(result.audits["fairness"]["history"]) == 2


def test_the_compas_example_spec_is_valid() -> None:
    spec = ExperimentSpec.from_toml(REPOSITORY / "examples/fairness_compas_mitigation.toml")
    spec.validate(paralab.get_registry())
    assert spec.method.options["difference_bound"] == 0.02
