"""The counterfactual flip test: a model deciding by the attribute flips every decision, one
ignoring it flips none, and a trained model's flips equal a recomputation by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import paralab
from paralab import host
from paralab.testing import check_plugin
from paralab_fairness.counterfactual import counterfactual_flips, sensitive_columns
from tests.fairness_helpers import fairness_registry

RUN = {
    "dataset": {"name": "biased_synthetic", "n": 1200, "bias": 1.5},
    "model": {"name": "mlp", "hidden": [16]},
    "protocol": {"name": "supervised", "epochs": 3, "batch_size": 128},
    "method": {"name": "adam", "lr": 0.02},
    "device": "cpu",
    "output": None,
}


def data(**options):
    with fairness_registry():
        return paralab.load_dataset("biased_synthetic", n=600, **options)


def linear_on(dataset, column: str, weight: float) -> torch.nn.Module:
    """Two logits; class 1's is ``weight`` times one input column (the rest weigh 0)."""
    model = torch.nn.Linear(dataset.x.shape[1], 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.weight[1, list(dataset.feature_names).index(column)] = weight
        model.bias[1] = -weight / 2.0
    return model


def flips_of(model, dataset, feature="group"):
    columns = sensitive_columns(dataset, feature, "test")
    return counterfactual_flips(model, dataset.x, dataset.features[feature], columns,
                                labels=dataset.categories[feature])


def test_a_model_deciding_by_the_group_flips_every_decision() -> None:
    dataset = data()
    result = flips_of(linear_on(dataset, "group=majority", 10.0), dataset)
    assert result["groups"] == ["majority", "minority"]
    assert result["flip_rate"] == [1.0, 1.0]
    assert result["overall_flip_rate"] == 1.0
    assert result["count"] == [int((dataset.features["group"] == g).sum()) for g in (0, 1)]
    # Majority rows moved to the minority lose the positive decision's probability.
    change = result["probability_change_to"]
    assert change[0][1] < -0.9 and change[1][0] > 0.9
    assert np.isnan(change[0][0]) and np.isnan(result["flip_rate_to"][1][1])


def test_a_model_ignoring_the_group_flips_nothing_even_through_the_proxy() -> None:
    dataset = data()
    result = flips_of(linear_on(dataset, "x0", 3.0), dataset)  # x0 leaks the group
    assert result["flip_rate"] == [0.0, 0.0]
    assert result["probability_change_to"][0][1] == 0.0
    # Three-valued feature: flips only towards the band the model reads.
    bands = flips_of(linear_on(dataset, "age_band=young", 10.0), dataset, "age_band")
    assert bands["groups"] == list(dataset.categories["age_band"])
    young = bands["groups"].index("young")
    others = [g for g in range(3) if g != young]
    assert all(bands["flip_rate_to"][g][young] == 1.0 for g in others)
    assert bands["flip_rate_to"][others[0]][others[1]] == 0.0
    assert bands["flip_rate"][young] == 1.0


def test_the_auditor_equals_flipping_the_columns_by_hand() -> None:
    with fairness_registry() as (_, probe):
        result = paralab.run({**RUN, "auditors": [{"name": "fairness", "bootstrap": 0,
                                                  "counterfactual": True}]})
    audit = result.phases[-1]["audits"]["fairness/test"]["counterfactual"]
    assert set(audit) == {"group", "age_band"}
    predictions = probe.evaluations[-1].predictions
    dataset, model = predictions.dataset, predictions.extras["model"]
    x = dataset.x[predictions.indices].clone()
    names = list(dataset.feature_names)
    majority, minority = names.index("group=majority"), names.index("group=minority")
    swapped = x.clone()
    swapped[:, [majority, minority]] = x[:, [minority, majority]]  # two groups: swap the bits
    with torch.no_grad():
        before = model(x).argmax(-1)
        after = model(swapped).argmax(-1)
    group = predictions.feature("group")
    expected = [float((before != after)[group == g].double().mean()) for g in (0, 1)]
    assert audit["group"]["flip_rate"] == pytest.approx(expected, abs=1e-12)
    assert 0.0 < audit["group"]["overall_flip_rate"] < 1.0  # the MLP uses the group, partly


@pytest.mark.parametrize(("change", "expected"), [
    ({"dataset": {"name": "biased_synthetic", "n": 400, "drop_sensitive": True}},
     "do not one-hot encode 'group'"),
    ({"dataset": "biased_synthetic", "model": None, "protocol": {"name": "estimator"},
      "method": "unmitigated"}, "protocol 'estimator' trains none"),
])
def test_a_flip_test_that_cannot_run_is_a_spec_error(change, expected) -> None:
    spec = {**RUN, **change, "auditors": [{"name": "fairness", "counterfactual": True}]}
    if spec["model"] is None:
        spec.pop("model")
    with fairness_registry(), pytest.raises(paralab.SpecError) as caught:
        paralab.run(spec)
    assert expected in str(caught.value)
    assert "auditors[0]" in str(caught.value)


def test_the_plugin_still_passes_the_conformance_kit() -> None:
    report = check_plugin("paralab_fairness", registry=host.make_registry().load())
    assert report.passed, report.render()
