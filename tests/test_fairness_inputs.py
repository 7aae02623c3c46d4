"""Bad input to the fairness plugin: a clear error naming what is wrong, before training, or an
explicit NaN with a warning naming the group; never a silent number."""

from __future__ import annotations

import math

import pytest
import torch

import paralab
from paralab_fairness.table import FairnessWarning, fairness_table
from tests.fairness_helpers import components_of, fairness_registry, signature_mismatches

RUN = {
    "dataset": {"name": "biased_synthetic", "n": 400},
    "model": {"name": "mlp", "hidden": [8]},
    "protocol": {"name": "supervised", "epochs": 1},
    "device": "cpu",
    "output": None,
}


def run_error(spec: dict) -> paralab.SpecError:
    """Options that do not fit the data are rejected before anything trains, as spec errors."""
    with fairness_registry(), pytest.raises(paralab.SpecError) as caught:
        paralab.run(spec)
    return caught.value


def test_unknown_sensitive_feature_fails_before_training_and_names_the_choices() -> None:
    error = run_error({**RUN, "auditors": [{"name": "fairness", "sensitive": ["race"]}]})
    message = str(error)
    assert "option sensitive names ['race']" in message
    assert "'age_band'" in message and "'group'" in message
    assert "auditors[0]: auditor 'fairness' (paralab_fairness)" in message


def test_dataset_without_sensitive_features_needs_the_option() -> None:
    error = run_error({**RUN, "dataset": "iris", "auditors": ["fairness"]})
    assert "dataset 'iris' declares no sensitive features" in str(error)
    assert "auditors[0]" in str(error)


def test_penalty_with_unknown_constraint_or_feature_fails_before_training() -> None:
    with fairness_registry(), pytest.raises(paralab.SpecError) as caught:
        paralab.run({**RUN, "losses": [{"name": "fairness_penalty", "constraint": "parity"}]})
    assert "losses[0]" in str(caught.value)
    assert ("constraint = 'parity': expected one of 'demographic_parity', 'equalized_odds'"
            in str(caught.value))
    error = run_error({**RUN, "losses": [{"name": "fairness_penalty", "sensitive": ["sex"]}]})
    assert "loss fairness_penalty: option sensitive names ['sex']" in str(error)
    assert "losses[0]" in str(error)


def test_positive_class_outside_the_classes_is_an_error() -> None:
    error = run_error({**RUN, "auditors": [{"name": "fairness", "positive_class": 2}]})
    assert "positive_class = 2" in str(error) and "2 classes" in str(error)


def test_estimator_protocol_rejects_a_gradient_method() -> None:
    error = run_error({**RUN, "protocol": "estimator", "method": "unmitigated", "model": None,
                       "auditors": [{"name": "fairness", "sensitive": ["nope"]}]})
    assert "nope" in str(error)
    with fairness_registry(), pytest.raises(paralab.SpecError, match="supports protocols"):
        paralab.run({**RUN, "protocol": "estimator", "method": "sgd"})


# ------------------------------------------------------------- declared options, validate(run)

ESTIMATOR = {**RUN, "model": None, "protocol": {"name": "estimator"}, "method": "unmitigated"}


def spec_error_without_folder(spec: dict, tmp_path) -> str:
    """The SpecError's message; nothing was written under ``tmp_path`` (no run folder)."""
    with fairness_registry(), pytest.raises(paralab.SpecError) as caught:
        paralab.run({**spec, "output": str(tmp_path)})
    assert list(tmp_path.iterdir()) == []
    return str(caught.value)


@pytest.mark.parametrize(("changes", "field"), [
    ({"auditors": [{"name": "fairness", "bootstrap": -1}]}, "auditors[0].bootstrap = -1"),
    ({"auditors": [{"name": "fairness", "confidence": 1.0}]}, "auditors[0].confidence = 1.0"),
    ({"auditors": [{"name": "fairness", "bins": 0}]}, "auditors[0].bins = 0"),
    ({"auditors": [{"name": "fairness", "positive_class": -1}]},
     "auditors[0].positive_class = -1"),
    ({"auditors": [{"name": "fairness", "sensitive": [3]}]}, "auditors[0].sensitive = [3]"),
    ({"auditors": [{"name": "fairness", "min_group_size": -2}]},
     "auditors[0].min_group_size = -2"),
    ({"losses": [{"name": "fairness_penalty", "weight": math.nan}]}, "losses[0].weight = nan"),
    ({"losses": [{"name": "fairness_penalty", "weight": -1.0}]}, "losses[0].weight = -1.0"),
    ({"dataset": {"name": "biased_synthetic", "n": 10}}, "dataset.n = 10"),
    ({"dataset": {"name": "biased_synthetic", "minority_fraction": 1.5}},
     "dataset.minority_fraction = 1.5"),
    ({"dataset": {"name": "biased_synthetic", "bias": math.inf}}, "dataset.bias = inf"),
    ({"metrics": [{"name": "demographic_parity_difference", "positive_class": "yes"}]},
     "metrics[0].positive_class = 'yes'"),
])
def test_declared_constraints_reject_before_any_folder(changes: dict, field: str,
                                                       tmp_path) -> None:
    assert field in spec_error_without_folder({**RUN, **changes}, tmp_path)


