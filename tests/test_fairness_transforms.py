"""Pre-processing as dataset transforms: ``decorrelated`` equals fairlearn's
CorrelationRemover and ``reweighed``'s weights equal AIF360's Reweighing, both computed here."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.preprocessing import CorrelationRemover

import paralab
from tests.fairness_helpers import fairness_registry

BASE = {"n": 1000, "bias": 1.5, "proxy": 1.5}


def load(name: str, **options):
    with fairness_registry():
        return paralab.load_dataset(name, **options)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_decorrelated_inputs_equal_fairlearns_correlation_remover(alpha: float) -> None:
    base = load("biased_synthetic", **BASE)
    ours = load("decorrelated", base_options=BASE, alpha=alpha)
    names = list(base.feature_names)
    kept = [i for i, n in enumerate(names) if not n.startswith(("group=", "age_band="))]
    assert list(ours.feature_names) == [names[i] for i in kept]
    groups = np.concatenate([np.eye(2)[base.features["group"].numpy()],
                             np.eye(3)[base.features["age_band"].numpy()]], axis=1)
    x = np.concatenate([base.x.numpy()[:, kept].astype(np.float64), groups], axis=1)
    sensitive_ids = list(range(len(kept), x.shape[1]))
    train = base.splits["train"].numpy()
    remover = CorrelationRemover(sensitive_feature_ids=sensitive_ids, alpha=alpha).fit(x[train])
    expected = remover.transform(x)
    assert ours.x.shape == expected.shape
    assert np.max(np.abs(ours.x.numpy() - expected)) < 1e-5
    assert ours.sensitive == base.sensitive and ours.splits.keys() == base.splits.keys()


def test_decorrelation_removes_the_proxys_group_signal() -> None:
    base = load("biased_synthetic", **BASE)
    ours = load("decorrelated", base_options=BASE)
    train = base.splits["train"].numpy()
    group = base.features["group"].numpy()[train].astype(float)
    before = np.corrcoef(base.x.numpy()[train, 0], group)[0, 1]
    after = np.corrcoef(ours.x.numpy()[train, 0], group)[0, 1]
    assert abs(before) > 0.4  # x0 is the proxy
    assert abs(after) < 1e-5


def test_reweighing_weights_equal_aif360s() -> None:
    logging.getLogger().setLevel(logging.ERROR)
    datasets = pytest.importorskip("aif360.datasets")
    preprocessing = pytest.importorskip("aif360.algorithms.preprocessing")
    base = load("biased_synthetic", **BASE)
    ours = load("reweighed", base_options=BASE, sensitive="group")
    train = base.splits["train"].numpy()
    frame = pd.DataFrame({"label": base.y.numpy()[train],
                          "group": base.features["group"].numpy()[train]})
    data = datasets.BinaryLabelDataset(df=frame, label_names=["label"],
                                       protected_attribute_names=["group"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformed = preprocessing.Reweighing(
            unprivileged_groups=[{"group": 1}], privileged_groups=[{"group": 0}]
        ).fit_transform(data)
    weights = ours.features["reweighing_weight"].numpy()[train]
    assert np.max(np.abs(weights - transformed.instance_weights)) < 1e-12


def test_the_redrawn_train_split_makes_group_and_label_independent() -> None:
    base = load("biased_synthetic", **BASE)
    ours = load("reweighed", base_options=BASE)  # both declared features: six groups
    y, group = base.y.numpy(), base.features["group"].numpy()

    def base_rates(rows: np.ndarray) -> list[float]:
        return [float(y[rows][group[rows] == g].mean()) for g in (0, 1)]

    before = base_rates(base.splits["train"].numpy())
    after = base_rates(ours.splits["train"].numpy())
    assert before[0] - before[1] > 0.3
    assert abs(after[0] - after[1]) < 0.02
    assert abs(len(ours.splits["train"]) - len(base.splits["train"])) <= 12  # rounding per cell
    assert torch.equal(ours.splits["test"], base.splits["test"])
    # Different seeds draw different rows, the same seed the same ones.
    again = load("reweighed", base_options=BASE, seed=0)
    other = load("reweighed", base_options=BASE, seed=1)
    assert torch.equal(again.splits["train"], ours.splits["train"])
    assert not torch.equal(other.splits["train"], ours.splits["train"])


def test_a_model_trained_on_the_reweighed_split_is_fairer() -> None:
    def disparity(dataset: dict) -> float:
        with fairness_registry():
            result = paralab.run({
                "dataset": dataset, "model": {"name": "mlp", "hidden": [16]},
                "protocol": {"name": "supervised", "epochs": 4, "batch_size": 64},
                "method": {"name": "adam", "lr": 0.02}, "device": "cpu", "output": None,
                "auditors": [{"name": "fairness", "bootstrap": 0, "sensitive": "group"}]})
        return result.phases[-1]["audits"]["fairness/test"]["group"]["disparities"][
            "demographic_parity_difference"]

    plain = disparity({"name": "biased_synthetic", **BASE})
    fair = disparity({"name": "reweighed", "base_options": BASE, "sensitive": "group"})
    assert plain > 0.3
    assert fair < plain / 2


@pytest.mark.parametrize(("dataset", "expected"), [
    ({"name": "reweighed", "base": "reweighed"}, "base must be another dataset"),
    ({"name": "decorrelated", "sensitive": "race"}, "sensitive names ['race']"),
    ({"name": "decorrelated", "alpha": 1.5}, "alpha"),
    ({"name": "reweighed", "split": "validation"}, "split = 'validation'"),
])
def test_bad_transform_options_are_spec_errors(dataset, expected) -> None:
    with fairness_registry(), pytest.raises(paralab.SpecError) as caught:
        paralab.run({"dataset": dataset, "model": "mlp", "output": None,
                     "protocol": {"name": "supervised", "epochs": 1}})
    assert expected in str(caught.value)
