"""Regression fairness: group MAE and MSE equal fairlearn's MetricFrame; the bounded group loss
equals fairlearn's ``BoundedGroupLoss`` moment (Agarwal et al. 2019) on the same predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fairlearn.metrics import MetricFrame
from fairlearn.reductions import AbsoluteLoss, BoundedGroupLoss, SquareLoss
from sklearn.metrics import mean_absolute_error, mean_squared_error

from paralab_fairness.regression import regression_table

TOLERANCE = 1e-12


def make_data(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 3, n), rng.integers(0, 2, n)
    y = rng.normal(size=n)
    y_pred = y + rng.normal(scale=0.3 + 0.3 * a, size=n)  # group 2 is predicted worst
    return {"y": y, "y_pred": y_pred, "a": a, "b": b}


def ours(data, names, **options):
    return regression_table(torch.as_tensor(data["y"]), torch.as_tensor(data["y_pred"]),
                            {n: torch.as_tensor(data[n]) for n in names}, **options)


@pytest.mark.parametrize("names", [["a"], ["a", "b"]])
def test_group_errors_equal_fairlearns_metricframe(names) -> None:
    data = make_data(2_000, seed=0)
    table = ours(data, names)
    frame = MetricFrame(metrics={"mean_absolute_error": mean_absolute_error,
                                 "mean_squared_error": mean_squared_error},
                        y_true=data["y"], y_pred=data["y_pred"],
                        sensitive_features=np.stack([data[n] for n in names], axis=1)
                        if len(names) > 1 else data[names[0]])
    for name in ("mean_absolute_error", "mean_squared_error"):
        assert table["metrics"][name] == pytest.approx(frame.by_group[name].tolist(),
                                                       abs=TOLERANCE)
        assert table["overall"][name] == pytest.approx(frame.overall[name], abs=TOLERANCE)
    differences = frame.difference()
    assert table["disparities"]["mae_difference"] == pytest.approx(
        differences["mean_absolute_error"], abs=TOLERANCE)
    assert table["disparities"]["mse_ratio"] == pytest.approx(
        frame.ratio()["mean_squared_error"], abs=TOLERANCE)


@pytest.mark.parametrize(("loss", "fairlearn_loss"), [("absolute", AbsoluteLoss),
                                                      ("squared", SquareLoss)])
def test_bounded_group_loss_equals_fairlearns_moment(loss, fairlearn_loss) -> None:
    data = make_data(2_000, seed=1)
    low = float(min(data["y"].min(), data["y_pred"].min())) - 1.0
    high = float(max(data["y"].max(), data["y_pred"].max())) + 1.0  # no clipping
    bound = 0.4
    moment = BoundedGroupLoss(fairlearn_loss(low, high), upper_bound=bound)
    x = np.zeros((len(data["y"]), 1))
    moment.load_data(x, data["y"], sensitive_features=data["a"])
    group_loss = moment.gamma(lambda _: data["y_pred"])  # each group's mean loss
    excess = group_loss - moment.bound()  # the constraint: excess <= 0
    table = ours(data, ["a"], loss=loss, bound=bound)
    key = "mean_absolute_error" if loss == "absolute" else "mean_squared_error"
    assert table["metrics"][key] == pytest.approx(group_loss.tolist(), abs=TOLERANCE)
    assert table["disparities"]["worst_group_loss"] == pytest.approx(float(group_loss.max()),
                                                                     abs=TOLERANCE)
    assert table["disparities"]["bounded_group_loss_violation"] == pytest.approx(
        max(0.0, float(excess.max())), abs=TOLERANCE)
    assert table["violating"] == [table["groups"][i] for i, g in enumerate(excess) if g > 0]
    assert table["violating"]  # the noisiest group does exceed 0.4


def test_a_generous_bound_is_met_and_small_groups_are_not_compared() -> None:
    data = make_data(600, seed=2)
    table = ours(data, ["a"], bound=100.0)
    assert table["disparities"]["bounded_group_loss_violation"] == 0.0
    assert table["violating"] == []
    alone = ours(data, ["a"], min_group_size=10_000)
    assert math.isnan(alone["disparities"]["mae_difference"])
    assert len(alone["excluded"]) == 3


@pytest.mark.parametrize(("change", "message"), [
    ({"loss": "huber"}, "loss = 'huber'"),
    ({"bound": -1.0}, "bound = -1.0"),
])
def test_bad_options_are_errors(change, message) -> None:
    with pytest.raises(ValueError, match=message):
        ours(make_data(100, seed=3), ["a"], **change)


def test_non_finite_predictions_are_an_error_naming_the_row() -> None:
    data = make_data(100, seed=4)
    data["y_pred"][7] = np.nan
    with pytest.raises(ValueError, match="first at row 7"):
        ours(data, ["a"])