@pytest.mark.parametrize(("changes", "field"), [
    ({"protocol": {"name": "estimator", "estimator": "svm"}}, "protocol.estimator = 'svm'"),
    ({"protocol": {"name": "estimator", "max_iter": 0}}, "protocol.max_iter = 0"),
    ({"protocol": {"name": "estimator", "eval_splits": "test"}}, "protocol.eval_splits = 'test'"),
    ({"method": {"name": "exponentiated_gradient", "difference_bound": 0.0}},
     "method.difference_bound = 0.0"),
    ({"method": {"name": "exponentiated_gradient", "eps": math.nan}}, "method.eps = nan"),
    ({"method": {"name": "grid_search", "constraint_weight": 1.5}},
     "method.constraint_weight = 1.5"),
    ({"method": {"name": "grid_search", "grid_size": 0}}, "method.grid_size = 0"),
    ({"method": {"name": "threshold_optimizer", "objective": "f1_score"}},
     "method.objective = 'f1_score'"),
    ({"method": {"name": "threshold_optimizer", "constraint": "error_rate_parity"}},
     "method.constraint = 'error_rate_parity'"),
    # Options of one estimator set with another would do nothing (used_when).
    ({"protocol": {"name": "estimator", "estimator": "decision_tree", "max_iter": 50}},
     "protocol.max_iter: protocol 'estimator' (paralab_fairness) uses it only when estimator"),
    ({"protocol": {"name": "estimator", "epochs": 5}},
     "protocol.epochs: protocol 'estimator' (paralab_fairness) uses it only when estimator = "
     "'paralab_model', and here estimator = 'logistic_regression'"),
    ({"protocol": {"name": "estimator", "network": "mlp"}}, "protocol.network: protocol"),
])
def test_estimator_options_reject_before_any_folder(changes: dict, field: str,
                                                    tmp_path) -> None:
    assert field in spec_error_without_folder({**ESTIMATOR, **changes}, tmp_path)


def test_metric_bootstrap_without_metrics_is_refused(tmp_path) -> None:
    message = spec_error_without_folder(
        {**RUN, "auditors": [{"name": "fairness", "metric_bootstrap": 20}]}, tmp_path)
    assert "metric_bootstrap = 20 resamples the group differences" in message
    assert "metrics is empty: it would do nothing" in message


def test_checks_against_the_data_reject_before_any_folder(tmp_path) -> None:
    """``validate(run)``: what only the built data (or several options together) can tell."""
    message = spec_error_without_folder(
        {**ESTIMATOR, "protocol": {"name": "estimator", "train_split": "nope"}}, tmp_path)
    assert "protocol: protocol 'estimator' (paralab_fairness)" in message
    assert "train_split = 'nope' is not a split" in message and "test, train" in message
    message = spec_error_without_folder(
        {**ESTIMATOR, "protocol": {"name": "estimator", "positive_class": 3}}, tmp_path)
    assert "positive_class = 3 but dataset 'biased_synthetic' has 2 classes" in message
    message = spec_error_without_folder(
        {**ESTIMATOR, "method": {"name": "threshold_optimizer", "constraint": "equalized_odds",
                                 "objective": "selection_rate"}}, tmp_path)
    assert "method: method 'threshold_optimizer' (paralab_fairness)" in message
    assert "accuracy_score, balanced_accuracy_score" in message
    message = spec_error_without_folder(
        {**RUN, "metrics": [{"name": "equalized_odds_difference", "sensitive": "race"}]},
        tmp_path)
    assert "metrics[0]: metric 'equalized_odds_difference'" in message
    assert "option sensitive names ['race']" in message


def test_a_fairness_penalty_under_the_estimator_protocol_is_rejected(tmp_path) -> None:
    """The estimator protocol fits scikit-learn estimators: the penalty would never act."""
    message = spec_error_without_folder(
        {**ESTIMATOR, "losses": [{"name": "fairness_penalty", "sensitive": ["group"]}]},
        tmp_path)
    assert "losses[0] = 'fairness_penalty': protocol 'estimator' (paralab_fairness)" in message
    assert "would never act" in message


