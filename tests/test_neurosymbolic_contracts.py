"""The neurosymbolic components against the typed contracts: declared options that agree with
the factories, every bad option or data mismatch a SpecError naming the field before any run
folder exists, and both protocols training only through the method's interface (a
``loss()`` override is honoured, loss terms are applied once and see the same batch as
before)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

import paralab
import paralab_neurosymbolic
from paralab.testing import isolated_registry
from paralab.testing.conformance import declaration_problems

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest

PLUGIN = "paralab_neurosymbolic"


def addition_spec(**protocol: Any) -> dict[str, Any]:
    return {
        "name": "addition",
        "dataset": "digits",
        "model": {"name": "mlp", "hidden": [32]},
        "protocol": {"name": "addition", "batch_size": 16, "pairs": 96, "test_pairs": 32,
                     **protocol},
        "method": {"name": "sgd", "lr": 0.05},
        "device": "cpu",
        "output": None,
    }


def hierarchy_spec(**protocol: Any) -> dict[str, Any]:
    return {
        "name": "hierarchy",
        "dataset": {"name": "class_hierarchy", "base": "digits", "hierarchy": "digits"},
        "model": {"name": "mlp", "hidden": [32]},
        "protocol": {"name": "hierarchical", "epochs": 1, "batch_size": 64, **protocol},
        "method": {"name": "sgd", "lr": 0.05},
        "metrics": ["accuracy"],
        "device": "cpu",
        "output": None,
    }


def rejected(spec: dict[str, Any], tmp_path: Path, *fragments: str,
             registry: Any = None) -> str:
    """The SpecError's text for ``spec`` run into ``tmp_path``; no run folder may exist."""
    spec = {**spec, "output": str(tmp_path / "runs")}
    with pytest.raises(paralab.SpecError) as failure:
        paralab.run(spec, registry=registry)
    message = str(failure.value)
    for fragment in fragments:
        assert fragment in message, message
    assert not (tmp_path / "runs").exists()
    return message


# ----------------------------------------------------------------------------- declarations


def _specs() -> list[Any]:
    registry = paralab.get_registry()
    return [spec for specs in registry.components.values() for spec in specs.values()
            if spec.provider == PLUGIN]


def test_every_declaration_matches_its_factory_and_meets_its_own_constraints() -> None:
    specs = _specs()
    assert {(spec.kind, spec.name) for spec in specs} == {
        ("dataset", "class_hierarchy"), ("model", "lenet"), ("protocol", "addition"),
        ("protocol", "hierarchical"), ("protocol", "logic"), ("loss", "semantic_loss"),
        ("dataset", "kinship"), ("protocol", "kinship"), ("protocol", "grid_path"),
        ("metric", "exactly_one_violations"), ("metric", "hierarchy_violations"),
    }
    for spec in specs:
        assert declaration_problems(spec) == [], (spec.kind, spec.name)


def test_the_light_copies_of_the_choices_equal_the_code() -> None:
    from paralab_neurosymbolic import addition, semantic
    from paralab_neurosymbolic.logic import MODES

    assert paralab_neurosymbolic.INFERENCE_MODES == MODES
    assert paralab_neurosymbolic.CONSTRAINTS == semantic.CONSTRAINTS
    assert paralab_neurosymbolic.MAX_DIGITS == addition.MAX_DIGITS


def test_protocols_declare_what_they_consume() -> None:
    protocols = paralab.get_registry().components["protocol"]
    for name in ("addition", "hierarchical", "kinship", "grid_path"):
        spec = protocols[name]
        assert spec.method_interface == "GradientMethod"
        assert spec.applies_losses and spec.middleware_hooks == ()
        assert isinstance(spec.load()(), paralab.Protocol)
    from paralab_neurosymbolic.semantic import HierarchyViolations, SemanticLoss

    assert isinstance(SemanticLoss(), paralab.LossTerm)
    assert isinstance(HierarchyViolations(), paralab.Metric)


