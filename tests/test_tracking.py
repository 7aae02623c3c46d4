"""The bundled tracking plugin: CSV files and TensorBoard event files, read back with Python's
csv module and TensorBoard's own event reader, against ``result.json`` (MLflow: in
test_tracking_mlflow.py). Also how a spec chooses trackers and what it may not get wrong."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

import paralab
from paralab import Option, SpecError, TrackerSpec, hookimpl
from paralab.host import get_registry
from paralab.testing import check_plugin, isolated_registry

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EPOCHS = 3


def spec(output: Path | None, *trackers: Any, name: str = "iris-tracked", epochs: int = EPOCHS,
         **changes: Any) -> dict[str, Any]:
    """A run of a few hundred milliseconds: iris, a small MLP, three epochs on the CPU."""
    data = {"name": name, "dataset": "iris", "model": {"name": "mlp", "hidden": [16]},
            "protocol": {"name": "supervised", "epochs": epochs, "batch_size": 16},
            "method": {"name": "sgd", "lr": 0.1}, "device": "cpu",
            "output": None if output is None else str(output), "trackers": list(trackers)}
    data.update(changes)
    return data


def saved_phases(folder: str | Path) -> list[dict[str, Any]]:
    return json.loads((Path(folder) / "result.json").read_text("utf-8"))["phases"]


def long_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def expected_long(phases: list[dict[str, Any]]) -> list[tuple[int, str, int, str, float]]:
    return [(position, phase["kind"], phase["index"], metric, value)
            for position, phase in enumerate(phases)
            for metric, value in phase["metrics"].items()
            if isinstance(value, (int, float))]


def read_long(path: Path) -> list[tuple[int, str, int, str, float]]:
    return [(int(r["position"]), r["kind"], int(r["index"]), r["metric"], float(r["value"]))
            for r in long_rows(path)]


# --------------------------------------------------------------------------- the plugin


def test_the_plugin_is_discovered_through_its_entry_point() -> None:
    registry = get_registry()
    record = registry.plugin("paralab_tracking")
    assert record.status == "active", record.reason
    assert record.distribution == "paralab"
    assert sorted(record.contributions["tracker"]) == ["csv", "mlflow", "tensorboard"]
    assert registry.component("tracker", "mlflow").provider == "paralab_tracking"


def test_listing_the_plugin_imports_neither_torch_nor_mlflow() -> None:
    code = ("import sys, json, paralab_tracking; paralab_tracking.paralab_trackers(); "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                           text=True, check=True).stdout))
    assert "paralab" in loaded
    assert not loaded & {"torch", "mlflow", "tensorboard", "sqlalchemy", "numpy", "pandas"}


def test_the_plugin_passes_the_conformance_kit() -> None:
    """Declared options agree with the factories' signatures and defaults."""
    report = check_plugin("paralab_tracking", registry=get_registry())
    assert report.passed, report.render()
    checks = {check.name: check.status for check in report.checks}
    assert checks["imports nothing heavy at import time"] == "pass"
    for name in ("csv", "tensorboard", "mlflow"):
        assert checks[f"tracker {name!r} is well formed"] == "pass"


# -------------------------------------------------------------------------- bad specs


def test_an_unknown_tracker_is_a_spec_error_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        paralab.run(spec(tmp_path, "csv", "tensorbord"))
    message = str(caught.value)
    assert "trackers[1]" in message and "unknown tracker 'tensorbord'" in message
    assert "did you mean 'tensorboard'" in message
    assert not any(tmp_path.iterdir()), "a rejected spec leaves no folder"


@pytest.mark.parametrize(("tracker", "field", "says"), [
    ({"name": "csv", "path": 3}, "trackers[0].path", "expected str, got int 3"),
    ({"name": "mlflow", "log_artifacts": "yes"}, "trackers[0].log_artifacts",
     "expected bool, got str 'yes'"),
    ({"name": "tensorboard", "logdir": "tb"}, "trackers[0]", "logdir"),
])
def test_a_tracker_option_of_the_wrong_type_or_name_is_a_spec_error(
        tmp_path: Path, tracker: dict[str, Any], field: str, says: str) -> None:
    with pytest.raises(SpecError) as caught:
        paralab.run(spec(tmp_path, tracker))
    problem = next(p for p in caught.value.problems if p.startswith(field))
    assert says in problem
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("tracker", "output", "says"), [
    ({"name": "csv", "path": "/tmp/everyone.csv"}, True, "relative to the run folder"),
    ({"name": "csv", "wide": "../up.csv"}, True, "relative to the run folder"),
    ({"name": "csv", "wide": "metrics_long.csv"}, True, "different names"),
    ("tensorboard", False, "output = None"),
    ("csv", False, "output = None"),
    ("mlflow", False, "set tracking_uri or output"),
])
def test_a_tracker_with_nowhere_to_write_is_a_spec_error(
        tmp_path: Path, tracker: Any, output: bool, says: str) -> None:
    with pytest.raises(SpecError) as caught:
        paralab.run(spec(tmp_path if output else None, tracker))
    (problem,) = caught.value.problems
    assert problem.startswith("trackers[0]: tracker ") and "(paralab_tracking)" in problem
    assert says in problem
    assert not any(tmp_path.iterdir())


