"""The seed axis of the ``federated`` protocol (seeds x clients): stacked seeds equal separate
runs.

Per seed, the stacked run must be the run its separate ``backend = "vmap"`` run makes: its
own partition, sampled clients, stragglers and minibatches, its own global model and server
state, the same phases (a seed that reaches its target accuracy stops at its own round),
evaluations and final weights. The reference is ``run_seeds(..., vectorize=False)``.

Tolerance, and why: per client, the stacked computation is the separate run's ``vmap`` of
the same gradient step over more clients (``K * C`` instead of ``C``), its minibatches padded
to the widest and longest of every seed's clients instead of its own seed's (padded rows have
weight 0 and padded steps move nothing). The batched kernels could sum in another order for
another batch count or padded width; measured on every configuration below (iid, Dirichlet,
shards and quantity skew, stragglers, FedSGD's full batches, FedProx, FedAdam, FedYogi): the
weights, losses and accuracies are bit-identical. The tests allow ``1e-6`` on weights, a
relative ``1e-6`` on losses and one test example on an accuracy, so that a BLAS that blocks
by batch count is not a failure, while any real difference (another client, minibatch, start
or anchor: measured >= 1e-3 on weights) is.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

import paralab
import paralab.seed_axis
from paralab import run_seeds
from paralab.components import MethodSpec
from paralab_federated.local_training import VmapTrainer
from paralab_federated.methods import FedAvg
from tests.federated_helpers import spec as federated_spec
from tests.seed_helpers import assert_runs_one_after_another, with_a_failing_seed

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEST_ROWS = 360  # digits' test split


def spec(method: Any = None, **protocol: Any) -> dict[str, Any]:
    options = {"clients": 10, "fraction": 0.5, "rounds": 4, "client_eval": True, **protocol}
    one = federated_spec(method or {"name": "fedavg", "lr": 0.3}, **options)
    one["metrics"] = ["accuracy", "loss"]
    return one


def max_difference(a: paralab.Result, b: paralab.Result) -> float:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[n].double() - sb[n].double()).abs().max()) for n in sa)


def close(key: str, value: Any, reference: Any) -> bool:
    if key.endswith(("accuracy", "accuracy_mean", "accuracy_worst10")):
        return abs(value - reference) <= 1 / TEST_ROWS + 1e-7
    if isinstance(value, float):
        return value == pytest.approx(reference, rel=1e-6, abs=1e-7)
    return value == reference


def assert_equal_runs(stacked: list[paralab.Result], separate: list[paralab.Result]) -> None:
    """Per seed: status, phases (with the round's clients and stragglers), every metric of
    every phase and of the result, and the final weights (see the module's tolerance)."""
    assert [r.seed for r in stacked] == [r.seed for r in separate]
    for a, b in zip(stacked, separate):
        assert a.status == b.status, (a.error, b.error)
        assert [(p["kind"], p["index"], p["info"]) for p in a.phases] == \
            [(p["kind"], p["index"], p["info"]) for p in b.phases]
        for pa, pb in zip(a.phases, b.phases):
            assert pa["metrics"].keys() == pb["metrics"].keys()
            for key, value in pa["metrics"].items():
                assert close(key, value, pb["metrics"][key]), (key, value, pb["metrics"][key])
        assert a.metrics.keys() == b.metrics.keys()
        for key, value in a.metrics.items():
            assert close(key, value, b.metrics[key]), key
        if a.status == "completed":
            assert max_difference(a, b) <= 1e-6


class Capture:
    """Each run's global model after each round, by ``(seed, round)``."""

    def __init__(self) -> None:
        self.weights: dict[tuple[int, int], dict[str, Any]] = {}

    @paralab.hookimpl
    def paralab_after_phase(self, run: Any, phase: Any) -> None:
        self.weights[(run.seed, phase.index)] = {
            n: t.detach().clone() for n, t in run.model.state_dict().items()}


def captured(one: dict[str, Any], seeds: list[int],
             **kwargs: Any) -> tuple[list[paralab.Result], dict[tuple[int, int], Any]]:
    capture = Capture()
    registry = paralab.get_registry()
    name = f"capture-{id(capture)}"
    registry.pm.register(capture, name=name)
    try:
        return run_seeds(one, seeds, **kwargs), capture.weights
    finally:
        registry.pm.unregister(name=name)


def assert_different_seeds(results: list[paralab.Result], sampled: bool) -> None:
    """The seeds are different runs (own weights and, when a round samples a share of the
    clients, own sampling), not one run K times."""
    if sampled:
        clients = [[p["info"]["clients"] for p in r.phases] for r in results]
        assert len({json.dumps(c) for c in clients}) == len(results)
    assert max_difference(results[0], results[1]) > 1e-2


@pytest.mark.parametrize(("method", "protocol"), [
    ({"name": "fedavg", "lr": 0.3}, {"stragglers": 0.3}),
    ({"name": "fedprox", "lr": 0.2, "mu": 0.5}, {"partition": "dirichlet", "alpha": 0.3}),
    ({"name": "fedadam", "lr": 0.1, "server_lr": 0.02}, {"partition": "shards"}),
    ({"name": "fedyogi", "lr": 0.1, "server_lr": 0.02}, {"partition": "quantity",
                                                         "eval_every": 2}),
    ({"name": "fedsgd", "lr": 0.5}, {"fraction": 1.0}),
    ({"name": "fedavg", "lr": 0.1}, {"local_epochs": 2, "batch_size": 8, "fraction": 0.3}),
], ids=lambda value: "-".join(str(v) for v in value.values()))
def test_stacked_seeds_equal_separate_runs(method: dict[str, Any],
                                           protocol: dict[str, Any]) -> None:
    one = spec(method, **protocol)
    stacked, during = captured(one, [0, 1, 2])
    assert [r.provenance["seed_axis"]["stacked"] for r in stacked] == [3, 3, 3]
    assert all(r.metrics["federated/backend"] == "vmap" for r in stacked)
    separate, reference = captured(one, [0, 1, 2], vectorize=False)
    assert_equal_runs(stacked, separate)
    assert during.keys() == reference.keys()  # every seed's global model after every round
    for key, weights in during.items():
        assert max(float((weights[n] - reference[key][n]).abs().max()) for n in weights) <= 1e-6
    assert_different_seeds(stacked, sampled=one["protocol"]["fraction"] < 1)


def test_seeds_stop_at_their_own_target_round() -> None:
    """A seed that reaches target_accuracy stops there, as its separate run does; the others
    go on without it (digits at 0.7: seeds 0-3 reach it in rounds 3, 3, 5 and 2)."""
    one = spec(rounds=10, target_accuracy=0.7, client_eval=False)
    stacked = run_seeds(one, [0, 1, 2, 3])
    separate = run_seeds(one, [0, 1, 2, 3], vectorize=False)
    rounds = [r.metrics["federated/rounds_to_target"] for r in separate]
    assert len(set(rounds)) > 1, rounds  # the seeds stop at different rounds
    assert [r.metrics["federated/rounds_to_target"] for r in stacked] == rounds
    assert [len(r.phases) for r in stacked] == rounds
    assert_equal_runs(stacked, separate)


def test_ten_seeds_distribute_as_separate_runs() -> None:
    one = spec(rounds=3, client_eval=False)
    seeds = list(range(10))
    stacked = run_seeds(one, seeds)
    separate = run_seeds(one, seeds, vectorize=False)
    assert {r.provenance["seed_axis"]["stacked"] for r in stacked} == {10}
    a = [r.metrics["test/accuracy"] for r in stacked]
    b = [r.metrics["test/accuracy"] for r in separate]
    assert a == pytest.approx(b, abs=1 / TEST_ROWS)  # every seed equal (but one example)
    assert statistics.mean(a) == pytest.approx(statistics.mean(b), abs=1 / TEST_ROWS)
    assert statistics.stdev(a) == pytest.approx(statistics.stdev(b), abs=1 / TEST_ROWS)
    assert statistics.stdev(a) > 0.01  # ten different runs, not one run ten times


def test_run_folders_are_what_separate_runs_write(tmp_path: Path) -> None:
    one = spec(rounds=2)
    one["output"] = str(tmp_path / "stacked")
    stacked = run_seeds(one, [0, 1], names=["a", "b"])
    one["output"] = str(tmp_path / "separate")
    separate = run_seeds(one, [0, 1], names=["a", "b"], vectorize=False)
    for a, b in zip(stacked, separate):
        files = sorted(p.name for p in Path(a.path).iterdir())
        assert files == sorted(p.name for p in Path(b.path).iterdir())
        assert "federated_accuracy.png" in files
        on_disk = json.loads((Path(a.path) / "result.json").read_text())
        reference = json.loads((Path(b.path) / "result.json").read_text())
        assert on_disk["metrics"].keys() == reference["metrics"].keys()
        assert on_disk["provenance"]["seed_axis"]["stacked"] == 2
    assert_equal_runs(stacked, separate)


def test_a_failing_stacked_step_reruns_each_seed_as_its_separate_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """When the joint computation raises, each seed's round runs on its own vmap backend
    (and, should that raise too, on its loop), exactly as the separate run would."""
    calls = []

    def broken(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise RuntimeError("the stacked step ran out of memory")

    monkeypatch.setattr(VmapTrainer, "train_from", broken)
    one = spec(rounds=2)
    stacked = run_seeds(one, [0, 1])
    assert len(calls) == 2  # one attempt per round
    assert [r.provenance["seed_axis"]["stacked"] for r in stacked] == [2, 2]
    monkeypatch.undo()
    assert_equal_runs(stacked, run_seeds(one, [0, 1], vectorize=False))


def test_a_failing_seed_fails_alone_as_its_separate_run_would() -> None:
    stacked, separate = with_a_failing_seed(spec(rounds=3))
    assert [r.status for r in stacked] == [r.status for r in separate] == \
        ["completed", "failed", "completed"]
    assert stacked[1].error["message"] == separate[1].error["message"]
    assert stacked[1].error["phase"] == separate[1].error["phase"] == {"kind": "round",
                                                                       "index": 1}
    assert_equal_runs(stacked, separate)


# ---------------------------------------------------------------------------- fallbacks


def why_not(one: dict[str, Any], seeds: tuple[int, ...] = (0, 1)) -> str:
    """The federated protocol's own reason for these seeds' runs (built, nothing trained)."""
    registry = paralab.get_registry()
    runs = [paralab.seed_axis.prepare(one, seed, registry=registry, overrides=(), study=None,
                                      name=None).context for seed in seeds]
    return runs[0].protocol.seed_axis_why_not(runs)


def assert_sequential(one: dict[str, Any], reason: str, registry: Any = None) -> None:
    """The seeds ran one after another, saying ``reason``, each exactly its own run."""
    assert_runs_one_after_another(one, reason, "test/accuracy", registry)


def test_the_loop_backend_runs_seeds_one_after_another() -> None:
    assert_sequential(spec(rounds=2, backend="loop"), "backend = 'loop' trains one client")


def test_the_ray_backend_is_refused_with_its_reason() -> None:
    pytest.importorskip("ray")
    assert why_not(spec(rounds=2, backend="ray")).startswith(
        "backend = 'ray' trains each client in a Ray worker")


def test_middleware_on_updates_runs_seeds_one_after_another() -> None:
    one = spec(rounds=2, client_eval=False)
    one["middleware"] = [{"name": "secure_aggregation"}]
    assert_sequential(one, "middleware ['secure_aggregation']")  # refused by the core


class CountUpdates:
    """A plugin (not a spec's middleware) acting on every client update."""

    def __init__(self) -> None:
        self.updates = 0

    @paralab.hookimpl(wrapper=True)
    def paralab_process_update(self, run: Any, update: paralab.Update) -> Any:
        self.updates += 1
        return (yield)


def test_a_plugin_acting_on_updates_runs_seeds_one_after_another() -> None:
    registry = paralab.get_registry()
    counter = CountUpdates()
    registry.pm.register(counter, name="count-updates")
    try:
        assert_sequential(spec(rounds=2, client_eval=False),
                          "middleware ['count-updates'] processes each client update")
    finally:
        registry.pm.unregister(name="count-updates")
    assert counter.updates == 4 * 5 * 2  # 4 runs, 5 clients, 2 rounds: none skipped


def test_a_model_the_vmap_backend_cannot_train_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the vmap probe fails, the separate run trains on the loop: no stacking."""
    import paralab_federated.vectorized as vectorized

    monkeypatch.setattr(vectorized, "vmap_unsupported",
                        lambda model, x, y: "RuntimeError: no batching rule")
    assert why_not(spec(rounds=1)) == (
        "the vmap backend cannot train model 'mlp' (RuntimeError: no batching rule) and "
        "trains its clients on the loop, one at a time")


class SlowerFedAvg(FedAvg):
    """A subclass of a stacked method (it could change the client or server step)."""


class MethodPlugin:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_methods(self) -> list[MethodSpec]:
        return [MethodSpec("slower_fedavg", SlowerFedAvg, "A FedAvg subclass (tests).",
                           {"lr": 0.3}, protocols=("federated",), example={})]


def test_another_method_runs_seeds_one_after_another() -> None:
    from paralab import host
    from paralab_registry import LoadSettings

    registry = host.make_registry(LoadSettings()).load()
    registry.add("slower_fedavg_plugin", MethodPlugin())
    one = spec({"name": "slower_fedavg"}, rounds=2, client_eval=False)
    assert_sequential(one, "method 'slower_fedavg' (SlowerFedAvg) is not one whose client "
                           "step is the shared local SGD", registry=registry)


def test_the_federated_protocol_declares_the_seed_axis() -> None:
    described = paralab.get_registry().component("protocol", "federated").describe()
    assert described["seed_axis"] is True
    assert why_not(spec(rounds=1)) == ""
