"""paralab's fairness table equals fairlearn's MetricFrame and disparity functions (1e-9)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score, precision_score

from paralab_fairness.table import fairness_table

TOLERANCE = 1e-9
FAIRLEARN_METRICS = {
    "count": count,
    "selection_rate": selection_rate,
    "accuracy": accuracy_score,
    "true_positive_rate": lambda t, p: true_positive_rate(t, p, pos_label=1),
    "false_positive_rate": lambda t, p: false_positive_rate(t, p, pos_label=1),
    "false_negative_rate": lambda t, p: false_negative_rate(t, p, pos_label=1),
    "precision": lambda t, p: precision_score(t, p, zero_division=0),
}


def calibration_reference(y_true: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error written the slow, obvious way (a loop over bins)."""
    edges = np.minimum((scores * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = edges == b
        if inside.any():
            total += inside.mean() * abs(scores[inside].mean() - y_true[inside].mean())
    return total


def make_data(n: int, cardinalities: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = {f"s{i}": rng.integers(0, k, n) for i, k in enumerate(cardinalities)}
    shift = sum(0.1 * v for v in features.values())
    y = (rng.random(n) < 0.3 + 0.1 * (features["s0"] % 2)).astype(int)
    scores = np.clip(rng.random(n) * 0.6 + 0.3 * y + 0.05 * shift, 0.0, 1.0)
    y_pred = (scores > 0.5).astype(int)
    return {"y": y, "y_pred": y_pred, "scores": scores, **features}


def assert_frame_equal(table, frame: MetricFrame, names: list[str]) -> None:
    by_group = frame.by_group
    assert len(table.groups) == len(by_group)
    for position, group in enumerate(table.groups):
        key = group if len(group) > 1 else group[0]
        row = by_group.loc[tuple(int(v) for v in key) if len(group) > 1 else int(key)]
        for name in names:
            assert table.metrics[name][position] == pytest.approx(row[name], abs=TOLERANCE), (
                name,
                group,
            )
    for name in names:
        assert table.overall[name] == pytest.approx(frame.overall[name], abs=TOLERANCE)


@pytest.mark.parametrize("cardinalities", [(3,), (2, 5), (4, 3, 3)])
def test_per_group_metrics_and_disparities_equal_fairlearn(cardinalities: tuple[int, ...]) -> None:
    data = make_data(6_000, cardinalities, seed=len(cardinalities))
    names = [f"s{i}" for i in range(len(cardinalities))]
    sensitive = pd.DataFrame({name: data[name] for name in names})
    table = fairness_table(
        torch.as_tensor(data["y"]),
        torch.as_tensor(data["y_pred"]),
        {name: torch.as_tensor(data[name]) for name in names},
        scores=torch.as_tensor(data["scores"]),
    )
    frame = MetricFrame(
        metrics=FAIRLEARN_METRICS,
        y_true=data["y"],
        y_pred=data["y_pred"],
        sensitive_features=sensitive,
    )
    assert_frame_equal(table, frame, list(FAIRLEARN_METRICS))
    # Calibration needs the scores as "predictions": a second frame over the same groups.
    calibration = MetricFrame(
        metrics={"calibration_error": lambda t, s: calibration_reference(np.asarray(t), np.asarray(s))},
        y_true=data["y"],
        y_pred=data["scores"],
        sensitive_features=sensitive,
    )
    assert_frame_equal(table, calibration, ["calibration_error"])
    y, y_pred = data["y"], data["y_pred"]
    expected = {
        "demographic_parity_difference": demographic_parity_difference(
            y, y_pred, sensitive_features=sensitive
        ),
        "demographic_parity_ratio": demographic_parity_ratio(y, y_pred, sensitive_features=sensitive),
        "equalized_odds_difference": equalized_odds_difference(
            y, y_pred, sensitive_features=sensitive
        ),
        "equal_opportunity_difference": frame.difference()["true_positive_rate"],
    }
    for name, value in expected.items():
        assert table.disparities[name] == pytest.approx(value, abs=TOLERANCE), name
    assert table.disparities["demographic_parity_difference"] > 0.01  # not trivially zero


def test_intersection_of_many_codes_uses_only_occurring_groups() -> None:
    """Sparse combinations (the dense count would be huge) take the unique() path."""
    rng = np.random.default_rng(3)
    n = 5_000
    a, b = rng.choice([7, 1999, 2500], n), rng.integers(0, 2, n)
    y, y_pred = rng.integers(0, 2, n), rng.integers(0, 2, n)
    categories = {"a": [f"{i:04d}" for i in range(3000)], "b": ["f", "m"]}
    codes_c = rng.choice([0, 4999], n)
    categories["c"] = [f"{i:04d}" for i in range(5000)]
    table = fairness_table(
        torch.as_tensor(y), torch.as_tensor(y_pred),
        {"a": torch.as_tensor(a), "b": torch.as_tensor(b), "c": torch.as_tensor(codes_c)},
        categories=categories,
    )
    frame = MetricFrame(
        metrics={"selection_rate": selection_rate, "count": count},
        y_true=y, y_pred=y_pred,
        sensitive_features=pd.DataFrame({"a": a, "b": b, "c": codes_c}),
    )
    assert len(table.groups) == len(frame.by_group) == 12
    for position, group in enumerate(table.groups):
        row = frame.by_group.loc[(int(group[0]), ["f", "m"].index(group[1]), int(group[2]))]
        assert table.metrics["count"][position] == row["count"]
        assert table.metrics["selection_rate"][position] == pytest.approx(
            row["selection_rate"], abs=TOLERANCE
        )


def test_undefined_rate_is_nan_with_a_warning_where_fairlearn_reports_zero() -> None:
    """A group with no positives: fairlearn's TPR is 0.0; ours is NaN and says which group."""
    y = np.array([0, 0, 0, 1, 1, 0, 1, 0])
    y_pred = np.array([0, 1, 0, 1, 0, 0, 1, 1])
    group = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    with pytest.warns(UserWarning, match=r"true_positive_rate is undefined .* \['x'\]"):
        table = fairness_table(
            torch.as_tensor(y), torch.as_tensor(y_pred), {"g": torch.as_tensor(group)},
            categories={"g": ["x", "y"]},
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fairlearn_tpr = MetricFrame(
            metrics=FAIRLEARN_METRICS["true_positive_rate"], y_true=y, y_pred=y_pred,
            sensitive_features=group,
        ).by_group
    assert fairlearn_tpr.loc[0] == 0.0
    assert math.isnan(table.by_group("true_positive_rate")["x"])
    assert table.by_group("true_positive_rate")["y"] == pytest.approx(2 / 3)
    assert table.undefined["true_positive_rate"] == ["x"]
    # The disparity is computed over the groups where the rate exists, and says so.
    assert table.disparities["equal_opportunity_difference"] == 0.0


def test_bootstrap_interval_matches_a_row_resampling_bootstrap() -> None:
    """Poisson draws on cell counts give the same interval as resampling rows (the textbook
    bootstrap, written here with numpy), up to Monte Carlo noise."""
    data = make_data(4_000, (3,), seed=11)
    table = fairness_table(
        torch.as_tensor(data["y"]), torch.as_tensor(data["y_pred"]),
        {"s0": torch.as_tensor(data["s0"])}, bootstrap=2000, seed=1,
    )
    rng = np.random.default_rng(1)
    n = len(data["y"])
    gaps = []
    for _ in range(2000):
        rows = rng.integers(0, n, n)
        selected = np.bincount(data["s0"][rows], weights=data["y_pred"][rows], minlength=3)
        sizes = np.bincount(data["s0"][rows], minlength=3)
        rates = selected / sizes
        gaps.append(rates.max() - rates.min())
    low, high = np.quantile(gaps, [0.025, 0.975])
    ours_low, ours_high = table.intervals["demographic_parity_difference"]
    assert ours_high > ours_low
    assert ours_high - ours_low == pytest.approx(high - low, rel=0.15)
    assert ours_low == pytest.approx(low, abs=0.006)
    assert ours_high == pytest.approx(high, abs=0.006)