# -------------------------------------------------------------------------------- csv


def test_csv_holds_every_phase_metric_exactly(tmp_path: Path) -> None:
    result = paralab.run(spec(tmp_path, "csv"))
    folder = Path(result.path)
    phases = saved_phases(folder)
    assert len(phases) == EPOCHS
    rows = read_long(folder / "metrics_long.csv")
    assert rows == expected_long(phases)  # float(repr(x)) == x: the very same numbers
    assert {metric for *_, metric, _ in rows} == {"train/loss", "test/accuracy", "test/loss"}
    with (folder / "metrics.csv").open(newline="", encoding="utf-8") as stream:
        wide = list(csv.DictReader(stream))
    assert [int(row["position"]) for row in wide] == list(range(EPOCHS))
    for row, phase in zip(wide, phases, strict=True):
        assert row["kind"] == phase["kind"] and int(row["index"]) == phase["index"]
        assert {k: float(v) for k, v in row.items() if "/" in k} == phase["metrics"]
    assert result.artifacts["metrics_long"] == "metrics_long.csv"
    assert result.artifacts["metrics_wide"] == "metrics.csv"


def test_csv_paths_are_options(tmp_path: Path) -> None:
    result = paralab.run(spec(tmp_path, {"name": "csv", "path": "logs/long.csv", "wide": ""}))
    folder = Path(result.path)
    assert read_long(folder / "logs" / "long.csv") == expected_long(saved_phases(folder))
    assert not (folder / "metrics.csv").exists()
    assert "metrics_wide" not in result.artifacts


# ------------------------------------------------------------------------- tensorboard


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in the event files, read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def as_float32(value: float) -> float:
    """What an event file keeps of a value: scalars are float32 there."""
    import numpy as np

    return float(np.float32(value))


def test_tensorboard_events_hold_the_metrics_the_spec_and_the_hparams(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    result = paralab.run(spec(tmp_path, "tensorboard"))
    log_dir = Path(result.path) / "tensorboard"
    assert result.artifacts["tensorboard"] == "tensorboard"
    phases = saved_phases(result.path)
    expected: dict[str, list[tuple[int, float]]] = {}
    for position, phase in enumerate(phases):
        for metric, value in phase["metrics"].items():
            expected.setdefault(metric, []).append((position, as_float32(value)))
    assert tensorboard_scalars(log_dir) == expected  # exactly result.json's, as float32

    accumulator = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    accumulator.Reload()

    def text(tag: str) -> str:
        (event,) = accumulator.Tensors(f"{tag}/text_summary")
        return tensor_util.make_ndarray(event.tensor_proto).item().decode()

    assert [line.strip() for line in text("spec").splitlines()] == [
        line.strip() for line in paralab.ExperimentSpec.from_dict(result.spec).to_toml()
        .splitlines()]
    assert text("status") == "completed"
    content = accumulator.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["method.lr"].number_value == 0.1
    assert start.hparams["model.hidden"].string_value == "[16]"
    assert start.hparams["protocol.epochs"].number_value == EPOCHS
    assert "activation" not in result.spec["model"]  # a default is a hyperparameter too
    assert start.hparams["model.activation"].string_value == "relu"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]).experiment
    assert {info.name.tag for info in experiment.metric_infos} == set(expected)