# ----------------------------------------------------------------------- declared rejections


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("digits_per_number", 16, "must be <= 15"),
        ("digits_per_number", 0, "must be >= 1"),
        ("pairs", -1, "must be >= 0"),
        ("test_pairs", 1.5, "expected int"),
        ("epochs", 0, "must be >= 1"),
        ("batch_size", 0, "must be >= 1"),
        ("inference", "magic", "expected one of 'exact', 'auto', 'topk', 'sample'"),
        ("top_k", 0, "must be >= 1"),
        ("samples", 0, "must be >= 1"),
        ("exact_budget", 0, "must be >= 1"),
        ("train_split", "", "at least 1"),
        ("eval_splits", ["test", 3], "entry [1]"),
    ],
)
def test_bad_addition_options_are_spec_errors(tmp_path: Path, field: str, value: Any,
                                              fragment: str) -> None:
    rejected(addition_spec(**{field: value}), tmp_path, f"protocol.{field} = {value!r}",
             fragment, PLUGIN)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("semantic_weight", -0.1, "must be >= 0"),
        ("semantic_weight", float("nan"), "finite"),
        ("labelled", 0.0, "must be > 0"),
        ("labelled", 1.5, "must be <= 1"),
        ("labelled", float("inf"), "finite"),
        ("epochs", 0, "must be >= 1"),
        ("hierarchy", "", "at least 1"),
    ],
)
def test_bad_hierarchical_options_are_spec_errors(tmp_path: Path, field: str, value: Any,
                                                  fragment: str) -> None:
    rejected(hierarchy_spec(**{field: value}), tmp_path, f"protocol.{field} = ", fragment)


@pytest.mark.parametrize(
    ("options", "field", "fragment"),
    [
        ({"constraint": "exactly_two"}, "losses[0].constraint", "did you mean 'exactly_one'"),
        ({"weight": -1.0}, "losses[0].weight", "must be >= 0"),
        ({"weight": float("inf")}, "losses[0].weight", "finite"),
        ({"hierarchy": 3}, "losses[0].hierarchy", "expected str"),
    ],
)
def test_bad_semantic_loss_options_are_spec_errors(tmp_path: Path, options: dict, field: str,
                                                   fragment: str) -> None:
    spec = {**hierarchy_spec(), "losses": [{"name": "semantic_loss", **options}]}
    rejected(spec, tmp_path, field, fragment)


def test_bad_dataset_and_metric_options_are_spec_errors(tmp_path: Path) -> None:
    spec = hierarchy_spec()
    spec["dataset"] = {"name": "class_hierarchy", "base": ""}
    rejected(spec, tmp_path, "dataset.base = ''", "at least 1")
    spec = {**hierarchy_spec(), "metrics": [{"name": "hierarchy_violations", "hierarchy": 1}]}
    rejected(spec, tmp_path, "metrics[0].hierarchy = 1", "expected str")


# ------------------------------------------------------------------ rejections by validate(run)


def test_addition_options_that_do_not_fit_the_data_are_spec_errors(tmp_path: Path) -> None:
    rejected({**addition_spec(), "dataset": "iris"}, tmp_path, "protocol: protocol 'addition'",
             "needs a 10-class digit dataset", "'iris' has 3 classes")
    rejected(addition_spec(train_split="nope"), tmp_path, "train_split = 'nope' is not a split",
             "its splits: test, train")
    rejected(addition_spec(eval_splits=["test", "nope"]), tmp_path,
             "eval_splits[1] = 'nope' is not a split")
    rejected(addition_spec(digits_per_number=3, exact_budget=100), tmp_path,
             "inference = 'exact', digits_per_number = 3", "> exact_budget 100",
             "`inference` option")


