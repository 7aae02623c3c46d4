"""Disparate impact, average odds, generalised entropy and Theil indices equal AIF360's
``ClassificationMetric`` (computed here, in the test) on the same labels and predictions."""

from __future__ import annotations

import itertools
import logging
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import paralab
from paralab_fairness.table import FairnessWarning, fairness_table
from tests.fairness_helpers import fairness_registry

logging.getLogger().setLevel(logging.ERROR)  # aif360 logs its missing optional extras
aif360_datasets = pytest.importorskip("aif360.datasets")
aif360_metrics = pytest.importorskip("aif360.metrics")

TOLERANCE = 1e-12
ALPHAS = (0.5, 1.0, 2.0, 3.0)


def make_data(n: int, cardinalities: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = {f"s{i}": rng.integers(0, k, n) for i, k in enumerate(cardinalities)}
    lift = sum(0.07 * v for v in features.values())
    y = (rng.random(n) < 0.3 + lift).astype(int)
    y_pred = (rng.random(n) < 0.15 + lift + 0.4 * y).astype(int)
    return {"y": y, "y_pred": y_pred, **features}


def aif360_metric(data: dict[str, np.ndarray], names: list[str], privileged: dict | None,
                  unprivileged: dict | None):
    frame = pd.DataFrame({"label": data["y"], **{name: data[name] for name in names}})
    truth = aif360_datasets.BinaryLabelDataset(
        df=frame, label_names=["label"], protected_attribute_names=names,
        favorable_label=1, unfavorable_label=0)
    classified = truth.copy()
    classified.labels = data["y_pred"].reshape(-1, 1).astype(np.float64)
    return aif360_metrics.ClassificationMetric(
        truth, classified,
        unprivileged_groups=None if unprivileged is None else [unprivileged],
        privileged_groups=None if privileged is None else [privileged])


def ours(data: dict[str, np.ndarray], names: list[str], **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessWarning)
        return fairness_table(torch.as_tensor(data["y"]), torch.as_tensor(data["y_pred"]),
                              {name: torch.as_tensor(data[name]) for name in names}, **options)


def test_two_groups_equal_aif360_with_the_privileged_group_as_reference() -> None:
    data = make_data(5_000, (2,), seed=1)
    metric = aif360_metric(data, ["s0"], privileged={"s0": 1}, unprivileged={"s0": 0})
    table = ours(data, ["s0"], reference="1", alpha=2.0)
    assert table.reference == "1"
    assert table.disparities["disparate_impact_ratio"] == pytest.approx(
        metric.disparate_impact(), abs=TOLERANCE)
    assert table.disparities["average_odds_difference"] == pytest.approx(
        metric.average_odds_difference(), abs=TOLERANCE)
    # AIF360's two-group between-group index, which its privileged/unprivileged split defines.
    assert table.disparities["between_group_generalized_entropy_index"] == pytest.approx(
        metric.between_group_generalized_entropy_index(alpha=2), abs=TOLERANCE)
    assert table.disparities["between_group_theil_index"] == pytest.approx(
        metric.between_group_theil_index(), abs=TOLERANCE)
    assert table.metrics["base_rate"] == pytest.approx(
        [metric.base_rate(privileged=False), metric.base_rate(privileged=True)], abs=TOLERANCE)
    # The other way round the ratio is above 1 and the odds difference changes sign.
    flipped = ours(data, ["s0"], reference="0")
    assert flipped.disparities["disparate_impact_ratio"] == pytest.approx(
        1.0 / metric.disparate_impact(), abs=1e-9)
    assert flipped.disparities["average_odds_difference"] == pytest.approx(
        -metric.average_odds_difference(), abs=TOLERANCE)
    assert flipped.set_by["average_odds_difference"] == ["1", "0"]


@pytest.mark.parametrize("cardinalities", [(4,), (2, 3)])
def test_every_group_against_the_reference_equals_aif360(cardinalities: tuple[int, ...]) -> None:
    data = make_data(6_000, cardinalities, seed=2)
    names = [f"s{i}" for i in range(len(cardinalities))]
    reference = tuple(0 for _ in names)
    label = " & ".join(str(code) for code in reference)
    table = ours(data, names, reference=label)
    assert table.reference == label
    for position, group in enumerate(table.groups):
        codes = tuple(int(part) for part in group)
        if codes == reference:
            assert table.metrics["disparate_impact"][position] == 1.0
            assert table.metrics["average_odds_difference"][position] == 0.0
            continue
        metric = aif360_metric(data, names, privileged=dict(zip(names, reference)),
                               unprivileged=dict(zip(names, codes)))
        assert table.metrics["disparate_impact"][position] == pytest.approx(
            metric.disparate_impact(), abs=TOLERANCE), group
        assert table.metrics["average_odds_difference"][position] == pytest.approx(
            metric.average_odds_difference(), abs=TOLERANCE), group
    # The disparities are the worst group's: the smallest ratio, the largest odds gap in size.
    others = [p for p, g in enumerate(table.groups) if tuple(int(v) for v in g) != reference]
    ratios = [table.metrics["disparate_impact"][p] for p in others]
    odds = [table.metrics["average_odds_difference"][p] for p in others]
    assert table.disparities["disparate_impact_ratio"] == min(ratios)
    assert table.disparities["average_odds_difference"] == max(odds, key=abs)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_entropy_indices_overall_within_and_between_groups_equal_aif360(alpha: float) -> None:
    data = make_data(4_000, (3, 2), seed=3)
    names = ["s0", "s1"]
    table = ours(data, names, alpha=alpha)
    whole = aif360_metric(data, names, privileged=None, unprivileged=None)
    assert table.overall["generalized_entropy_index"] == pytest.approx(
        whole.generalized_entropy_index(alpha=alpha), abs=TOLERANCE)
    assert table.overall["theil_index"] == pytest.approx(whole.theil_index(), abs=TOLERANCE)
    # Between all (intersectional) groups: every row's benefit replaced by its group's mean.
    all_groups = aif360_metric(data, names, privileged={"s0": 0, "s1": 0},
                               unprivileged={"s0": 1, "s1": 1})
    assert table.disparities["between_group_generalized_entropy_index"] == pytest.approx(
        all_groups.between_all_groups_generalized_entropy_index(alpha=alpha), abs=TOLERANCE)
    # Within each group: AIF360's index over that group's rows alone.
    for position, group in enumerate(table.groups):
        inside = np.logical_and.reduce([data[n] == int(v) for n, v in zip(names, group)])
        subset = {key: values[inside] for key, values in data.items()}
        metric = aif360_metric(subset, names, privileged=None, unprivileged=None)
        assert table.metrics["generalized_entropy_index"][position] == pytest.approx(
            metric.generalized_entropy_index(alpha=alpha), abs=TOLERANCE), group
        assert table.metrics["theil_index"][position] == pytest.approx(
            metric.theil_index(), abs=TOLERANCE), group


def test_perfect_predictions_have_no_inequality_and_bias_has_some() -> None:
    data = make_data(2_000, (3,), seed=4)
    perfect = ours({**data, "y_pred": data["y"]}, ["s0"])
    assert perfect.overall["theil_index"] == 0.0
    assert perfect.disparities["between_group_theil_index"] == 0.0
    assert perfect.disparities["average_odds_difference"] == 0.0
    biased = ours(data, ["s0"])
    assert biased.overall["theil_index"] > 0.01
    assert biased.disparities["between_group_theil_index"] > 0.0


def test_the_default_reference_is_the_most_favoured_group() -> None:
    data = make_data(3_000, (3,), seed=5)
    table = ours(data, ["s0"])
    rates = table.metrics["selection_rate"]
    favoured = table.labels[int(np.argmax(rates))]
    assert table.reference == favoured
    assert table.disparities["disparate_impact_ratio"] == pytest.approx(
        table.disparities["demographic_parity_ratio"], abs=TOLERANCE)
    assert table.set_by["disparate_impact_ratio"][1] == favoured


def test_average_odds_interval_matches_a_row_resampling_bootstrap() -> None:
    """The Poisson bootstrap of the new disparities against the textbook bootstrap (numpy)."""
    data = make_data(4_000, (3,), seed=6)
    resamples = 1500
    table = ours(data, ["s0"], reference="0", bootstrap=resamples, seed=2)
    rng = np.random.default_rng(2)
    n = len(data["y"])
    odds, theil = [], []
    for _ in range(resamples):
        rows = rng.integers(0, n, n)
        y, p, s = data["y"][rows], data["y_pred"][rows], data["s0"][rows]
        tpr = np.array([p[(s == g) & (y == 1)].mean() for g in range(3)])
        fpr = np.array([p[(s == g) & (y == 0)].mean() for g in range(3)])
        gaps = 0.5 * ((tpr - tpr[0]) + (fpr - fpr[0]))[1:]
        odds.append(gaps[np.argmax(np.abs(gaps))])
        benefit = np.array([(1 + p - y)[s == g].mean() for g in range(3)])
        weights = np.bincount(s, minlength=3) / n
        ratio = benefit / (weights @ benefit)
        theil.append(float(weights @ (ratio * np.log(ratio))))
    for name, values in (("average_odds_difference", odds), ("between_group_theil_index", theil)):
        low, high = np.quantile(values, [0.025, 0.975])
        ours_low, ours_high = table.intervals[name]
        assert ours_low < table.disparities[name] < ours_high, name
        assert ours_high - ours_low == pytest.approx(high - low, rel=0.15), name
        assert ours_low == pytest.approx(low, abs=0.25 * (high - low)), name
        assert ours_high == pytest.approx(high, abs=0.25 * (high - low)), name


def test_an_absent_reference_is_nan_with_a_warning_never_a_number() -> None:
    data = make_data(1_000, (3,), seed=7)
    data["s0"] = np.where(data["s0"] == 2, 1, data["s0"])  # group 2 never occurs
    with pytest.warns(FairnessWarning, match=r"reference group '2' of s0 is not among"):
        table = fairness_table(torch.as_tensor(data["y"]), torch.as_tensor(data["y_pred"]),
                               {"s0": torch.as_tensor(data["s0"])},
                               categories={"s0": ["0", "1", "2"]}, reference="2", bootstrap=20)
    for name in ("disparate_impact_ratio", "average_odds_difference"):
        assert math.isnan(table.disparities[name])
        assert all(math.isnan(v) for v in table.intervals[name])
        assert table.set_by[name] == []
    assert table.reference == ""
    assert not math.isnan(table.disparities["demographic_parity_difference"])


@pytest.mark.parametrize("alpha", [0.0, -1.0, math.inf])
def test_alpha_must_be_positive_and_finite(alpha: float) -> None:
    data = make_data(200, (2,), seed=8)
    with pytest.raises(ValueError, match="alpha"):
        ours(data, ["s0"], alpha=alpha)


RUN = {
    "dataset": {"name": "biased_synthetic", "n": 1200, "bias": 1.5},
    "model": {"name": "mlp", "hidden": [16]},
    "protocol": {"name": "supervised", "epochs": 2, "batch_size": 128},
    "method": {"name": "adam", "lr": 0.02},
    "device": "cpu",
    "output": None,
}


def test_the_auditor_reports_them_against_the_named_reference_and_aif360_agrees() -> None:
    auditor = {"name": "fairness", "bootstrap": 30, "alpha": 3.0,
               "reference": {"group": "majority", "group*age_band": "majority & middle"}}
    with fairness_registry() as (_, probe):
        result = paralab.run({**RUN, "auditors": [auditor]})
    audit = result.phases[-1]["audits"]["fairness/test"]
    assert audit["group"]["reference"] == "majority"
    assert audit["group*age_band"]["reference"] == "majority & middle"
    assert audit["age_band"]["reference"] in audit["age_band"]["groups"]  # the default
    predictions = probe.evaluations[-1].predictions
    data = {"y": predictions.targets.numpy(), "y_pred": predictions.labels.numpy(),
            "group": predictions.feature("group").numpy()}
    metric = aif360_metric(data, ["group"], privileged={"group": 0}, unprivileged={"group": 1})
    disparities = audit["group"]["disparities"]
    assert disparities["disparate_impact_ratio"] == pytest.approx(
        metric.disparate_impact(), abs=TOLERANCE)
    assert disparities["average_odds_difference"] == pytest.approx(
        metric.average_odds_difference(), abs=TOLERANCE)
    whole = aif360_metric(data, ["group"], privileged=None, unprivileged=None)
    assert audit["group"]["overall"]["generalized_entropy_index"] == pytest.approx(
        whole.generalized_entropy_index(alpha=3), abs=TOLERANCE)
    low, high = audit["group"]["intervals"]["disparate_impact_ratio"]
    assert low < high


@pytest.mark.parametrize(("reference", "expected"), [
    ({"race": "White"}, "option reference names grouping 'race'"),
    ({"group": "middle"}, "reference['group'] = 'middle' is not a group of group"),
    ({"group*age_band": "majority"}, "is not a group of group*age_band; its groups: "
                                     "['majority & middle'"),
    ({"group": 3}, "it must be a group label"),
])
def test_a_bad_reference_is_a_spec_error_naming_the_valid_choices(reference, expected) -> None:
    with fairness_registry(), pytest.raises(paralab.SpecError) as caught:
        paralab.run({**RUN, "auditors": [{"name": "fairness", "reference": reference}]})
    assert expected in str(caught.value)
    assert "auditors[0]" in str(caught.value)


def test_a_bad_alpha_is_a_spec_error_before_anything_runs() -> None:
    with fairness_registry(), pytest.raises(paralab.SpecError, match=r"alpha.*must be > 0"):
        paralab.run({**RUN, "auditors": [{"name": "fairness", "alpha": 0}]})


def test_intersections_of_categories_are_the_reference_labels() -> None:
    # The labels the validation accepts are exactly the table's group labels.
    categories = {"a": ("x", "y"), "b": ("p", "q", "r")}
    expected = [" & ".join(pair) for pair in itertools.product(*categories.values())]
    rng = np.random.default_rng(9)
    a, b = rng.integers(0, 2, 600), rng.integers(0, 3, 600)
    table = fairness_table(torch.as_tensor(rng.integers(0, 2, 600)),
                           torch.as_tensor(rng.integers(0, 2, 600)),
                           {"a": torch.as_tensor(a), "b": torch.as_tensor(b)},
                           categories=categories, reference="y & q")
    assert table.labels == expected
    assert table.reference == "y & q"
