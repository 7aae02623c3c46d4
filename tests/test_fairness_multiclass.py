"""Multiclass fairness: one-vs-rest audits per class and their macro average equal
scikit-learn's macro averages and fairlearn's disparities of the binarized classes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
)
from sklearn.metrics import accuracy_score, precision_score, recall_score

import paralab
from paralab_fairness.multiclass import macro_table
from tests.fairness_helpers import fairness_registry

K = 4
TOLERANCE = 1e-12


def make_data(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 3, n)
    y = rng.integers(0, K, n)
    keep = rng.random(n) < 0.55 + 0.1 * s  # group 2 is predicted best
    y_pred = np.where(keep, y, rng.integers(0, K, n))
    return {"y": y, "y_pred": y_pred, "s": s}


def table_of(data: dict[str, np.ndarray], **options):
    return macro_table(torch.as_tensor(data["y"]), torch.as_tensor(data["y_pred"]),
                       {"s": torch.as_tensor(data["s"])}, K, **options)


def test_macro_rates_per_group_equal_scikit_learns_macro_averages() -> None:
    data = make_data(3_000, seed=0)
    table = table_of(data)
    labels = list(range(K))
    metrics = {
        "true_positive_rate": lambda t, p: recall_score(t, p, average="macro", labels=labels),
        "precision": lambda t, p: precision_score(t, p, average="macro", labels=labels),
        "accuracy": accuracy_score,
    }
    frame = MetricFrame(metrics=metrics, y_true=data["y"], y_pred=data["y_pred"],
                        sensitive_features=data["s"])
    for name in metrics:
        assert table.metrics[name] == pytest.approx(frame.by_group[name].tolist(),
                                                    abs=TOLERANCE), name
        assert table.overall[name] == pytest.approx(frame.overall[name], abs=TOLERANCE), name
    # Per class, the one-vs-rest recall of each group.
    for c in labels:
        per_class = [recall_score(data["y"][data["s"] == g] == c, data["y_pred"][data["s"] == g]
                                  == c) for g in range(3)]
        assert table.metrics[f"true_positive_rate|{c}"] == pytest.approx(per_class,
                                                                         abs=TOLERANCE)
    # A macro FPR written out: the mean over classes of each group's one-vs-rest FPR.
    fpr = [np.mean([np.mean(data["y_pred"][(data["s"] == g) & (data["y"] != c)] == c)
                    for c in labels]) for g in range(3)]
    assert table.metrics["false_positive_rate"] == pytest.approx(fpr, abs=TOLERANCE)


def test_macro_disparities_are_class_means_of_fairlearns_binarized_disparities() -> None:
    data = make_data(3_000, seed=1)
    table = table_of(data)
    expected = {"demographic_parity_difference": [], "equalized_odds_difference": []}
    for c in range(K):
        y, p = data["y"] == c, data["y_pred"] == c
        expected["demographic_parity_difference"].append(
            demographic_parity_difference(y, p, sensitive_features=data["s"]))
        expected["equalized_odds_difference"].append(
            equalized_odds_difference(y, p, sensitive_features=data["s"]))
    for name, values in expected.items():
        assert table.disparities[name] == pytest.approx(float(np.mean(values)), abs=TOLERANCE)
    assert table.variant == "macro" and table.key == "s|macro"


def test_macro_interval_matches_a_row_resampling_bootstrap() -> None:
    data = make_data(3_000, seed=2)
    resamples = 1000
    table = table_of(data, bootstrap=resamples, seed=4)
    rng = np.random.default_rng(4)
    n = len(data["y"])
    gaps = []
    for _ in range(resamples):
        rows = rng.integers(0, n, n)
        y, p, s = data["y"][rows], data["y_pred"][rows], data["s"][rows]
        per_class = []
        for c in range(K):
            tpr = [np.mean(p[(s == g) & (y == c)] == c) for g in range(3)]
            per_class.append(max(tpr) - min(tpr))
        gaps.append(np.mean(per_class))
    low, high = np.quantile(gaps, [0.025, 0.975])
    ours_low, ours_high = table.intervals["equal_opportunity_difference"]
    assert ours_high - ours_low == pytest.approx(high - low, rel=0.15)
    assert ours_low == pytest.approx(low, abs=0.25 * (high - low))
    assert ours_high == pytest.approx(high, abs=0.25 * (high - low))


def test_bad_multiclass_input_is_an_error() -> None:
    data = make_data(200, seed=3)
    with pytest.raises(ValueError, match=r"class indices in 0..3"):
        macro_table(torch.as_tensor(data["y"]) + 1, torch.as_tensor(data["y_pred"]),
                    {"s": torch.as_tensor(data["s"])}, K)


RUN = {
    "dataset": {"name": "paralab_tiny", "n_classes": 3, "n_per_class": 80},
    "model": {"name": "mlp", "hidden": [16]},
    "protocol": {"name": "supervised", "epochs": 2, "batch_size": 32},
    "method": {"name": "adam", "lr": 0.02},
    "device": "cpu",
    "output": None,
}


def test_the_auditor_audits_every_class_and_their_macro_average(tmp_path) -> None:
    warnings.filterwarnings("ignore", module="fairlearn")
    with fairness_registry() as (_, probe):
        result = paralab.run({**RUN, "output": str(tmp_path), "name": "ovr", "auditors": [{"name": "fairness", "bootstrap": 20,
                                                  "min_group_size": 0,
                                                  "multiclass": "one_vs_rest"}]})
    audit = result.phases[-1]["audits"]["fairness/test"]
    assert set(audit) == {"group|0", "group|1", "group|2", "group|macro"}
    predictions = probe.evaluations[-1].predictions
    y, p = predictions.targets.numpy(), predictions.labels.numpy()
    group = predictions.feature("group").numpy()
    for c in range(3):
        selection = [float(np.mean(p[group == g] == c)) for g in (0, 1)]
        assert audit[f"group|{c}"]["metrics"]["selection_rate"] == pytest.approx(
            selection, abs=TOLERANCE)
    macro = audit["group|macro"]
    recall = [recall_score(y[group == g], p[group == g], average="macro", labels=[0, 1, 2])
              for g in (0, 1)]
    assert macro["metrics"]["true_positive_rate"] == pytest.approx(recall, abs=TOLERANCE)
    low, high = macro["intervals"]["equalized_odds_difference"]
    assert low <= high
    # The report draws and tabulates the per-class and macro tables too.
    for name in ("fairness_groups.csv", "fairness_history.csv", "fairness_groups.png",
                 "fairness_over_time.png"):
        assert (tmp_path / "ovr" / name).stat().st_size > 0, name
    history = (tmp_path / "ovr" / "fairness_history.csv").read_text()
    assert "group|macro" in history and "group|2" in history


def test_an_unknown_multiclass_mode_is_a_spec_error() -> None:
    with fairness_registry(), pytest.raises(paralab.SpecError, match=r"multiclass.*one_vs_rest"):
        paralab.run({**RUN, "auditors": [{"name": "fairness", "multiclass": "macro"}]})
