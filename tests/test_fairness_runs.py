"""The fairness plugin end to end through ``paralab.run``: audits at every evaluation, the
files it writes, the penalty and fairlearn's mitigations actually reducing disparity."""

from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, equalized_odds_difference, selection_rate

import paralab
from tests.fairness_helpers import fairness_registry

DATA = {"name": "biased_synthetic", "n": 1200, "bias": 1.5}
TRAIN = {
    "dataset": DATA,
    "model": {"name": "mlp", "hidden": [16]},
    "protocol": {"name": "supervised", "epochs": 3, "batch_size": 128},
    "method": {"name": "adam", "lr": 0.02},
    "device": "cpu",
}


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.filterwarnings("ignore", module="fairlearn")
    warnings.filterwarnings("ignore", category=FutureWarning)


def test_audit_at_every_evaluation_equals_fairlearn_on_the_runs_predictions(tmp_path) -> None:
    with fairness_registry() as (_, probe):
        result = paralab.run({**TRAIN, "name": "audit", "output": str(tmp_path),
                              "auditors": [{"name": "fairness", "bootstrap": 50,
                                            "min_group_size": 0}]})  # every group, as fairlearn
    assert [p["kind"] for p in result.phases] == ["epoch"] * 3
    assert len(probe.evaluations) == 3
    for phase, evaluation in zip(result.phases, probe.evaluations):
        audit = phase["audits"]["fairness/test"]
        assert set(audit) == {"group", "age_band", "group*age_band"}
        predictions = evaluation.predictions
        y = predictions.targets.numpy()
        y_pred = predictions.labels.numpy()
        features = pd.DataFrame({
            name: predictions.feature(name).numpy() for name in ("group", "age_band")
        })
        for key, columns in (("group", ["group"]), ("group*age_band", ["group", "age_band"])):
            expected = equalized_odds_difference(y, y_pred, sensitive_features=features[columns])
            assert audit[key]["disparities"]["equalized_odds_difference"] == pytest.approx(
                expected, abs=1e-9
            )
            frame = MetricFrame(metrics=selection_rate, y_true=y, y_pred=y_pred,
                                sensitive_features=features[columns])
            assert audit[key]["metrics"]["selection_rate"] == pytest.approx(
                frame.by_group.tolist(), abs=1e-9
            )
        assert len(audit["group*age_band"]["groups"]) == 6
        assert audit["group"]["groups"] == ["majority", "minority"]
        low, high = audit["group"]["intervals"]["demographic_parity_difference"]
        assert low < high
    # The table, the plots and the drift curve are in the run's folder.
    folder = tmp_path / "audit"
    for name in ("fairness_groups.csv", "fairness_history.csv", "fairness_groups.png",
                 "fairness_over_time.png"):
        assert (folder / name).stat().st_size > 0, name
    with (folder / "fairness_history.csv").open() as handle:
        history = list(csv.DictReader(handle))
    assert len(history) == 3 * 3  # 3 evaluation points x 3 groupings
    assert [row["index"] for row in history if row["grouping"] == "group"] == ["0", "1", "2"]
    with (folder / "fairness_groups.csv").open() as handle:
        groups = list(csv.DictReader(handle))
    assert len(groups) == 2 + 3 + 6
    summary = result.audits["fairness"]
    assert summary["evaluations"] == 3
    assert result.artifacts["fairness_curve"] == "fairness_over_time.png"


def test_penalty_trains_a_fairer_model_under_the_supervised_protocol() -> None:
    def disparity(losses: list) -> tuple[float, float]:
        with fairness_registry():
            result = paralab.run({**TRAIN, "output": None, "losses": losses,
                                  "auditors": [{"name": "fairness", "bootstrap": 0,
                                                "sensitive": ["group"]}]})
        audit = result.phases[-1]["audits"]["fairness/test"]["group"]
        return audit["disparities"]["demographic_parity_difference"], result.metrics[
            "test/accuracy"]

    plain, plain_accuracy = disparity([])
    fair, fair_accuracy = disparity([{"name": "fairness_penalty", "weight": 3.0,
                                      "sensitive": ["group"]}])
    assert plain > 0.15  # the data's label bias is learned
    assert fair < plain / 2
    assert fair_accuracy > 0.6 and plain_accuracy > 0.6


def test_auditor_and_penalty_work_under_another_protocol() -> None:
    """A stream of experiences: one audit per experience (the fairness drift curve)."""
    spec = {**TRAIN, "protocol": {"name": "fairness_stream", "epochs": 2},
            "method": "stream_sgd", "output": None,
            "auditors": [{"name": "fairness", "bootstrap": 0, "intersectional": False}]}
    with fairness_registry():
        plain = paralab.run(spec)
        fair = paralab.run({**spec, "losses": [{"name": "fairness_penalty", "weight": 3.0,
                                                "constraint": "equalized_odds"}]})
    kinds = [(p["kind"], p["index"]) for p in plain.phases]
    assert kinds == [("experience", 0), ("experience", 1), ("experience", 2)]
    history = plain.audits["fairness"]["history"]
    assert [point["phase"] for point in history] == ["experience"] * 3
    assert set(history[0]) >= {"group", "age_band"}
    # The penalty changed training (the models differ) and reduced the equalized odds gap.
    last = [run.phases[-1]["audits"]["fairness/test"]["group"]["disparities"]
            for run in (plain, fair)]
    assert last[1]["equalized_odds_difference"] < last[0]["equalized_odds_difference"]


@pytest.mark.parametrize("method", [
    {"name": "exponentiated_gradient", "max_iter": 10},
    {"name": "grid_search", "grid_size": 15, "constraint_weight": 0.95},
    {"name": "threshold_optimizer"},
])
def test_fairlearn_mitigations_reduce_demographic_parity(method: dict) -> None:
    spec = {**TRAIN, "protocol": {"name": "estimator", "sensitive": ["group"]},
            "model": None, "output": None,
            "auditors": [{"name": "fairness", "bootstrap": 0, "sensitive": ["group"]}]}
    with fairness_registry():
        baseline = paralab.run({**spec, "method": "unmitigated"})
        mitigated = paralab.run({**spec, "method": method})

    def gap(result: paralab.Result) -> float:
        audit = result.phases[-1]["audits"]["fairness/test"]["group"]
        return audit["disparities"]["demographic_parity_difference"]

    assert gap(baseline) > 0.2
    assert gap(mitigated) < gap(baseline) / 2
    assert mitigated.metrics["test/accuracy"] > 0.6
    assert mitigated.phases[0]["kind"] == "fit"


def test_estimator_predictions_keep_the_randomized_labels_and_expected_scores() -> None:
    with fairness_registry() as (_, probe):
        paralab.run({**TRAIN, "model": None, "output": None,
                     "protocol": {"name": "estimator", "sensitive": ["group"]},
                     "method": {"name": "exponentiated_gradient", "max_iter": 10}})
    predictions = probe.evaluations[-1].predictions
    scores = predictions.probabilities[:, 1].numpy()
    labels = predictions.labels.numpy()
    assert set(np.unique(labels)) <= {0, 1}
    # Sampled labels follow the expected scores, not a 0.5 threshold everywhere.
    assert abs(labels.mean() - scores.mean()) < 0.05
    assert not math.isnan(float(scores.sum()))