@pytest.mark.slow
def test_the_tensorboard_server_shows_the_scalars(tmp_path: Path) -> None:
    """``tensorboard --logdir`` with its default (fast) loader serves every curve: that loader
    drops scalars it does not know (float64 tensors), which EventAccumulator would read."""
    import os
    import signal
    import socket
    import time
    import urllib.request

    result = paralab.run(spec(tmp_path, "tensorboard"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    board = Path(sys.executable).with_name("tensorboard")
    process = subprocess.Popen([str(board), "--logdir", result.path, "--host", "127.0.0.1",
                                "--port", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    url = (f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?run=tensorboard"
           f"&tag=test/accuracy")
    served: list[list[float]] = []
    try:
        deadline = time.monotonic() + 120
        while not served and time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    served = json.loads(answer.read())
            except (OSError, ValueError):
                pass
            time.sleep(1)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert [(int(step), value) for _, step, value in served] == [
        (p, as_float32(phase["metrics"]["test/accuracy"]))
        for p, phase in enumerate(saved_phases(result.path))]


def test_an_absolute_log_dir_gets_a_folder_per_run(tmp_path: Path) -> None:
    shared = tmp_path / "board"
    first = paralab.run(spec(tmp_path / "runs", {"name": "tensorboard", "log_dir": str(shared)}))
    second = paralab.run(spec(tmp_path / "runs", {"name": "tensorboard", "log_dir": str(shared)}))
    assert Path(first.path).name == "iris-tracked" and Path(second.path).name == "iris-tracked-2"
    assert sorted(p.name for p in shared.iterdir()) == ["iris-tracked", "iris-tracked-2"]
    for result in (first, second):
        curve = tensorboard_scalars(shared / Path(result.path).name)["test/accuracy"]
        assert curve == [(p, as_float32(phase["metrics"]["test/accuracy"]))
                         for p, phase in enumerate(saved_phases(result.path))]


# -------------------------------------------------------------------- runs and failures


def test_trackers_see_only_their_own_run(tmp_path: Path) -> None:
    """Three runs in one process: the trackers of one never record another."""
    registry = get_registry()
    before = list(registry.pm.get_plugins())
    first = paralab.run(spec(tmp_path, "csv", "tensorboard", name="first"))
    bare = paralab.run(spec(tmp_path, name="bare", method={"name": "sgd", "lr": 0.3}))
    third = paralab.run(spec(tmp_path, "csv", name="third", seed=7))
    assert list(registry.pm.get_plugins()) == before, "the process manager is unchanged"
    assert sorted(p.name for p in Path(bare.path).iterdir()) == [
        "curve.png", "model.safetensors", "result.json", "summary.md"]
    for result in (first, third):
        phases = saved_phases(result.path)
        assert read_long(Path(result.path) / "metrics_long.csv") == expected_long(phases)
    assert saved_phases(first.path) != saved_phases(third.path)
    assert set(tensorboard_scalars(Path(first.path) / "tensorboard")) == {
        "train/loss", "test/accuracy", "test/loss"}


class Faulty(paralab.Tracker):
    """A third-party tracker that breaks when phase ``at`` closes (with ``once``: only the first
    time in a run folder, so that the run can be resumed)."""

    failed_in: ClassVar[set[str]] = set()

    def __init__(self, at: int = 2, interrupt: bool = False, once: bool = False) -> None:
        self.at = at
        self.interrupt = interrupt
        self.once = once

    @hookimpl
    def paralab_after_phase(self, run: Any, phase: Any) -> None:
        if len(run.result.phases) != self.at:
            return
        folder = str(run.output_dir)
        if self.once and folder in Faulty.failed_in:
            return
        Faulty.failed_in.add(folder)
        if self.interrupt:
            raise KeyboardInterrupt
        raise OSError("the tracking disk is full")


class FaultyPlugin:
    """Contributes the ``faulty`` tracker (registered at run time, like a test plugin)."""

    PARALAB_API = "1.0"

    @hookimpl
    def paralab_trackers(self) -> list[TrackerSpec]:
        return [TrackerSpec("faulty", Faulty, "breaks at phase `at`",
                            {"at": Option(2, type=int, ge=0), "interrupt": Option(False),
                             "once": Option(False)})]


@pytest.fixture
def with_faulty() -> Any:
    return isolated_registry(("faulty_tracking", FaultyPlugin()), discover=True)


def test_a_tracker_that_raises_fails_the_run_naming_its_plugin(
        tmp_path: Path, with_faulty: Any) -> None:
    with pytest.raises(paralab.RunError) as caught:
        paralab.run(spec(tmp_path, "csv", "tensorboard", "faulty", epochs=5),
                    registry=with_faulty)
    error = caught.value
    assert error.plugin == "faulty_tracking"
    assert str(error).startswith("plugin faulty_tracking") and "the tracking disk is full" in str(
        error) and "(during epoch 2)" in str(error)
    folder = Path(error.result.path)
    saved = json.loads((folder / "result.json").read_text("utf-8"))
    assert saved["status"] == "failed" and saved["error"]["plugin"] == "faulty_tracking"
    assert "failed in tracker 'faulty'" in str(error)
    assert saved["error"]["stage"] == "tracker" and saved["error"]["component"] == "faulty"
    assert len(saved["phases"]) == 2, "the two finished phases are kept"
    # The other trackers recorded exactly the phases result.json keeps, no more.
    assert read_long(folder / "metrics_long.csv") == expected_long(saved["phases"])
    assert [step for step, _ in tensorboard_scalars(folder / "tensorboard")["test/accuracy"]] == [
        0, 1]


def test_an_interrupted_run_keeps_its_csv_rows(tmp_path: Path, with_faulty: Any) -> None:
    with pytest.raises(KeyboardInterrupt):
        paralab.run(spec(tmp_path, "csv", {"name": "faulty", "at": 1, "interrupt": True}),
                    registry=with_faulty)
    (folder,) = tmp_path.iterdir()
    saved = json.loads((folder / "result.json").read_text("utf-8"))
    assert saved["status"] == "interrupted" and len(saved["phases"]) == 1
    assert read_long(folder / "metrics_long.csv") == expected_long(saved["phases"])
