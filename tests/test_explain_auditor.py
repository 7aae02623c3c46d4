"""The auditors end to end through paralab.run: audits, plots, drift, groups, early errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import paralab
import paralab_explain
from paralab.testing import TinyDataPlugin, isolated_registry
from tests.fairness_helpers import components_of, signature_mismatches


@pytest.fixture
def registry():
    return isolated_registry(("paralab_tiny", TinyDataPlugin()),
                             ("paralab_explain", paralab_explain))


def _spec(output=None, **changes):
    spec = {
        "name": "explain",
        "dataset": "wine",
        "model": {"name": "mlp", "hidden": [16]},
        "protocol": {"name": "supervised", "epochs": 3, "batch_size": 16},
        "method": {"name": "adam", "lr": 0.01},
        "device": "cpu",
        "output": output,
    }
    spec.update(changes)
    return spec


def test_attributions_audit_every_epoch_with_plots_and_drift(registry, tmp_path):
    auditor = {"name": "attributions", "rows": 12, "steps": 16, "groups": 4}
    result = paralab.run(_spec(str(tmp_path), auditors=[auditor]), registry=registry)
    audits = [phase["audits"]["attributions/test"] for phase in result.phases]
    assert len(audits) == 3
    last = audits[-1]
    assert last["method"] == "integrated_gradients" and last["rows"] == 12
    assert len(last["importance"]) == 4 and last["top"][0] in last["importance"]
    assert max(last["importance"].values()) == pytest.approx(
        last["importance"][last["top"][0]])
    assert last["completeness_relative_gap"] < 0.01
    assert last["model_agreement"] == 1.0 and "warning" not in last
    assert set(last["per_class"]) <= {"class_0", "class_1", "class_2", "0", "1", "2"}
    final = result.audits["attributions"]["splits"]["test"]
    assert final["phases"] == ["epoch 0", "epoch 1", "epoch 2"]
    assert len(final["drift"]["cosine_distance"]) == 2
    assert all(-1 <= r <= 1 for r in final["drift"]["rank_correlation"])
    assert all(0 <= d <= 1 for d in final["drift"]["cosine_distance"])
    run_folder = Path(result.path)
    assert (run_folder / "explain" / "importance.png").stat().st_size > 1000
    assert (run_folder / "explain" / "drift.png").is_file()
    saved = json.loads((run_folder / "result.json").read_text())
    assert "attributions_importance" in saved["artifacts"]


def test_sensitive_groups_of_the_tiny_dataset(registry):
    auditor = {"name": "attributions", "method": "exact_shapley", "rows": 40, "groups": 8}
    spec = _spec(dataset="paralab_tiny", auditors=[auditor])
    spec["protocol"]["epochs"] = 1
    result = paralab.run(spec, registry=registry)
    audit = result.phases[-1]["audits"]["attributions/test"]
    groups = audit["per_group"]["group"]
    # "group" is metadata, not an input column: no share, but importance per group value
    assert "share" not in groups
    assert sum(entry["rows"] for entry in groups["groups"].values()) == 40
    assert set(groups["groups"]) == {"a", "b"}
    assert audit["completeness_relative_gap"] < 1e-4  # exact Shapley values are efficient


def test_image_data_gets_heat_maps(registry, tmp_path):
    auditor = {"name": "attributions", "method": "saliency", "rows": 20}
    spec = _spec(str(tmp_path), dataset="digits", auditors=[auditor])
    spec["protocol"]["epochs"] = 1
    result = paralab.run(spec, registry=registry)
    plots = result.audits["attributions"]["plots"]
    assert plots["heat_map"] == "explain/importance.png"
    assert (Path(result.path) / "explain" / "importance_per_class.png").stat().st_size > 1000
    assert len(result.phases[-1]["audits"]["attributions/test"]["importance"]) == 64


def test_faithfulness_scores_each_method(registry):
    auditor = {"name": "faithfulness", "rows": 16, "steps": 16, "perturbations": 4,
               "methods": ["integrated_gradients", "saliency", "exact_shapley"], "groups": 6}
    spec = _spec(auditors=[auditor])
    spec["protocol"]["epochs"] = 2
    result = paralab.run(spec, registry=registry)
    final = result.audits["faithfulness"]
    scores = final["scores"]
    assert set(scores) == {"integrated_gradients", "saliency", "exact_shapley"}
    assert scores["exact_shapley"]["completeness_relative_gap"] < 1e-4
    assert scores["integrated_gradients"]["completeness_relative_gap"] < 0.05
    assert "completeness_gap" not in scores["saliency"]  # saliency is not additive
    for measure in ("deletion_auc", "insertion_auc"):
        assert 0 <= scores["exact_shapley"][measure] <= 1
    curve = scores["exact_shapley"]["deletion_curve"]
    assert len(curve) == 7 and curve[0] > curve[-1]
    # Shapley ordering deletes the evidence for the predicted class faster than it is inserted
    assert scores["exact_shapley"]["deletion_auc"] < scores["exact_shapley"]["insertion_auc"]
    assert "infidelity" in scores["integrated_gradients"]
    assert "sensitivity_max" in scores["saliency"]
    assert set(final["best_first"]["deletion_auc"]) == set(scores)


@pytest.mark.parametrize(
    ("auditor", "needle"),
    [
        ({"name": "attributions", "method": "shapley"}, "did you mean 'exact_shapley'"),
        ({"name": "attributions", "baseline": [0.0, 1.0]}, "13 features per row"),
        ({"name": "attributions", "method": "exact_shapley", "max_players": 8},
         "13 players means 2^13 = 8,192"),
        ({"name": "attributions", "per_group": ["race"]}, "does not have"),
        ({"name": "faithfulness", "methods": []}, "methods = []: needs at least 1 entries"),
        ({"name": "attributions", "target": "best"}, "expected one of 'predicted', 'true'"),
        # declared, several types: the names are the auditor's validate(run)
        ({"name": "attributions", "baseline": "median"}, "'median' unknown"),
        ({"name": "attributions", "method": "kernel_shap", "samples": "many"},
         "samples = 'many' unknown"),
        ({"name": "faithfulness", "methods": "saliancy"}, "methods = 'saliancy': method: "
         "'saliancy' unknown (did you mean 'saliency'?)"),
        ({"name": "attributions", "groups": "patches:2"}, "needs image data"),
        # declared constraints
        ({"name": "attributions", "rows": 0}, "auditors[0].rows = 0: must be >= 1"),
        ({"name": "attributions", "steps": 1}, "auditors[0].steps = 1: must be >= 2"),
        ({"name": "attributions", "integration": "simpson"}, "auditors[0].integration"),
        ({"name": "attributions", "output": "odds"}, "auditors[0].output = 'odds'"),
        ({"name": "attributions", "baseline": {"x": 1}}, "auditors[0].baseline"),
        ({"name": "attributions", "baseline": [0.0, float("nan")]}, "entry [1] must be a finite"),
        ({"name": "attributions", "groups": True}, "auditors[0].groups = True"),
        ({"name": "attributions", "groups": 0}, "auditors[0].groups = 0: must be >= 1"),
        ({"name": "attributions", "samples": 0}, "auditors[0].samples = 0: must be >= 1"),
        ({"name": "attributions", "per_group": [1]}, "auditors[0].per_group = [1]"),
        ({"name": "attributions", "max_players": 0}, "auditors[0].max_players = 0"),
        ({"name": "attributions", "seed": -1}, "auditors[0].seed = -1: must be >= 0"),
        ({"name": "faithfulness", "methods": ["saliency", "shap"]}, "entry [1] expected one of"),
        ({"name": "faithfulness", "noise": 0.0}, "auditors[0].noise = 0.0: must be > 0"),
        ({"name": "faithfulness", "points": 1}, "auditors[0].points = 1: must be >= 2"),
        ({"name": "attributions", "target_error": 0.0}, "auditors[0].target_error = 0.0: must be > 0"),
        ({"name": "attributions", "permutations": 1}, "auditors[0].permutations = 1: must be >= 2"),
        ({"name": "attributions", "method": "exact_shapley", "background": "median:3"},
         "background: 'median:3' unknown"),
        ({"name": "attributions", "method": "gradcam"}, "has no nn.Conv2d layer"),
        ({"name": "attributions", "method": "occlusion", "window": 20}, "window: 20 does not fit"),
        ({"name": "sanity", "randomization": "shuffle"}, "auditors[0].randomization"),
        # options only some methods read (used_when), set where none of the methods does
        ({"name": "attributions", "background": "kmeans:4"},
         "auditors[0].background: auditor 'attributions' (paralab_explain) uses it only when "
         "method = 'exact_shapley' or 'kernel_shap' or 'permutation_shapley', and here method "
         "= 'integrated_gradients'"),
        ({"name": "faithfulness", "layer": "0"},
         "auditors[0].layer: auditor 'faithfulness' (paralab_explain) uses it only when methods "
         "includes 'gradcam' or 'layer_integrated_gradients', and here methods = "
         "['integrated_gradients', 'saliency', 'deeplift', 'gradient_shap']"),
        ({"name": "sanity", "samples": 100}, "auditors[0].samples: auditor 'sanity'"),
        ({"name": "attributions", "method": "saliency", "steps": 8}, "auditors[0].steps:"),
        ({"name": "faithfulness", "methods": ["saliency"], "window": 3}, "auditors[0].window:"),
    ],
)
def test_bad_options_fail_before_training(registry, auditor, needle, tmp_path):
    # Option values are checked by their declarations in the spec or, for checks that need the
    # data and the model, by the auditor's validate(run) before training: either way a
    # SpecError, and no run folder.
    with pytest.raises(paralab.SpecError) as error:
        paralab.run(_spec(str(tmp_path), auditors=[auditor]), registry=registry)
    assert needle in str(error.value)
    assert "auditors[0]" in str(error.value) and "paralab_explain" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_one_name_may_stand_for_a_list(registry):
    auditors = [{"name": "attributions", "rows": 8, "steps": 8, "per_group": "group",
                 "baseline": 0},
                {"name": "faithfulness", "rows": 4, "perturbations": 2, "methods": "saliency"}]
    spec = _spec(dataset="paralab_tiny", auditors=auditors)
    spec["protocol"]["epochs"] = 1
    result = paralab.run(spec, registry=registry)
    audits = result.phases[-1]["audits"]
    assert set(audits["attributions/test"]["per_group"]) == {"group"}
    assert set(result.audits["faithfulness"]["scores"]) == {"saliency"}


def test_every_component_declares_its_factory_signature(registry):
    components = components_of(registry, "paralab_explain")
    assert {component.name for component in components} == {"attributions", "faithfulness",
                                                             "sanity"}
    for component in components:
        assert signature_mismatches(component) == [], component.name
        for name, option in component.declared_options().items():
            assert option.problem(option.default) is None, f"{component.name}.{name}"


def test_unknown_option_is_a_spec_error(registry):
    with pytest.raises(paralab.SpecError, match="rowz"):
        paralab.run(_spec(auditors=[{"name": "attributions", "rowz": 3}]), registry=registry)


def test_adult_sensitive_attribute_share_with_exact_shapley_over_columns(registry, data_root):
    """Adult's 104 encoded columns as its 14 original columns: how much do sex and race drive
    the income decisions of a trained model, overall and within each group?"""
    auditor = {"name": "attributions", "method": "exact_shapley", "groups": "columns",
               "rows": 60, "plots": False}
    spec = _spec(dataset={"name": "adult", "root": str(data_root / "adult")},
                 auditors=[auditor])
    spec["protocol"] = {"name": "supervised", "epochs": 1, "batch_size": 512}
    result = paralab.run(spec, registry=registry)
    audit = result.phases[-1]["audits"]["attributions/test"]
    assert len(audit["importance"]) == 14
    assert {"sex", "race", "age", "relationship"} <= set(audit["importance"])
    assert audit["completeness_relative_gap"] < 1e-4
    sex = audit["per_group"]["sex"]
    assert 0 < sex["share"] < 1
    assert set(sex["groups"]) == {"Female", "Male"}
    rows = sum(entry["rows"] for entry in sex["groups"].values())
    weighted = sum(entry["share"] * entry["rows"] for entry in sex["groups"].values()) / rows
    assert weighted == pytest.approx(sex["share"], abs=1e-5)
    assert "push" in sex["groups"]["Female"]
    race = audit["per_group"]["race"]
    assert 0 < race["share"] < 1 and set(race["groups"]) <= set(
        ("Amer-Indian-Eskimo", "Asian-Pac-Islander", "Black", "Other", "White"))


class _OtherPredictor:
    """A protocol whose evaluated predictions come from a constant classifier, not run.model
    (like an estimator protocol or per-task heads)."""

    def execute(self, run):
        import torch

        from paralab.evaluation import Predictions

        test = run.dataset.split("test")
        logits = torch.zeros(len(test), run.info.n_classes)
        logits[:, 0] = 1.0
        with run.phase("epoch", 0):
            run.evaluate("test", predictions=Predictions(logits, test.y, test.indices,
                                                         run.dataset, "test"))


class _OtherPredictorPlugin:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_protocols(self):
        return [paralab.ProtocolSpec("other_predictor", _OtherPredictor, "test protocol"),
                paralab.ProtocolSpec("modelless", _OtherPredictor, "test protocol",
                                     uses_model=False)]

    @paralab.hookimpl
    def paralab_methods(self):
        return [paralab.MethodSpec("noop", "paralab.methods:SGD", "test method",
                                   protocols=("other_predictor", "modelless"))]


def test_predictions_not_made_by_run_model_are_flagged(registry):
    registry.add("explain_other_predictor", _OtherPredictorPlugin())
    spec = _spec(protocol="other_predictor", method="noop",
                 auditors=[{"name": "attributions", "rows": 20, "steps": 8}])
    result = paralab.run(spec, registry=registry)
    audit = result.phases[-1]["audits"]["attributions/test"]
    assert audit["model_agreement"] < 1.0
    assert "another predictor" in audit["warning"]


def test_a_run_without_a_torch_model_is_refused_before_it_starts(registry):
    registry.add("explain_other_predictor", _OtherPredictorPlugin())
    spec = _spec(protocol="modelless", method="noop", auditors=["attributions"])
    del spec["model"]
    with pytest.raises(paralab.SpecError, match="auditors\\[0\\]: auditor 'attributions'.*uses no model"):
        paralab.run(spec, registry=registry)
