"""The seed axis (issue 16): K seeds of one configuration trained as one stacked model.

The reference is K separate runs (``run_seeds(..., vectorize=False)``, i.e. ``paralab.run``
per seed). Per seed, the stacked run must start from the same weights (exactly: the same
global-RNG order before the model factory) and end with the same metrics.

Tolerance, and why: per seed the stacked step is the same arithmetic as the single step in
another order of summation. The K mean losses are summed, so each seed gets exactly its own
gradient; SGD and Adam update each element alone; but the stacked matrix products
(``baddbmm`` over weights stored ``(K, in, out)``, grouped convolutions) accumulate in
another order than ``addmm``, and Adam's fused kernel processes the stacked tensor in other
vector chunks. Measured after 2 epochs: the MLP's weights are bit-identical or ~1e-7 apart,
the CNN's ~1e-4 (momentum amplifies the convolution's rounding). So weights are compared at
``atol = 1e-5`` (1e-4 for the CNN), losses at ``rel = 1e-6`` (the batch mean is also reduced
in another order), and accuracies exactly but for one test example changing side (weights
1e-7 apart can move one example across a decision boundary; measured: none did).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

import paralab
from paralab import run_seeds
from paralab.stacked import StackedModel, Unstackable, why_not_stacked
from tests.seed_helpers import assert_runs_one_after_another, with_a_failing_seed

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "seeds",
        "dataset": "digits",
        "model": {"name": "mlp", "hidden": [32, 32]},
        "protocol": {"name": "supervised", "epochs": 2, "batch_size": 32},
        "method": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "metrics": ["accuracy", "loss"],
        "output": None,
        "device": "cpu",
    }
    base.update(changes)
    return base


class Capture:
    """Each run's model at ``before_experiment`` and at ``after_experiment``, by seed."""

    def __init__(self) -> None:
        self.initial: dict[int, dict[str, torch.Tensor]] = {}
        self.final: dict[int, dict[str, torch.Tensor]] = {}
        self.phases: dict[int, list[tuple[str, int]]] = {}

    @paralab.hookimpl
    def paralab_before_experiment(self, run: Any) -> None:
        self.initial[run.seed] = {n: t.detach().clone() for n, t in run.model.state_dict().items()}

    @paralab.hookimpl
    def paralab_after_phase(self, run: Any, phase: Any) -> None:
        self.phases.setdefault(run.seed, []).append((phase.kind, phase.index))

    @paralab.hookimpl
    def paralab_after_experiment(self, run: Any, result: Any) -> None:
        self.final[run.seed] = {n: t.detach().clone() for n, t in run.model.state_dict().items()}


def captured(**kwargs: Any) -> tuple[list[paralab.Result], Capture]:
    capture = Capture()
    registry = paralab.get_registry()
    name = f"capture-{id(capture)}"
    registry.pm.register(capture, name=name)
    try:
        return run_seeds(**kwargs), capture
    finally:
        registry.pm.unregister(name=name)


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[n].double() - b[n].double()).abs().max()) for n in a)


def assert_runs_equal(stacked: list[paralab.Result], separate: list[paralab.Result],
                      atol: float = 1e-5, flips: int = 1) -> None:
    """Per seed: the same phases and metric names, equal values (see the module's tolerance)."""
    assert [r.seed for r in stacked] == [r.seed for r in separate]
    for a, b in zip(stacked, separate):
        assert a.status == b.status == "completed"
        assert [(p["kind"], p["index"]) for p in a.phases] == \
            [(p["kind"], p["index"]) for p in b.phases]
        for pa, pb in zip(a.phases, b.phases):
            assert pa["metrics"].keys() == pb["metrics"].keys()
            for key, value in pa["metrics"].items():
                if key.endswith("accuracy"):  # digits' test split has 360 rows
                    assert abs(value - pb["metrics"][key]) <= flips / 360 + 1e-7, key
                elif isinstance(value, float):
                    assert value == pytest.approx(pb["metrics"][key], rel=1e-6, abs=1e-7), key
        assert max_difference(a.model.state_dict(), b.model.state_dict()) <= atol


