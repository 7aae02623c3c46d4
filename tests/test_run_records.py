"""What a run leaves for the researcher: provenance, the model, progress lines, the history."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import paralab
from paralab import host
from paralab.results import MODEL_FILE
from paralab.spec import SpecError
from paralab_registry import LoadSettings

ROOT = Path(__file__).resolve().parents[1]
IRIS = {"dataset": "iris", "model": {"name": "mlp", "hidden": [16]},
        "protocol": {"name": "supervised", "epochs": 3}, "method": {"name": "adam", "lr": 0.02}}


def test_result_json_records_where_when_and_from_what(tmp_path: Path) -> None:
    result = paralab.run({**IRIS, "output": str(tmp_path)}, overrides=["seed=4"])
    saved = json.loads((Path(result.path) / "result.json").read_text())
    record = saved["provenance"]
    started = datetime.datetime.fromisoformat(record["started_at"])
    finished = datetime.datetime.fromisoformat(record["finished_at"])
    assert started.tzinfo is not None and started <= finished
    assert 0 < record["duration_s"] < 600
    assert record["host"] and record["cwd"] == os.getcwd() and record["pid"] == os.getpid()
    git = record["paralab_git"]
    if (ROOT / ".git").exists():
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        assert git["commit"] == head and isinstance(git["dirty"], bool)
    assert saved["spec"]["seed"] == 4, "the resolved spec, after overrides"
    assert "_t0" not in record


def test_the_saved_model_predicts_what_the_trained_one_does(tmp_path: Path) -> None:
    result = paralab.run({**IRIS, "output": str(tmp_path)})
    assert result.artifacts["model"] == MODEL_FILE
    assert (Path(result.path) / MODEL_FILE).is_file()
    loaded = paralab.load_model(result.path)
    x = paralab.load_dataset("iris").x[:20]
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model(x))
    assert not loaded.training


def test_save_model_false_saves_no_weights_and_load_model_says_why(tmp_path: Path) -> None:
    result = paralab.run({**IRIS, "output": str(tmp_path), "save_model": False})
    assert "model" not in result.artifacts
    with pytest.raises(FileNotFoundError, match="save_model = false"):
        paralab.load_model(result.path)


def test_history_and_repr(tmp_path: Path) -> None:
    result = paralab.run({**IRIS, "output": None})
    history = result.history()
    assert list(history["index"]) == [0, 1, 2]
    assert list(history["test/accuracy"]) == [p["metrics"]["test/accuracy"] for p in result.phases]
    text = repr(result)
    assert "status='completed'" in text and "test/accuracy=" in text and "phases=3" in text
    assert "<table>" in result._repr_html_() and "test/loss" in result._repr_html_()
    loaded = paralab.Result.load  # a saved result reads back with the new fields
    assert loaded is not None


def test_a_piped_run_prints_one_line_per_phase_on_stderr(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PARALAB_QUIET"}
    done = subprocess.run(
        [sys.executable, "-m", "paralab", "run", str(ROOT / "examples" / "digits_mlp.toml"),
         "--set", "protocol.epochs=3", "--output", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("[digits_mlp]")]
    assert [line.split()[1:3] for line in lines] == [["epoch", "1/3"], ["epoch", "2/3"],
                                                     ["epoch", "3/3"]]
    assert all("test/accuracy" in line and "ETA" in line for line in lines)
    quiet = subprocess.run(
        [sys.executable, "-m", "paralab", "run", str(ROOT / "examples" / "digits_mlp.toml"),
         "--set", "protocol.epochs=1", "--output", str(tmp_path), "-q"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert quiet.returncode == 0 and "[digits_mlp]" not in quiet.stderr


# ------------------------------------------------------------------------ the tracker kind


class _Recorder:
    def __init__(self, tag: str = "") -> None:
        self.tag = tag
        self.seen: list[tuple[str, str]] = []

    @paralab.hookimpl
    def paralab_after_phase(self, run, phase) -> None:
        self.seen.append((run.spec.name, f"{phase.kind}{phase.index}"))


class _Silent:
    """Implements no lifecycle hook: records nothing."""


RECORDERS: list[_Recorder] = []


def _recorder(tag: str = "") -> _Recorder:
    RECORDERS.append(_Recorder(tag))
    return RECORDERS[-1]


class _TrackerPlugin:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_trackers(self):
        return [paralab.TrackerSpec("recorder", _recorder, "records phases", {"tag": ""}),
                paralab.TrackerSpec("silent", _Silent, "records nothing")]


@pytest.fixture
def registry():
    registry = host.make_registry(LoadSettings()).load()
    registry.add("trackers_under_test", _TrackerPlugin())
    RECORDERS.clear()
    return registry


def test_a_tracker_sees_its_own_run_only(registry) -> None:
    paralab.run({**IRIS, "output": None, "name": "tracked", "trackers": ["recorder"]},
                registry=registry)
    paralab.run({**IRIS, "output": None, "name": "untracked"}, registry=registry)
    assert len(RECORDERS) == 1
    assert RECORDERS[0].seen == [("tracked", "epoch0"), ("tracked", "epoch1"), ("tracked", "epoch2")]


def test_unknown_trackers_and_options_are_spec_errors(registry) -> None:
    with pytest.raises(SpecError, match=r"trackers\[0\]\.name = 'recordr'.*did you mean 'recorder'"):
        paralab.run({**IRIS, "trackers": ["recordr"]}, registry=registry)
    with pytest.raises(SpecError, match=r"trackers\[0\]\.tag = 3"):
        paralab.run({**IRIS, "trackers": [{"name": "recorder", "tag": 3}]}, registry=registry)


def test_a_tracker_without_lifecycle_hooks_is_a_contract_error(registry) -> None:
    with pytest.raises(paralab.RunError, match="implements none of the lifecycle hooks"):
        paralab.run({**IRIS, "output": None, "trackers": ["silent"]}, registry=registry)


def test_checkpoints_without_a_folder_are_a_spec_error() -> None:
    with pytest.raises(SpecError, match="checkpoint_every = 2: output = None writes no run folder"):
        paralab.run({**IRIS, "output": None, "checkpoint_every": 2})


class _StatelessSGD(paralab.GradientMethod):
    """A gradient method that keeps no state it could save."""

    def setup(self, run, model) -> None:
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def loss(self, run, batch):
        return torch.nn.functional.cross_entropy(batch.logits, batch.targets)

    def step(self, run, model, x, y, indices) -> float:
        self.optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        self.optimizer.step()
        return float(loss)


class _MethodPlugin:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_methods(self):
        return [paralab.MethodSpec("stateless_sgd", _StatelessSGD, "keeps no state",
                                   family="gradient")]


def test_checkpoints_of_a_method_without_state_are_a_spec_error(tmp_path: Path) -> None:
    registry = host.make_registry(LoadSettings()).load()
    registry.add("stateless_method", _MethodPlugin())
    spec = {**IRIS, "method": "stateless_sgd", "output": str(tmp_path)}
    assert paralab.run(spec, registry=registry).status == "completed"
    with pytest.raises(SpecError, match="checkpoint_every = 1: method 'stateless_sgd' has no "
                                        r"state_dict\(\)"):
        paralab.run({**spec, "checkpoint_every": 1}, registry=registry)