def test_hierarchical_options_that_do_not_fit_the_data_are_spec_errors(tmp_path: Path) -> None:
    rejected({**hierarchy_spec(), "dataset": "digits"}, tmp_path,
             "protocol: protocol 'hierarchical'", "hierarchy = 'digits': dataset 'digits' has",
             "class_hierarchy")
    rejected(hierarchy_spec(eval_splits=["validation"]), tmp_path,
             "eval_splits[0] = 'validation' is not a split")
    rejected({**hierarchy_spec(), "dataset": "digits", "protocol": {
        "name": "hierarchical", "hierarchy": str(tmp_path / "missing.kb")}},
        tmp_path, "hierarchy = ", "missing.kb does not exist")
    # a protocol hierarchy that the class_hierarchy dataset would override
    other = tmp_path / "other.kb"
    other.write_text(Path(paralab_neurosymbolic.__file__).with_name("data").joinpath(
        "digits.kb").read_text())
    rejected(hierarchy_spec(hierarchy=str(other)), tmp_path, "other.kb",
             "which is the one trained on")


def test_lenet_on_a_dataset_without_images_is_a_spec_error(tmp_path: Path) -> None:
    spec = {"dataset": "iris", "model": "lenet", "protocol": {"name": "supervised", "epochs": 1}}
    rejected(spec, tmp_path, "model: model 'lenet'", "lenet: dataset 'iris'", "no image_shape")


def test_a_protocol_hierarchy_equal_to_the_datasets_is_accepted() -> None:
    kb = Path(paralab_neurosymbolic.__file__).with_name("data") / "digits.kb"
    result = paralab.run(hierarchy_spec(hierarchy=str(kb)))
    assert result.status == "completed"


def test_semantic_loss_and_metric_options_that_do_not_fit_the_data(tmp_path: Path) -> None:
    supervised = {
        "name": "semantic", "dataset": "digits", "model": {"name": "mlp", "hidden": [16]},
        "protocol": {"name": "supervised", "epochs": 1}, "device": "cpu",
    }
    rejected({**supervised, "losses": [{"name": "semantic_loss", "constraint": "hierarchy"}]},
             tmp_path, "losses[0]: loss 'semantic_loss'", "the DAG has 15 nodes",
             "'digits' has 10 classes")
    rejected({**supervised, "losses": [{"name": "semantic_loss", "constraint": "hierarchy",
                                        "hierarchy": "nowhere.kb"}]},
             tmp_path, "hierarchy = 'nowhere.kb'", "does not exist")
    rejected({**supervised, "metrics": [{"name": "hierarchy_violations",
                                         "hierarchy": "nowhere.kb"}]},
             tmp_path, "metrics[0]: metric 'hierarchy_violations'", "does not exist")


# ------------------------------------------------------ training through the method's interface


class ScaledSGD(paralab.OptimizerMethod):
    """SGD whose ``loss()`` is ``scale * loss + shift``; keeps the models it trained."""

    trained: ClassVar[list[tuple[dict, torch.nn.Module]]] = []

    def __init__(self, lr: float = 0.05, scale: float = 1.0, shift: float = 0.0) -> None:
        super().__init__(lr)
        self.scale, self.shift = scale, shift

    def make_optimizer(self, parameters: Any) -> torch.optim.Optimizer:
        return torch.optim.SGD(parameters, lr=self.lr)

    def setup(self, run: Any, model: torch.nn.Module) -> None:
        super().setup(run, model)
        ScaledSGD.trained.append((copy.deepcopy(model.state_dict()), model))

    def loss(self, run: Any, batch: paralab.Batch) -> torch.Tensor:
        return self.scale * super().loss(run, batch) + self.shift


class ConstantTerm(paralab.LossTerm):
    """A loss term worth ``value`` with no gradient; records whether each batch's targets were
    the network's own guesses (argmax of its logits)."""

    seen: ClassVar[list[bool]] = []

    def __init__(self, value: float = 7.0) -> None:
        self.value = value

    def __call__(self, batch: paralab.Batch) -> torch.Tensor:
        guesses = batch.logits.detach().argmax(dim=-1)
        ConstantTerm.seen.append(bool(torch.equal(batch.targets, guesses)))
        return torch.tensor(self.value)