@pytest.mark.parametrize("method", [
    {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    {"name": "sgd", "lr": 0.1, "weight_decay": 1e-3},
    {"name": "adam", "lr": 0.003},
])
def test_stacked_seeds_equal_separate_runs(method: dict[str, Any]) -> None:
    stacked, seen = captured(spec=spec(method=method), seeds=[0, 1, 2])
    separate, reference = captured(spec=spec(method=method), seeds=[0, 1, 2], vectorize=False)
    for seed in (0, 1, 2):  # the same initial weights, exactly
        assert max_difference(seen.initial[seed], reference.initial[seed]) == 0.0
        assert seen.phases[seed] == reference.phases[seed] == [("epoch", 0), ("epoch", 1)]
    assert max_difference(seen.initial[0], seen.initial[1]) > 0.01  # seeds differ
    assert_runs_equal(stacked, separate)
    for result in stacked:
        record = result.provenance["seed_axis"]
        assert record["stacked"] == 3 and record["why_not"] is None
        assert record["chunk"] == [0, 1, 2]
        assert record["memory_per_seed_estimate_bytes"] > 0
    assert all(r.provenance["seed_axis"]["why_not"] == "vectorize = False" for r in separate)
    # each seed's model after the run is its own (not a view of the stacked tensors)
    weights = [dict(r.model.named_parameters())["1.weight"] for r in stacked]
    assert weights[0].data_ptr() != weights[1].data_ptr()
    assert weights[0].untyped_storage().nbytes() == weights[0].numel() * 4


def test_stacked_cnn_runs_equal_separate_runs() -> None:
    """The grouped-convolution path through a whole run (its tolerance: see the module)."""
    cnn = spec(model={"name": "cnn", "channels": [4, 8], "hidden": 16},
               protocol={"name": "supervised", "epochs": 1, "batch_size": 64})
    stacked = run_seeds(cnn, [0, 1])
    assert stacked[0].provenance["seed_axis"]["stacked"] == 2
    assert_runs_equal(stacked, run_seeds(cnn, [0, 1], vectorize=False), atol=1e-4, flips=1)


def test_ten_seeds_distribution_matches_separate_runs() -> None:
    one = spec(protocol={"name": "supervised", "epochs": 1, "batch_size": 64},
               model={"name": "mlp", "hidden": [16]})
    seeds = list(range(10))
    stacked = run_seeds(one, seeds)
    separate = run_seeds(one, seeds, vectorize=False)
    a = [r.metrics["test/accuracy"] for r in stacked]
    b = [r.metrics["test/accuracy"] for r in separate]
    assert a == pytest.approx(b, abs=1 / 360)  # every seed equal (but one example), so ...
    assert statistics.mean(a) == pytest.approx(statistics.mean(b), abs=1 / 360)
    assert statistics.stdev(a) == pytest.approx(statistics.stdev(b), abs=1 / 360)
    assert statistics.stdev(a) > 0.005  # ten different runs, not one run ten times
    losses_a = [r.metrics["test/loss"] for r in stacked]
    losses_b = [r.metrics["test/loss"] for r in separate]
    assert losses_a == pytest.approx(losses_b, rel=1e-6)
    assert {r.provenance["seed_axis"]["stacked"] for r in stacked} == {10}


def test_run_folders_are_what_separate_runs_write(tmp_path: Path) -> None:
    stacked = run_seeds(spec(output=str(tmp_path / "a")), [3, 4],
                        names=["three", "four"])
    separate = run_seeds(spec(output=str(tmp_path / "b")), [3, 4],
                         names=["three", "four"], vectorize=False)
    for a, b in zip(stacked, separate):
        assert Path(a.path).name == Path(b.path).name
        assert sorted(p.name for p in Path(a.path).iterdir()) == \
            sorted(p.name for p in Path(b.path).iterdir())
        on_disk = json.loads((Path(a.path) / "result.json").read_text())
        reference = json.loads((Path(b.path) / "result.json").read_text())
        assert on_disk.keys() == reference.keys()
        assert on_disk["seed"] == reference["seed"] and on_disk["status"] == "completed"
        assert on_disk["metrics"]["test/accuracy"] == pytest.approx(
            reference["metrics"]["test/accuracy"], abs=1 / 360)
        assert on_disk["provenance"]["seed_axis"]["stacked"] == 2
        assert on_disk["settings"] == reference["settings"]
        assert on_disk["settings"]["method"]["momentum"] == 0.9
        assert reference["provenance"]["seed_axis"]["stacked"] == 1
        saved = paralab.load_model(a.path)
        assert max_difference(saved.state_dict(), b.model.state_dict()) <= 1e-5


def test_chunks_follow_max_parallel_seeds() -> None:
    seeds = [0, 1, 2, 3, 4]
    stacked = run_seeds(spec(), seeds, max_parallel_seeds=2)
    chunks = [r.provenance["seed_axis"]["chunk"] for r in stacked]
    assert chunks == [[0, 1], [0, 1], [2, 3], [2, 3], [4]]
    assert stacked[4].provenance["seed_axis"]["why_not"].startswith("the last chunk has one")
    assert_runs_equal(stacked, run_seeds(spec(), seeds, vectorize=False))


@pytest.mark.parametrize(("changes", "why"), [
    ({"model": {"name": "mlp", "hidden": [16], "dropout": 0.1}}, "Dropout(p=0.1)"),
    ({"middleware": [{"name": "dp", "noise_multiplier": 0.5, "clip": 1.0,
                      "reproducible_noise": True}]},  # compared with separate runs
     "middleware ['dp']"),
    ({"protocol": {"name": "supervised", "epochs": 1, "sampling": "poisson"}}, "poisson"),
])
def test_unsupported_configurations_run_one_after_another(changes: dict[str, Any],
                                                          why: str) -> None:
    one = spec(**changes)
    if "middleware" in changes:
        pytest.importorskip("dp_accounting")
    assert_runs_one_after_another(one, why, "test/accuracy")


def test_a_failing_seed_fails_alone_as_its_separate_run_would() -> None:
    stacked, separate = with_a_failing_seed(spec())
    assert [r.status for r in stacked] == [r.status for r in separate] == \
        ["completed", "failed", "completed"]
    assert stacked[1].error["message"] == separate[1].error["message"]
    assert stacked[1].error["phase"] == separate[1].error["phase"] == {"kind": "epoch",
                                                                       "index": 1}
    assert len(stacked[1].phases) == len(separate[1].phases) == 1
    assert_runs_equal([stacked[0], stacked[2]], [separate[0], separate[2]])


def test_a_rejected_spec_raises_before_any_seed_runs(tmp_path: Path) -> None:
    with pytest.raises(paralab.SpecError, match="epochs"):
        run_seeds(spec(output=str(tmp_path), protocol={"name": "supervised", "epochs": 0}),
                  [0, 1])
    assert not any(tmp_path.iterdir())
    with pytest.raises(paralab.SpecError, match="max_parallel_seeds"):
        run_seeds(spec(), [0, 1], max_parallel_seeds=0)


def test_protocols_declare_the_seed_axis() -> None:
    registry = paralab.get_registry()
    assert registry.component("protocol", "supervised").describe()["seed_axis"] is True
    assert registry.component("protocol", "continual").describe()["seed_axis"] is True


# ----------------------------------------------------------------------- stacked layers


def _models(factory: Any, k: int) -> list[torch.nn.Module]:
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        models.append(factory())
    return models


def test_stacked_cnn_with_batch_norm_matches_each_seed() -> None:
    """Grouped convolution, 2-d and 1-d batch norm (per-seed statistics and running
    buffers), pooling, flatten: forward, backward and buffers equal each seed's module."""
    def factory() -> torch.nn.Module:
        return torch.nn.Sequential(
            paralab.AsImage((1, 8, 8)), torch.nn.Conv2d(1, 4, 3, padding=1),
            torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
            torch.nn.Linear(64, 16), torch.nn.BatchNorm1d(16), torch.nn.Tanh(),
            torch.nn.Linear(16, 3))

    k = 3
    models = _models(factory, k)
    reference = [factory() for _ in range(k)]
    for ref, model in zip(reference, models):
        ref.load_state_dict(model.state_dict())
    stacked = StackedModel(models)
    stacked.bind()
    x = torch.randn(k, 5, 64)
    out = stacked(x)
    out.square().sum().backward()
    for i, ref in enumerate(reference):
        expected = ref(x[i])
        expected.square().sum().backward()
        assert torch.allclose(out[i], expected, atol=1e-5)
        for (name, p), stacked_p in zip(ref.named_parameters(), stacked.parameters):
            gradient = stacked.seed_view(name, stacked_p.grad[i])  # Linear: stored transposed
            assert torch.allclose(gradient, p.grad, atol=1e-4), name
        for name, buffer in ref.named_buffers():  # running statistics, per seed
            assert torch.allclose(models[i].state_dict()[name].double(), buffer.double(),
                                  atol=1e-6), name
    stacked.eval()
    for i, ref in enumerate(reference):
        ref.eval()
        assert torch.allclose(stacked(x)[i], ref(x[i]), atol=1e-5)


def test_unstackable_models_say_why() -> None:
    assert "Dropout(p=0.5)" in why_not_stacked(torch.nn.Sequential(torch.nn.Dropout(0.5)))
    assert "LSTM" in why_not_stacked(torch.nn.Sequential(torch.nn.LSTM(3, 3)))
    assert why_not_stacked(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())) == ""
    with pytest.raises(Unstackable, match="differs in structure"):
        StackedModel([torch.nn.Linear(3, 2), torch.nn.Linear(3, 4)])


