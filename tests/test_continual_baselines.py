"""Baselines: ``joint`` is offline training on the union of the stream (the upper bound),
``cumulative`` trains on the union seen so far at each experience; and EWC's step, term by
term, against Avalanche's EWCPlugin (Fisher, its normalisation, the penalty's factor)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import paralab
from paralab import LossSpec, hookimpl, load_dataset
from paralab.testing import isolated_registry
from paralab_continual.scenarios import build_stream
from paralab_continual.strategies import EWC
from tests.continual_helpers import CountingLoss, small_continual_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


class _LossPlugin:
    PARALAB_API = "1.0"

    @hookimpl
    def paralab_losses(self):
        return [LossSpec("counting", CountingLoss, "Counts its calls.", {"weight": 0.0})]


def _steps(method: str, epochs: int) -> tuple[paralab.Result, int]:
    import paralab_continual

    registry = isolated_registry(("paralab_continual", paralab_continual), ("l", _LossPlugin()))
    spec = small_continual_spec(method, epochs=epochs)
    spec["losses"] = ["counting"]
    CountingLoss.calls = 0
    result = paralab.run(spec, registry=registry)
    return result, CountingLoss.calls


def test_joint_trains_offline_on_the_union_once():
    result, steps = _steps("joint", epochs=5)
    stream = build_stream(load_dataset("digits"), experiences=3, seed=0)
    total = sum(len(e.train) for e in stream)
    assert steps == 5 * math.ceil(total / 32)  # epochs over the whole union, once
    matrix = result.metrics["accuracy_matrix"]
    assert matrix[0] == matrix[1] == matrix[2]  # nothing trained after the offline phase
    assert result.metrics["forgetting"] == 0.0
    assert min(matrix[-1]) > 0.7 and result.metrics["average_accuracy"] > 0.8, matrix
    losses = [p["metrics"].get("train/loss") for p in result.phases if p["kind"] == "experience"]
    assert losses[0] > 0 and losses[1:] == [None, None]  # no loss where nothing trained


def test_cumulative_trains_on_the_union_seen_so_far():
    result, steps = _steps("cumulative", epochs=1)
    stream = build_stream(load_dataset("digits"), experiences=3, seed=0)
    sizes = [len(e.train) for e in stream]
    assert steps == sum(math.ceil(sum(sizes[: i + 1]) / 32) for i in range(3))
    matrix = result.metrics["accuracy_matrix"]
    assert matrix[0] != matrix[1] != matrix[2]
    three = {name: paralab.run(small_continual_spec(name, epochs=3)).metrics
             for name in ("naive", "cumulative", "joint")}
    lower = three["naive"]["average_accuracy"]
    assert three["joint"]["average_accuracy"] > lower + 0.3
    assert three["cumulative"]["average_accuracy"] > lower + 0.3


def test_joint_and_cumulative_stack_seeds_like_separate_runs():
    for method in ("joint", "cumulative"):
        spec = small_continual_spec(method)
        stacked = paralab.run_seeds(spec, [0, 1])
        assert stacked[0].provenance["seed_axis"]["stacked"] == 2
        separate = paralab.run_seeds(spec, [0, 1], vectorize=False)
        for a, b in zip(stacked, separate):
            flat_a = [v for row in a.metrics["accuracy_matrix"] for v in row]
            flat_b = [v for row in b.metrics["accuracy_matrix"] for v in row]
            assert flat_a == pytest.approx(flat_b, abs=1 / 60)
            assert [p["metrics"].get("train/loss") is None for p in a.phases] == \
                [p["metrics"].get("train/loss") is None for p in b.phases]


# ------------------------------------------------------------- EWC against Avalanche's


class _Clock:
    train_exp_counter = 1


class _AvalancheStrategy:
    """What EWCPlugin.before_backward reads of a strategy."""

    def __init__(self, model, loss):
        self.model = model
        self.loss = loss
        self.device = "cpu"
        self.clock = _Clock()


@pytest.mark.parametrize("ewc_lambda", [1.0, 1000.0])
def test_one_ewc_step_equals_avalanches_ewc_step(ewc_lambda):
    """From the same weights, Fisher and anchors, one SGD step of paralab's EWC on a batch
    of the second experience is Avalanche's step: loss + lambda * sum F (theta - theta*)^2
    (no 1/2), backward, SGD. Covers the Fisher (mean over minibatches of squared mean-loss
    gradients), its normalisation and the penalty's factor together."""
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
    from avalanche.training.plugins import EWCPlugin

    dataset = load_dataset("digits")
    stream = build_stream(dataset, experiences=5)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    theirs_model = copy.deepcopy(model)

    class Run:
        generator = torch.Generator().manual_seed(0)
        loss_terms: dict = {}

    run = Run()
    run.model, run.dataset = model, dataset
    ewc = EWC(ewc_lambda=ewc_lambda, lr=0.1)
    ewc.bind(stream)
    ewc.setup(None, model)
    ewc.after_experience(run, stream[0])  # Fisher and anchors of experience 0
    saved = copy.deepcopy(model)  # the anchors
    # Move away from the anchors so the penalty acts.
    with torch.no_grad():
        for p, q in zip(model.parameters(), theirs_model.parameters()):
            p.add_(0.05 * torch.randn_like(p))
            q.copy_(p)
    plugin = EWCPlugin(ewc_lambda)
    rows = stream[0].train
    data = _make_taskaware_tensor_classification_dataset(
        dataset.x[rows], dataset.y[rows], task_labels=0, targets=dataset.y[rows].tolist())
    importances = plugin.compute_importances(
        saved, torch.nn.CrossEntropyLoss(), torch.optim.SGD(saved.parameters(), lr=0.1), data,
        "cpu", 32)
    for (name, _), ours in zip(saved.named_parameters(), ewc.plugin.curvature):
        assert torch.allclose(importances[name].data, ours, rtol=1e-4, atol=1e-10), name
    from avalanche.training.utils import copy_params_dict

    plugin.importances[0] = importances
    plugin.saved_params[0] = copy_params_dict(saved)
    x, y = dataset.x[stream[1].train[:32]], dataset.y[stream[1].train[:32]]
    # Ours.
    ewc.train_step(run, model, x, y, stream[1].train[:32], torch.ones(32, dtype=torch.long))
    # Theirs.
    optimizer = torch.optim.SGD(theirs_model.parameters(), lr=0.1)
    optimizer.zero_grad()
    strategy = _AvalancheStrategy(theirs_model,
                                  torch.nn.functional.cross_entropy(theirs_model(x), y))
    plugin.before_backward(strategy)
    strategy.loss.backward()
    optimizer.step()
    for (name, theirs), ours in zip(theirs_model.named_parameters(), model.parameters()):
        assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6), name


def test_the_fisher_minibatch_is_the_training_batch_by_default():
    """Avalanche computes EWC's Fisher over minibatches of ``train_mb_size``; so does paralab
    unless ``fisher_batch_size`` says otherwise (its scale depends on the minibatch size)."""
    def run(**method):
        spec = small_continual_spec({"name": "ewc", "ewc_lambda": 100.0, **method},
                                    batch_size=64)
        return paralab.run(spec)

    default, matched, other = run(), run(fisher_batch_size=64), run(fisher_batch_size=16)
    assert default.metrics["accuracy_matrix"] == matched.metrics["accuracy_matrix"]
    assert default.metrics["accuracy_matrix"] != other.metrics["accuracy_matrix"]
    # The stacked Fisher takes the same minibatches: seed 0 stacked is the single run.
    spec = small_continual_spec({"name": "ewc", "ewc_lambda": 100.0}, batch_size=64)
    stacked = paralab.run_seeds(spec, [0, 1])
    assert stacked[0].provenance["seed_axis"]["stacked"] == 2
    flat = [v for row in stacked[0].metrics["accuracy_matrix"] for v in row]
    assert flat == pytest.approx(
        [v for row in default.metrics["accuracy_matrix"] for v in row], abs=1 / 60)