def test_one_sensitive_feature_may_be_named_by_a_string() -> None:
    with fairness_registry():
        result = paralab.run({**RUN, "metrics": [
            {"name": "demographic_parity_difference", "sensitive": "group"},
            {"name": "demographic_parity_difference", "sensitive": ["group"]}]})
    assert result.status == "completed"
    assert 0.0 <= result.metrics["test/demographic_parity_difference"] <= 1.0


def test_every_component_declares_its_factory_signature() -> None:
    with fairness_registry() as (registry, _):
        components = components_of(registry, "paralab_fairness")
    assert len(components) == 16
    for component in components:
        assert signature_mismatches(component) == [], f"{component.kind} {component.name}"
        for name, option in component.declared_options().items():
            assert option.problem(option.default) is None, f"{component.name}.{name}"


def test_mismatched_lengths() -> None:
    y = torch.tensor([0, 1, 1, 0])
    with pytest.raises(ValueError, match="y_true has 4 rows but y_pred has 3"):
        fairness_table(y, y[:3], {"g": torch.tensor([0, 1, 0, 1])})
    with pytest.raises(ValueError, match="sensitive feature 'g' has 3 rows but the predictions have 4"):
        fairness_table(y, y, {"g": torch.tensor([0, 1, 0])})
    with pytest.raises(ValueError, match=r"scores have shape \(3,\), expected \(4,\)"):
        fairness_table(y, y, {"g": torch.tensor([0, 1, 0, 1])}, scores=torch.rand(3))


def test_nan_scores_are_an_error_naming_the_row() -> None:
    y = torch.tensor([0, 1, 1, 0])
    scores = torch.tensor([0.1, float("nan"), 0.7, 0.2])
    with pytest.raises(ValueError, match=r"1 NaN or infinite values \(first at row 1\)"):
        fairness_table(y, y, {"g": torch.tensor([0, 1, 0, 1])}, scores=scores)


def test_a_single_group_is_an_error() -> None:
    y = torch.tensor([0, 1, 1, 0])
    with pytest.raises(ValueError, match=r"'sex' has a single group \('F'\)"):
        fairness_table(y, y, {"sex": torch.zeros(4, dtype=torch.long)},
                       categories={"sex": ["F", "M"]})


def test_sensitive_codes_must_be_integers_within_their_labels() -> None:
    y = torch.tensor([0, 1, 1, 0])
    with pytest.raises(ValueError, match="must be a 1-D tensor of integer group codes"):
        fairness_table(y, y, {"age": torch.tensor([20.5, 31.0, 44.0, 50.0])})
    with pytest.raises(ValueError, match=r"code 2 but only 2 labels \['F', 'M'\]"):
        fairness_table(y, y, {"sex": torch.tensor([0, 1, 2, 0])}, categories={"sex": ["F", "M"]})


def test_group_without_positive_predictions_gets_nan_precision_and_a_warning() -> None:
    y_true = torch.tensor([1, 0, 1, 1, 0, 1])
    y_pred = torch.tensor([0, 0, 0, 1, 0, 1])
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    with pytest.warns(FairnessWarning, match=r"precision is undefined \(no positive predictions\) "
                                             r"for race group\(s\) \['Asian'\]"):
        table = fairness_table(y_true, y_pred, {"race": group},
                               categories={"race": ["Asian", "White"]})
    assert table.by_group("precision")["White"] == 1.0
    assert table.undefined == {"precision": ["Asian"]}
    assert table.by_group("true_positive_rate") == {"Asian": 0.0, "White": 1.0}


def test_small_groups_are_reported_but_left_out_of_disparities_when_asked() -> None:
    y_true = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0, 1])
    y_pred = torch.tensor([1, 0, 1, 1, 1, 0, 0, 0, 1])
    race = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2])
    labels = {"race": ["a", "b", "tiny"]}
    everyone = fairness_table(y_true, y_pred, {"race": race}, categories=labels)
    assert everyone.disparities["demographic_parity_difference"] == pytest.approx(1 - 0.25)
    with pytest.warns(FairnessWarning, match=r"\['tiny'\] have fewer than 2 rows"):
        table = fairness_table(y_true, y_pred, {"race": race}, categories=labels,
                               min_group_size=2)
    assert table.by_group("selection_rate")["tiny"] == 1.0  # still reported
    assert table.excluded == ["tiny"]
    assert table.disparities["demographic_parity_difference"] == pytest.approx(0.75 - 0.25)
    with pytest.warns(FairnessWarning, match="fewer than two race groups .* undefined"):
        none = fairness_table(y_true, y_pred, {"race": race}, categories=labels,
                              min_group_size=5)
    assert none.by_group("selection_rate") == everyone.by_group("selection_rate")
    assert all(math.isnan(value) for value in none.disparities.values())
    assert none.intervals == {} and none.set_by == {}
