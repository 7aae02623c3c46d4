"""Running experiments: results on disk, the lifecycle, failures that keep finished work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import paralab
from paralab import LossSpec, MiddlewareSpec, ProtocolSpec, Result, RunError, hookimpl
from paralab.testing import TINY, TinyDataPlugin, isolated_registry
from tests.host_support import REPOSITORY, paralab_cli


def tiny(**changes):
    spec = {
        "dataset": TINY,
        "model": {"name": "mlp", "hidden": [16]},
        "protocol": {"name": "supervised", "epochs": 3, "batch_size": 32},
        "method": {"name": "sgd", "lr": 0.1},
        "output": None,
        "device": "cpu",
    }
    spec.update(changes)
    return spec


def test_the_readme_default_experiment(tmp_path: Path) -> None:
    """The README's default: digits, MLP, supervised, on the CPU, accuracy above 0.9."""
    result = paralab_cli("run", str(REPOSITORY / "examples" / "digits_mlp.toml"),
                         "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "digits_mlp"
    data = json.loads((folder / "result.json").read_text())
    assert data["status"] == "completed"
    assert data["metrics"]["test/accuracy"] > 0.9
    assert len(data["phases"]) == 10
    assert data["spec"]["method"] == {"name": "sgd", "lr": 0.05, "momentum": 0.9}
    assert data["seed"] == 0 and data["device"] == "cpu"
    assert {"python", "torch", "paralab"} <= set(data["packages"])
    assert {"paralab", "paralab_quantum"} <= {p["name"] for p in data["plugins"]}
    assert data["timings"]["total"] > 0
    assert (folder / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "test/accuracy" in (folder / "summary.md").read_text()
    assert not list(folder.glob(".*.tmp")), "atomic writes leave no temporary files"


def test_same_seed_same_numbers() -> None:
    registry = isolated_registry(("paralab_tiny", TinyDataPlugin()))
    first = paralab.run(tiny(), registry=registry)
    second = paralab.run(tiny(), registry=registry)
    assert first.metrics == second.metrics
    third = paralab.run(tiny(seed=1), registry=registry)
    assert third.metrics["test/loss"] != first.metrics["test/loss"]


class Recorder:
    """Records every lifecycle hook call."""

    PARALAB_API = "1.0"

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def paralab_before_experiment(self, run):
        self.calls.append("before_experiment")

    @hookimpl
    def paralab_before_phase(self, run, phase):
        assert phase.metrics == {}
        self.calls.append(f"before_phase {phase.kind} {phase.index}")

    @hookimpl
    def paralab_after_evaluation(self, run, phase, evaluation):
        assert evaluation.predictions.logits.shape[0] == len(run.dataset.splits["test"])
        self.calls.append(f"after_evaluation {evaluation.split}")

    @hookimpl
    def paralab_after_phase(self, run, phase):
        assert "test/accuracy" in phase.metrics
        self.calls.append(f"after_phase {phase.index}")

    @hookimpl
    def paralab_after_experiment(self, run, result):
        self.calls.append(f"after_experiment {result.status}")

    @hookimpl
    def paralab_on_error(self, run, error, phase):
        self.calls.append(f"on_error {phase.index if phase else None}")


def test_lifecycle_hooks_in_order() -> None:
    recorder = Recorder()
    registry = isolated_registry(("paralab_tiny", TinyDataPlugin()), ("recorder", recorder))
    paralab.run(tiny(protocol={"name": "supervised", "epochs": 2}), registry=registry)
    assert recorder.calls == [
        "before_experiment",
        "before_phase epoch 0", "after_evaluation test", "after_phase 0",
        "before_phase epoch 1", "after_evaluation test", "after_phase 1",
        "after_experiment completed",
    ]


class Crashing:
    """A protocol that fails in its third phase."""

    def execute(self, run):
        for index in range(5):
            with run.phase("round", index):
                run.evaluate("test")
                if index == 2:
                    raise ValueError("client 7 sent NaN")


class CrashPlugin:
    PARALAB_API = "1.0"

    @hookimpl
    def paralab_protocols(self):
        return [ProtocolSpec("crashing", Crashing, "Fails in round 2.")]

    @hookimpl
    def paralab_methods(self):
        from paralab import MethodSpec

        return [MethodSpec("noop", "paralab.methods:SGD", "x", protocols=("crashing",))]


def test_a_failing_plugin_keeps_finished_phases_and_is_named(tmp_path: Path) -> None:
    recorder = Recorder()
    registry = isolated_registry(
        ("paralab_tiny", TinyDataPlugin()), ("crasher", CrashPlugin()), ("recorder", recorder)
    )
    with pytest.raises(RunError) as error:
        paralab.run(tiny(protocol="crashing", method="noop", output=str(tmp_path), name="crash"),
                    registry=registry)
    assert error.value.plugin == "crasher"
    assert "plugin crasher failed in protocol 'crashing'" in str(error.value)
    assert "client 7 sent NaN" in str(error.value) and "round 2" in str(error.value)
    saved = Result.load(tmp_path / "crash")
    assert saved.status == "failed"
    assert [phase["index"] for phase in saved.phases] == [0, 1]
    assert saved.error["plugin"] == "crasher"
    assert recorder.calls[-1] == "on_error 2"


class Scale:
    """Middleware multiplying every update by a factor, recording the order it ran in."""

    order: list[str] = []

    def __init__(self, factor: float = 2.0, label: str = "") -> None:
        self.factor, self.label = factor, label

    @hookimpl(wrapper=True)
    def paralab_process_update(self, run, update):
        Scale.order.append(f"enter {self.label}")
        update = yield
        Scale.order.append(f"exit {self.label}")
        return update.replace(delta={k: v * self.factor for k, v in update.delta.items()})


class UpdateProbe:
    def execute(self, run):
        with run.phase("round", 0):
            update = run.process_update(paralab.Update(delta={"w": torch.ones(2)}, source=3))
            run.record("w", float(update.delta["w"][0]))


class MiddlewarePlugin:
    PARALAB_API = "1.0"

    @hookimpl
    def paralab_middleware(self):
        return [MiddlewareSpec("scale", Scale, "Scales updates.", {"factor": 2.0, "label": ""})]

    @hookimpl
    def paralab_protocols(self):
        return [ProtocolSpec("probe", UpdateProbe, "Sends one update.", main_metric="w",
                             middleware_hooks=("paralab_process_update",))]

    @hookimpl
    def paralab_methods(self):
        from paralab import MethodSpec

        return [MethodSpec("none", "paralab.methods:SGD", "x", protocols=("probe",))]


def test_middleware_wraps_updates_in_spec_order_and_only_for_its_run() -> None:
    registry = isolated_registry(("paralab_tiny", TinyDataPlugin()), ("mw", MiddlewarePlugin()))
    Scale.order.clear()
    result = paralab.run(
        tiny(protocol="probe", method="none", middleware=[
            {"name": "scale", "factor": 3.0, "label": "first"},
            {"name": "scale", "factor": 5.0, "label": "second"},
        ]),
        registry=registry,
    )
    assert result.metrics["w"] == 15.0
    assert result.main_metric == "w", "a protocol declares the metric its curve shows"
    assert Scale.order == ["enter first", "enter second", "exit second", "exit first"]
    plain = paralab.run(tiny(protocol="probe", method="none"), registry=registry)
    assert plain.metrics["w"] == 1.0, "middleware is unregistered after its run"


class CountingPenalty:
    calls = 0

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def __call__(self, batch):
        CountingPenalty.calls += 1
        assert batch.feature("group").shape == batch.targets.shape
        return self.weight * batch.logits.pow(2).mean()


class LossPlugin:
    PARALAB_API = "1.0"

    @hookimpl
    def paralab_losses(self):
        return [LossSpec("logit_l2", CountingPenalty, "Penalises large logits.", {"weight": 1.0})]


def test_loss_terms_apply_under_the_protocol() -> None:
    registry = isolated_registry(("paralab_tiny", TinyDataPlugin()), ("losses", LossPlugin()))
    CountingPenalty.calls = 0
    plain = paralab.run(tiny(), registry=registry)
    penalised = paralab.run(tiny(losses=[{"name": "logit_l2", "weight": 5.0}]), registry=registry)
    assert CountingPenalty.calls == 3 * 6  # 3 epochs x 6 batches of 32 from 180 rows
    norm = penalised.phases[-1]["metrics"]["train/loss"]
    assert norm != plain.phases[-1]["metrics"]["train/loss"]


def test_run_folder_never_overwrites(tmp_path: Path) -> None:
    registry = isolated_registry(("paralab_tiny", TinyDataPlugin()))
    first = paralab.run(tiny(output=str(tmp_path), name="same"), registry=registry)
    second = paralab.run(tiny(output=str(tmp_path), name="same"), registry=registry)
    assert Path(first.path).name == "same" and Path(second.path).name == "same-2"


def broken_metric():
    def metric(predictions, dataset):
        raise ZeroDivisionError("no positives in group 3")

    return metric


class MetricPlugin:
    PARALAB_API = "1.0"

    @hookimpl
    def paralab_metrics(self):
        from paralab import MetricSpec

        return [MetricSpec("brittle", broken_metric, "Always fails.")]


def test_a_failing_metric_is_named_with_its_plugin() -> None:
    registry = isolated_registry(("paralab_tiny", TinyDataPlugin()), ("metrics_x", MetricPlugin()))
    with pytest.raises(RunError) as error:
        paralab.run(tiny(metrics=["accuracy", "brittle"]), registry=registry)
    assert error.value.plugin == "metrics_x"
    assert "plugin metrics_x failed in metric 'brittle'" in str(error.value)
    assert "no positives in group 3" in str(error.value)