class _TestPlugin:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_methods(self) -> list[paralab.MethodSpec]:
        return [paralab.MethodSpec(
            "scaled_sgd", ScaledSGD, "SGD with a scaled and shifted loss()",
            {"lr": paralab.positive(0.05), "scale": 1.0, "shift": 0.0}, family="gradient")]

    @paralab.hookimpl
    def paralab_losses(self) -> list[paralab.LossSpec]:
        return [paralab.LossSpec("constant_term", ConstantTerm, "a constant loss term",
                                 {"value": 7.0})]


@pytest.fixture(scope="module")
def registry() -> Any:
    return isolated_registry((PLUGIN, paralab_neurosymbolic), ("neurosymbolic_test", _TestPlugin()))


def _train(registry: Any, spec: dict[str, Any], method: dict[str, Any],
           losses: list | None = None) -> tuple[paralab.Result, dict, torch.nn.Module]:
    ScaledSGD.trained.clear()
    result = paralab.run({**spec, "method": method, "losses": losses or []}, registry=registry)
    assert result.status == "completed"
    initial, model = ScaledSGD.trained[-1] if ScaledSGD.trained else ({}, None)
    return result, initial, model


def _scores(result: paralab.Result) -> dict[str, float]:
    return {key: value for key, value in result.metrics.items() if "seconds" not in key}


def _losses(result: paralab.Result) -> list[float]:
    return [phase["metrics"]["train/loss"] for phase in result.phases]


def _same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.parametrize("make_spec", [addition_spec, hierarchy_spec],
                         ids=["addition", "hierarchical"])
def test_a_loss_override_decides_what_the_protocol_minimizes(registry: Any, make_spec) -> None:
    spec = make_spec()
    plain, _, _ = _train(registry, spec, {"name": "sgd", "lr": 0.05})
    same, initial, model = _train(registry, spec, {"name": "scaled_sgd", "lr": 0.05})
    # the subclass with scale 1 is plain SGD: the same numbers
    assert _losses(same) == _losses(plain) and _scores(same) == _scores(plain)
    trained = copy.deepcopy(model.state_dict())
    assert not _same_weights(initial, trained)
    # scale 0: the override zeroes every gradient, so nothing moves
    frozen, initial, model = _train(registry, spec, {"name": "scaled_sgd", "scale": 0.0})
    assert _same_weights(initial, model.state_dict())
    assert _losses(frozen) == [0.0]
    # scale 3: a different trajectory
    steeper, _, model = _train(registry, spec, {"name": "scaled_sgd", "scale": 3.0})
    assert not _same_weights(trained, model.state_dict())
    # a shift changes the loss the protocol reports, not the gradient
    shifted, _, model = _train(registry, spec, {"name": "scaled_sgd", "shift": 100.0})
    assert _same_weights(trained, model.state_dict())
    assert _losses(shifted) == pytest.approx([x + 100.0 for x in _losses(plain)])


@pytest.mark.parametrize("make_spec", [addition_spec, hierarchy_spec],
                         ids=["addition", "hierarchical"])
def test_loss_terms_are_added_once_through_the_method(registry: Any, make_spec) -> None:
    spec = make_spec()
    plain, _, trained = _train(registry, spec, {"name": "scaled_sgd"})
    weights = copy.deepcopy(trained.state_dict())
    ConstantTerm.seen.clear()
    with_term, _, model = _train(registry, spec, {"name": "scaled_sgd"},
                                 [{"name": "constant_term", "value": 7.0}])
    assert _losses(with_term) == pytest.approx([x + 7.0 for x in _losses(plain)])
    assert _same_weights(weights, model.state_dict())
    assert ConstantTerm.seen
    if make_spec is addition_spec:
        # addition never shows digit labels: loss terms see the network's own guesses
        assert all(ConstantTerm.seen)