def test_seeds_are_chunked_to_fit_the_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without max_parallel_seeds, as many seeds are stacked as fit MEMORY_SHARE of the free
    memory at the estimated bytes per seed (parameters, gradients, optimizer state, one
    batch's activations)."""
    import paralab.seed_axis
    import paralab.seeds

    first = paralab.seed_axis.prepare(spec(), 0, registry=paralab.get_registry(), overrides=(),
                                      study=None, name=None)
    estimate = paralab.seeds.memory_per_seed(first)
    model = first.context.model
    parameter_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert estimate > 3 * parameter_bytes  # weights, gradients and the momentum buffer
    adam = paralab.seed_axis.prepare(spec(method={"name": "adam"}), 0,
                                     registry=paralab.get_registry(), overrides=(), study=None,
                                     name=None)
    assert paralab.seeds.memory_per_seed(adam) - estimate == parameter_bytes  # two moments
    fits_two = 2 * estimate / paralab.seeds.MEMORY_SHARE + 1
    monkeypatch.setattr(paralab.seed_axis, "available_bytes", lambda device: int(fits_two))
    results = run_seeds(spec(), [0, 1, 2, 3])
    assert [r.provenance["seed_axis"]["chunk"] for r in results] == [[0, 1], [0, 1], [2, 3],
                                                                     [2, 3]]
    assert results[0].provenance["seed_axis"]["memory_per_seed_estimate_bytes"] == estimate


class Interrupt:
    @paralab.hookimpl
    def paralab_after_phase(self, run: Any, phase: Any) -> None:
        if run.seed == 0 and phase.index == 0:
            raise KeyboardInterrupt


def test_an_interrupt_marks_every_stacked_seed_interrupted(tmp_path: Path) -> None:
    registry = paralab.get_registry()
    registry.pm.register(Interrupt(), name="interrupt-seed-0")
    try:
        with pytest.raises(KeyboardInterrupt) as caught:
            run_seeds(spec(output=str(tmp_path)), [0, 1])
    finally:
        registry.pm.unregister(name="interrupt-seed-0")
    folders = sorted(tmp_path.iterdir())
    assert len(folders) == 2
    statuses = [json.loads((f / "result.json").read_text())["status"] for f in folders]
    assert statuses == ["interrupted", "interrupted"]
    assert caught.value.result.status == "interrupted"  # type: ignore[attr-defined]


def test_each_stacked_seed_has_its_own_tracker(tmp_path: Path) -> None:
    """A real tracker (the csv one) is built and registered per seed: each stacked seed's
    folder gets the CSV its separate run writes."""
    import csv

    tracked = spec(output=str(tmp_path / "stacked"), trackers=["csv"])
    stacked = run_seeds(tracked, [0, 1])
    separate = run_seeds({**tracked, "output": str(tmp_path / "separate")}, [0, 1],
                         vectorize=False)
    assert stacked[0].provenance["seed_axis"]["stacked"] == 2
    for a, b in zip(stacked, separate):
        rows_a = list(csv.DictReader((Path(a.path) / "metrics_long.csv").open()))
        rows_b = list(csv.DictReader((Path(b.path) / "metrics_long.csv").open()))
        assert [(r["position"], r["kind"], r["index"], r["metric"]) for r in rows_a] == \
            [(r["position"], r["kind"], r["index"], r["metric"]) for r in rows_b]
        assert len(rows_a) == 2 * 3  # two epochs: train/loss, test/accuracy, test/loss
        for ra, rb in zip(rows_a, rows_b):
            assert float(ra["value"]) == pytest.approx(float(rb["value"]), rel=1e-5, abs=1 / 360)


def test_a_subclass_that_overrides_execute_is_never_replaced_by_the_stacked_loop() -> None:
    from paralab import host
    from paralab.protocols.supervised import Supervised
    from paralab_registry import LoadSettings

    class Counting(Supervised):
        """Trains as supervised, and records that its own execute ran."""

        def execute(self, run: Any) -> None:
            run.state["own_execute"] = True
            super().execute(run)
            run.record("own_execute", 1.0)

    class Plugin:
        PARALAB_API = "1.0"

        @paralab.hookimpl
        def paralab_protocols(self):
            from paralab.components import ProtocolSpec

            return [ProtocolSpec("counting", Counting, "supervised, counted",
                                 {"epochs": 1}, accepts=("gradient",),
                                 method_interface="GradientMethod", seed_axis=True)]

    registry = host.make_registry(LoadSettings()).load()
    registry.add("counting_protocol", Plugin())
    results = run_seeds(spec(protocol={"name": "counting", "epochs": 1}), [0, 1],
                        registry=registry)
    assert [r.metrics.get("own_execute") for r in results] == [1.0, 1.0]
    assert all("overrides execute" in r.provenance["seed_axis"]["why_not"] for r in results)


def test_run_names_with_quotes_survive_the_seed_overrides() -> None:
    names = ['it\'s "one"', 'two="three"']
    results = run_seeds(spec(), [0, 1], names=names, vectorize=False)
    assert [r.name for r in results] == names


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_max_parallel_seeds_must_be_a_positive_integer(value: Any) -> None:
    with pytest.raises(paralab.SpecError, match="max_parallel_seeds = .*: must be an integer"):
        run_seeds(spec(), [0, 1], max_parallel_seeds=value)
