"""The fairness auditor evaluates metrics from any plugin (``MetricSpec``) per group: a test
plugin's metric and the host's own ``loss``, recomputed here with numpy on the run's rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import paralab
from paralab import Metric, MetricSpec, Option, hookimpl
from tests.fairness_helpers import fairness_registry


class BrierScore(Metric):
    """Mean squared error of one class's predicted probability (a test plugin's metric)."""

    def __init__(self, positive_class: int = 1) -> None:
        self.positive_class = positive_class

    def __call__(self, predictions, dataset) -> float:
        p = predictions.probabilities[:, self.positive_class].double()
        y = (predictions.targets == self.positive_class).double()
        return float(((p - y) ** 2).mean())


class Unsuitable(Metric):
    def __call__(self, predictions, dataset) -> dict:
        return {"not": "a number"}


class MetricPlugin:
    PARALAB_API = "1.0"

    @hookimpl
    def paralab_metrics(self) -> list[MetricSpec]:
        return [
            MetricSpec("brier_score", BrierScore, "Brier score of one class.",
                       {"positive_class": Option(1, type=int, ge=0, help="the class")}),
            MetricSpec("unsuitable_metric", Unsuitable, "Returns a dict.", {}),
        ]


RUN = {
    "dataset": {"name": "biased_synthetic", "n": 1200, "bias": 1.5},
    "model": {"name": "mlp", "hidden": [16]},
    "protocol": {"name": "supervised", "epochs": 2, "batch_size": 128},
    "method": {"name": "adam", "lr": 0.02},
    "device": "cpu",
    "output": None,
}


def run(auditor: dict, **extra):
    with fairness_registry(("metric_plugin", MetricPlugin())) as (_, probe):
        result = paralab.run({**RUN, "auditors": [{"name": "fairness", **auditor}], **extra})
    return result, probe.evaluations


def numpy_per_group(evaluation, feature: str, function) -> tuple[list[float], float]:
    predictions = evaluation.predictions
    probabilities = torch.softmax(predictions.logits.double(), dim=-1).numpy()
    targets = predictions.targets.numpy()
    codes = predictions.feature(feature).numpy()
    per_group = [function(probabilities[codes == c], targets[codes == c]) for c in np.unique(codes)]
    return per_group, function(probabilities, targets)


def brier(positive: int):
    return lambda p, y: float(np.mean((p[:, positive] - (y == positive)) ** 2))


def cross_entropy(p, y) -> float:
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def test_a_plugins_metric_and_the_hosts_loss_are_evaluated_per_group() -> None:
    result, evaluations = run({"bootstrap": 0, "min_group_size": 0,
                               "metrics": ["brier_score", "loss"]})
    for phase, evaluation in zip(result.phases, evaluations):
        audit = phase["audits"]["fairness/test"]
        for key, feature in (("group", "group"), ("age_band", "age_band")):
            for name, function in (("brier_score", brier(1)), ("loss", cross_entropy)):
                expected, overall = numpy_per_group(evaluation, feature, function)
                assert audit[key]["metrics"][name] == pytest.approx(expected, rel=1e-5), name
                assert audit[key]["overall"][name] == pytest.approx(overall, rel=1e-5)
                gap = audit[key]["disparities"][f"{name}_difference"]
                assert gap == pytest.approx(max(expected) - min(expected), rel=1e-4, abs=1e-7)
                assert audit[key]["set_by"][f"{name}_difference"] == [
                    audit[key]["groups"][int(np.argmax(expected))],
                    audit[key]["groups"][int(np.argmin(expected))]]
        assert len(audit["group*age_band"]["metrics"]["brier_score"]) == 6


def test_a_metrics_options_are_its_own_and_change_what_it_computes() -> None:
    result, evaluations = run({"bootstrap": 0, "metrics": [
        {"name": "brier_score", "positive_class": 0}]})
    audit = result.phases[-1]["audits"]["fairness/test"]["group"]
    expected, _ = numpy_per_group(evaluations[-1], "group", brier(0))
    assert audit["metrics"]["brier_score"] == pytest.approx(expected, rel=1e-5)


def test_groups_under_min_group_size_are_reported_but_not_compared() -> None:
    result, evaluations = run({"bootstrap": 0, "min_group_size": 30, "sensitive": ["group",
                                                                                   "age_band"],
                               "metrics": ["brier_score"]})
    table = result.phases[-1]["audits"]["fairness/test"]["group*age_band"]
    assert table["excluded"]  # the minority's old and young bands are small
    kept = [v for g, v in zip(table["groups"], table["metrics"]["brier_score"])
            if g not in table["excluded"]]
    assert len(table["metrics"]["brier_score"]) == 6
    assert table["disparities"]["brier_score_difference"] == pytest.approx(
        max(kept) - min(kept), abs=1e-12)


def test_metric_bootstrap_gives_a_reproducible_interval_only_when_asked() -> None:
    auditor = {"bootstrap": 0, "metrics": ["brier_score"], "metric_bootstrap": 40, "seed": 3}
    first, _ = run(auditor)
    second, _ = run(auditor)
    table = first.phases[-1]["audits"]["fairness/test"]["group"]
    low, high = table["intervals"]["brier_score_difference"]
    assert 0.0 <= low < high
    assert second.phases[-1]["audits"]["fairness/test"]["group"]["intervals"][
        "brier_score_difference"] == [low, high]
    plain, _ = run({"bootstrap": 0, "metrics": ["brier_score"]})
    assert "brier_score_difference" not in plain.phases[-1]["audits"]["fairness/test"][
        "group"]["intervals"]


@pytest.mark.parametrize(("metrics", "expected"), [
    (["brier_scor"], "unknown metric 'brier_scor'"),
    ([{"name": "brier_score", "positive_class": -1}], "positive_class = -1: must be >= 0"),
    ([{"name": "brier_score", "classes": 2}], "unknown option(s) ['classes']"),
    ([{"positive_class": 1}], "needs name = '<a metric>'"),
    (["selection_rate"], "one of the auditor's own metrics"),
    (["brier_score", "brier_score"], "names 'brier_score' twice"),
    (["grouped_accuracy"], "needs option(s) ['feature']"),
])
def test_a_bad_metric_entry_is_a_spec_error_before_training(metrics, expected) -> None:
    with pytest.raises(paralab.SpecError) as caught:
        run({"metrics": metrics})
    assert expected in str(caught.value)
    assert "auditors[0]" in str(caught.value)


def test_a_metric_that_returns_no_number_fails_naming_it() -> None:
    with pytest.raises(Exception, match="metric 'unsuitable_metric' returned dict"):
        run({"bootstrap": 0, "metrics": ["unsuitable_metric"]})


def test_a_difference_over_fewer_than_two_compared_groups_is_undefined() -> None:
    # The loss of a group is always defined; a disparity over fewer than two defined values
    # is NaN, never a number: one group only when the other is excluded.
    result, _ = run({"bootstrap": 0, "min_group_size": 10_000, "metrics": ["loss"]})
    table = result.phases[-1]["audits"]["fairness/test"]["group"]
    value = table["disparities"]["loss_difference"]
    assert value is None or math.isnan(value)  # NaN, written as null
    assert table["set_by"]["loss_difference"] == []


def test_the_history_csv_carries_the_plugin_metrics_difference(tmp_path) -> None:
    import csv

    result, _ = run({"bootstrap": 0, "plots": False, "metrics": ["brier_score"]},
                    output=str(tmp_path), name="plugin_metric")
    with (tmp_path / "plugin_metric" / "fairness_history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    last = [row for row in rows if row["grouping"] == "group"][-1]
    expected = result.phases[-1]["audits"]["fairness/test"]["group"]["disparities"][
        "brier_score_difference"]
    assert float(last["brier_score_difference"]) == pytest.approx(expected, rel=1e-12)
    with (tmp_path / "plugin_metric" / "fairness_groups.csv").open() as handle:
        assert "brier_score" in next(csv.reader(handle))
