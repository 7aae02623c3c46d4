"""The neurosymbolic components end to end through ``paralab.run``: MNIST addition on the
embedded digits and on real MNIST, hierarchical classification over a class DAG, the semantic
loss under the supervised protocol, and the errors bad input gets before training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import paralab

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


def addition_spec(**protocol: Any) -> dict[str, Any]:
    return {
        "name": "addition",
        "dataset": "digits",
        "model": {"name": "mlp", "hidden": [128]},
        "protocol": {"name": "addition", "batch_size": 16, **protocol},
        "method": {"name": "adam", "lr": 0.003},
        "output": None,
        "device": "cpu",
    }


def test_single_digit_addition_learns_digits_it_never_saw_labelled() -> None:
    result = paralab.run(addition_spec(epochs=3))
    assert result.status == "completed" and len(result.phases) == 3
    losses = [phase["metrics"]["train/loss"] for phase in result.phases]
    assert losses[-1] < losses[0]
    assert result.metrics["test/sum_accuracy"] >= 0.7
    # the digit accuracy that emerged, measured on single test digits (chance: 0.1)
    assert result.metrics["test/accuracy"] >= 0.8


def test_two_digit_addition_recombines_images_into_more_examples() -> None:
    result = paralab.run(addition_spec(digits_per_number=2, pairs=1500, epochs=2))
    assert result.phases[0]["info"]["examples"] == 1500
    assert result.metrics["test/sum_accuracy"] >= 0.5
    assert result.metrics["test/accuracy"] >= 0.8


def test_addition_on_real_mnist(data_root: Path) -> None:
    spec = addition_spec(pairs=2000, test_pairs=1000, epochs=1)
    spec["dataset"] = {"name": "mnist", "root": str(data_root / "mnist")}
    result = paralab.run(spec)
    assert result.metrics["test/sum_accuracy"] >= 0.6
    assert result.metrics["test/accuracy"] >= 0.75


def test_approximate_inference_trains_when_asked() -> None:
    # Training maximises the mass of the top-k proofs of each observed sum; a one-digit sum
    # has at most 10 proofs, so k = 5 is a real approximation.
    result = paralab.run(addition_spec(epochs=3, inference="topk", top_k=5))
    assert result.metrics["test/accuracy"] >= 0.65  # measured 0.76 (exact: 0.9)
    assert result.metrics["test/sum_accuracy"] >= 0.45


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"digits_per_number": 16}, "protocol.digits_per_number = 16: must be <= 15"),
        ({"inference": "magic"}, "protocol.inference = 'magic': expected one of 'exact'"),
        ({"exact_budget": 100}, r"exact_budget 100; raise exact_budget, or use mode='auto'"),
    ],
)
def test_bad_protocol_options_fail_before_training(tmp_path: Path, options: dict,
                                                   message: str) -> None:
    # declared constraints (and the protocol's validate(run)) reject the spec, naming the field
    spec = {**addition_spec(**options), "output": str(tmp_path)}
    with pytest.raises(paralab.SpecError, match=message) as failure:
        paralab.run(spec)
    assert "protocol 'addition'" in str(failure.value)
    assert "paralab_neurosymbolic" in str(failure.value)
    assert not any(tmp_path.iterdir())


def test_over_budget_query_switches_to_approximate_with_auto() -> None:
    result = paralab.run(addition_spec(exact_budget=100, inference="auto", pairs=200, test_pairs=50))
    assert result.status == "completed"


def test_unknown_option_is_a_spec_error_naming_the_valid_ones() -> None:
    with pytest.raises(paralab.SpecError, match="digits_per_numbr"):
        paralab.run(addition_spec(digits_per_numbr=2))


def test_addition_needs_a_ten_class_dataset() -> None:
    spec = addition_spec()
    spec["dataset"] = "iris"
    with pytest.raises(paralab.SpecError, match="needs a 10-class digit dataset .* 'iris' has 3 classes"):
        paralab.run(spec)


def hierarchy_spec(**protocol: Any) -> dict[str, Any]:
    return {
        "name": "hierarchy",
        "dataset": {"name": "class_hierarchy", "base": "digits", "hierarchy": "digits"},
        "model": {"name": "mlp", "hidden": [64]},
        "protocol": {"name": "hierarchical", "epochs": 4, **protocol},
        "method": {"name": "adam", "lr": 0.003},
        "metrics": ["accuracy", "hierarchy_violations"],
        "output": None,
        "device": "cpu",
    }


def test_hierarchical_classification_reports_constraint_violations() -> None:
    result = paralab.run(hierarchy_spec())
    metrics = result.metrics
    assert metrics["test/accuracy"] >= 0.85  # consistent decoding: always a valid world
    assert 0.0 <= metrics["test/violations"] <= 1.0
    assert metrics["test/hierarchy_violations"] == pytest.approx(metrics["test/violations"])
    # semi-supervised: 10% of the rows keep labels, the rest see only the semantic loss
    partial = paralab.run(hierarchy_spec(semantic_weight=0.1, labelled=0.1))
    assert partial.phases[0]["info"]["labelled"] == round(0.1 * 1437)
    assert partial.metrics["test/accuracy"] >= 0.6


def test_hierarchical_needs_the_dag_nodes_as_classes() -> None:
    spec = hierarchy_spec()
    spec["dataset"] = "digits"
    with pytest.raises(paralab.SpecError, match="use dataset = .*class_hierarchy"):
        paralab.run(spec)


def test_semantic_loss_composes_with_the_supervised_protocol() -> None:
    def run(losses: list) -> dict:
        return paralab.run({
            "name": "semantic",
            "dataset": "digits",
            "model": {"name": "mlp", "hidden": [64]},
            "protocol": {"name": "supervised", "epochs": 3},
            "method": {"name": "adam", "lr": 0.003},
            "losses": losses,
            "metrics": ["accuracy", "exactly_one_violations"],
            "output": None,
            "device": "cpu",
        }).metrics

    plain = run([])
    constrained = run([{"name": "semantic_loss", "constraint": "exactly_one", "weight": 1.0}])
    assert constrained["test/exactly_one_violations"] < plain["test/exactly_one_violations"] - 0.15
    assert constrained["test/accuracy"] >= 0.85


def test_lenet_is_deepproblogs_mnist_network() -> None:
    pytest.importorskip("deepproblog")
    import warnings

    from paralab.data import DatasetInfo
    from paralab_neurosymbolic.models import lenet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from deepproblog.examples.MNIST.network import MNIST_Net

    info = DatasetInfo("mnist", (1, 28, 28), 10, 784, image_shape=(1, 28, 28))
    ours, theirs = lenet(info), MNIST_Net(with_softmax=False)
    shapes = [tuple(p.shape) for p in ours.parameters()]
    assert shapes == [tuple(p.shape) for p in theirs.parameters()]
    ours.load_state_dict(theirs.state_dict())
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(ours(x), theirs(x))
    with pytest.raises(ValueError, match="lenet: dataset 'iris' .* no image_shape"):
        lenet(DatasetInfo("iris", (4,), 3, 4))


def test_semantic_loss_trains_under_the_federated_protocol() -> None:
    """A federated run trained under a constraint: the loss term reaches every client's
    local training through run.extra_loss."""
    if "federated" not in paralab.get_registry().components["protocol"]:
        pytest.skip("the federated protocol (paralab_federated) is not installed")

    def run(losses: list) -> dict:
        return paralab.run({
            "name": "federated-semantic",
            "dataset": "digits",
            "model": {"name": "mlp", "hidden": [64]},
            "protocol": {"name": "federated", "clients": 5, "rounds": 5, "local_epochs": 2,
                         "fraction": 1.0},
            "method": {"name": "fedavg"},
            "losses": losses,
            "metrics": ["accuracy", "exactly_one_violations"],
            "output": None,
            "device": "cpu",
        }).metrics

    plain = run([])
    constrained = run([{"name": "semantic_loss", "constraint": "exactly_one", "weight": 5.0}])
    # measured: 0.997 -> 0.836 violations, accuracy 0.84 -> 0.69
    assert constrained["test/exactly_one_violations"] < plain["test/exactly_one_violations"] - 0.1
    assert constrained["test/accuracy"] >= 0.5
