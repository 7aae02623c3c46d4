"""Phase checkpoints and ``paralab resume``: an interrupted run, resumed, ends exactly where an
uninterrupted run of the same seed ends.

For every resumable bundled protocol (and the strategies, server optimizers and middleware
that keep state between phases) run A goes through uninterrupted with ``checkpoint_every =
1``; run B, the same spec, is interrupted by a per-run plugin raising ``KeyboardInterrupt``
in ``paralab_after_phase`` of phase ``k`` (so phase ``k``'s work is lost, as when Ctrl-C
arrives mid-phase), then resumed with :func:`paralab.resume` and the default registry. The
resumed run must complete with as many phases, the same final metrics, the same phase
metrics and bit-identical model weights. Everything runs on the CPU, where torch's kernels
are deterministic, so equality is exact; only wall-clock metrics (``*seconds*``) differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import paralab
from paralab import host
from paralab.checkpoints import CHECKPOINT_FILE, ResumeError
from paralab.spec import SpecError
from paralab_registry import LoadSettings

torch.set_num_threads(1)


class Interrupt:
    """A per-run plugin: Ctrl-C in ``after_phase`` of phase ``at`` (0-based, counting every
    phase the run closed before), or in ``after_experiment`` when ``at`` is None."""

    PARALAB_API = "1.0"

    def __init__(self, at: int | None) -> None:
        self.at = at

    @paralab.hookimpl
    def paralab_after_phase(self, run: Any, phase: Any) -> None:
        if self.at is not None and len(run.result.phases) == self.at:
            raise KeyboardInterrupt

    @paralab.hookimpl
    def paralab_after_experiment(self, run: Any, result: Any) -> None:
        if self.at is None:
            raise KeyboardInterrupt


def interrupted(spec: dict[str, Any], folder: Path, at: int | None) -> Path:
    """Run ``spec`` into ``folder`` with a registry of its own that interrupts it; the run's
    folder."""
    registry = host.make_registry(LoadSettings()).load()
    registry.add("interrupt", Interrupt(at))
    with pytest.raises(KeyboardInterrupt) as caught:
        paralab.run({**spec, "output": str(folder)}, registry=registry)
    result = caught.value.result  # type: ignore[attr-defined]
    assert result.status == "interrupted"
    return Path(result.path)


def untimed(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if "seconds" not in key}


def assert_same_run(resumed: paralab.Result, reference: paralab.Result) -> None:
    assert resumed.status == "completed"
    assert len(resumed.phases) == len(reference.phases)
    assert untimed(resumed.metrics) == untimed(reference.metrics)
    for mine, theirs in zip(resumed.phases, reference.phases):
        assert (mine["kind"], mine["index"]) == (theirs["kind"], theirs["index"])
        assert untimed(mine["metrics"]) == untimed(theirs["metrics"])
    if reference.model is not None:
        a, b = reference.model.state_dict(), resumed.model.state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[name], b[name]) for name in a)


def check_resume(spec: dict[str, Any], tmp_path: Path, at: int | None) -> paralab.Result:
    spec = {"device": "cpu", "seed": 3, "checkpoint_every": 1, **spec}
    reference = paralab.run({**spec, "output": str(tmp_path / "a")})
    folder = interrupted(spec, tmp_path / "b", at)
    saved = json.loads((folder / "result.json").read_text())
    assert saved["status"] == "interrupted"
    assert (folder / CHECKPOINT_FILE).is_file()
    resumed = paralab.resume(folder)
    assert resumed.path == str(folder)
    assert resumed.provenance["resumed"]["previous_status"] == "interrupted"
    assert_same_run(resumed, reference)
    assert json.loads((folder / "result.json").read_text())["status"] == "completed"
    return resumed


# ----------------------------------------------------------------------------- protocols

MLP = {"name": "mlp", "hidden": [32]}


def supervised(method: Any = None, **extra: Any) -> dict[str, Any]:
    return {"dataset": "digits", "model": MLP,
            "protocol": {"name": "supervised", "epochs": 3, "batch_size": 64},
            "method": method or {"name": "adam", "lr": 0.01}, **extra}


def continual(method: Any, **protocol: Any) -> dict[str, Any]:
    return {"dataset": "digits", "model": MLP, "method": method,
            "protocol": {"name": "continual", "experiences": 3, "epochs": 1, "batch_size": 32,
                         "plot": False, **protocol}}


def episodic(method: Any) -> dict[str, Any]:
    return {"dataset": "digits", "model": {"name": "mlp", "hidden": [16]},
            "method": method,
            "protocol": {"name": "episodic", "ways": 2, "shots": 1, "queries": 2,
                         "meta_batch": 2, "meta_iterations": 4, "eval_every": 1,
                         "val_episodes": 4, "eval_episodes": 6, "eval_meta_batch": 3}}


def federated(method: Any = "fedavg", middleware: Any = (), **protocol: Any) -> dict[str, Any]:
    return {"dataset": "digits", "model": MLP, "method": method, "middleware": list(middleware),
            "protocol": {"name": "federated", "clients": 6, "fraction": 0.5, "rounds": 4,
                         "batch_size": 32, **protocol}}


CASES: dict[str, tuple[dict[str, Any], int | None]] = {
    "supervised-adam": (supervised(), 1),
    # Checkpoints every 2 phases, interrupted in phase 3: phase 2 is lost as well and redone.
    "supervised-every-2": ({**supervised(), "checkpoint_every": 2,
                            "protocol": {"name": "supervised", "epochs": 5, "batch_size": 64}}, 3),
    "continual-every-2": ({**continual({"name": "ewc", "ewc_lambda": 10.0}),
                           "checkpoint_every": 2}, 3),
    "supervised-dp-sgd": (
        {"dataset": "iris", "model": {"name": "mlp", "hidden": [8]},
         "protocol": {"name": "supervised", "epochs": 3, "batch_size": 16},
         "method": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
         # reproducible: the resumed run is compared with a separate uninterrupted run
         "middleware": [{"name": "dp", "clip": 1.0, "noise_multiplier": 1.0,
                         "reproducible_noise": True}]}, 2),
    "continual-naive-adam": (continual({"name": "naive", "optimizer": "adam", "lr": 0.01,
                                        "reset_optimizer": False}), 2),
    "continual-joint": (continual({"name": "joint", "lr": 0.05}), 2),
    "continual-ewc": (continual({"name": "ewc", "ewc_lambda": 10.0, "momentum": 0.9}), 2),
    "continual-online-ewc": (continual({"name": "online_ewc", "ewc_lambda": 10.0,
                                        "decay": 0.5}), 3),
    "continual-si": (continual({"name": "si", "si_lambda": 1.0}), 3),
    "continual-lwf": (continual({"name": "lwf", "alpha": 1.0},
                                scenario="task_incremental"), 2),
    "continual-replay": (continual({"name": "replay", "buffer_size": 40,
                                    "memory_batch_size": 8}), 3),
    "continual-replay-balanced": (continual({"name": "replay", "buffer_size": 30,
                                             "policy": "class_balanced"},
                                            forward_transfer=False), 1),
    "continual-agem": (continual({"name": "agem", "patterns_per_experience": 10,
                                  "sample_size": 8}, scenario="domain_incremental"), 2),
    "episodic-protonet": (episodic({"name": "protonet", "meta_lr": 0.01}), 2),
    "episodic-maml": (episodic({"name": "maml", "inner_steps": 1}), 2),
    "episodic-reptile": (episodic({"name": "reptile", "inner_steps": 2}), 1),
    "episodic-finetune": (episodic({"name": "finetune", "head_steps": 5}), 3),
    "episodic-after-meta-test": (episodic({"name": "protonet"}), None),
    "federated-fedavg-vmap": (federated(), 2),
    "federated-fedadam-loop": (federated({"name": "fedadam", "server_lr": 0.05},
                                         backend="loop", stragglers=0.3), 2),
    # Dropout draws from torch's global generator: the masks after a resume must be the same.
    "federated-dropout": ({**federated(), "model": {**MLP, "dropout": 0.3}}, 2),
    "episodic-dropout": ({**episodic({"name": "maml", "engine": "vmap"}),
                          "model": {"name": "mlp", "hidden": [16], "dropout": 0.3}}, 2),
    "continual-dropout": ({**continual({"name": "naive"}), "model": {**MLP, "dropout": 0.3}}, 2),
    "addition": ({"dataset": "digits", "model": MLP,
                  "method": {"name": "adam", "lr": 0.01},
                  "protocol": {"name": "addition", "pairs": 60, "test_pairs": 30,
                               "epochs": 3, "batch_size": 8}}, 1),
    "hierarchical": ({"dataset": {"name": "class_hierarchy", "base": "digits"}, "model": MLP,
                      "method": {"name": "adam", "lr": 0.01},
                      "protocol": {"name": "hierarchical", "epochs": 3, "labelled": 0.5,
                                   "semantic_weight": 0.1, "batch_size": 64}}, 2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_resumed_run_ends_like_an_uninterrupted_one(case: str, tmp_path: Path) -> None:
    spec, at = CASES[case]
    check_resume(spec, tmp_path, at)


def test_the_saved_checkpoint_holds_what_resuming_needs(tmp_path: Path) -> None:
    """A continual EWC checkpoint after one experience: its penalty terms, R's first row and
    the run's generators, readable with ``weights_only=True``."""
    spec = {"device": "cpu", "seed": 3, "checkpoint_every": 1,
            **continual({"name": "ewc", "ewc_lambda": 10.0})}
    folder = interrupted(spec, tmp_path, 2)
    checkpoint = torch.load(folder / CHECKPOINT_FILE, weights_only=True)
    assert checkpoint["phases"] == 2  # initial + experience 0
    state = checkpoint["protocol"]
    assert state["experiences_done"] == 1 and len(state["rows"]) == 1
    assert len(state["initial"]) == 3
    assert len(state["method"]["curvature"]) == len(state["model"])
    assert float(sum(c.sum() for c in state["method"]["curvature"])) > 0
    assert set(checkpoint["rng"]) >= {"run", "torch", "numpy", "python"}


def test_dp_accounting_continues_across_a_resume(tmp_path: Path) -> None:
    """FedYogi's server moments and the dp middleware's accountant are checkpointed with the
    run: the resumed run ends like the uninterrupted one, and its epsilon counts every round,
    not only those after the resume."""
    spec = federated({"name": "fedyogi", "server_lr": 0.05},
                     [{"name": "dp", "clip": 0.5, "noise_multiplier": 0.5,
                       "reproducible_noise": True}])
    resumed = check_resume(spec, tmp_path, 3)
    epsilons = [phase["metrics"]["privacy/epsilon"] for phase in resumed.phases]
    assert epsilons == sorted(epsilons) and epsilons[0] < epsilons[-1]
    checkpoint = torch.load(Path(resumed.path) / CHECKPOINT_FILE, weights_only=True)
    (dp_state,) = checkpoint["plugins"].values()
    assert sorted(dp_state["sample_rates"]) == [0, 1, 2, 3]


def test_a_resumed_run_keeps_its_secret_noise_seed(tmp_path: Path) -> None:
    """Without reproducible_noise the noise's seed is a secret of the run: the checkpoint
    holds it (a local file, never result.json), so the resumed run continues that noise."""
    from paralab_federated.privacy import DPFedAvg

    spec = {**federated({"name": "fedavg"}, [{"name": "dp", "clip": 0.5,
                                              "noise_multiplier": 0.5}]),
            "output": str(tmp_path), "checkpoint_every": 1}
    first = paralab.run(spec)
    checkpoint = torch.load(Path(first.path) / CHECKPOINT_FILE, weights_only=True)
    (dp_state,) = checkpoint["plugins"].values()
    assert isinstance(dp_state["secret"], int) and dp_state["secret"] > 0
    assert str(dp_state["secret"]) not in (Path(first.path) / "result.json").read_text()
    restored = DPFedAvg()
    restored.restore_state(None, dp_state)  # type: ignore[arg-type]
    assert restored.noise_seed(None) == dp_state["secret"]


def test_a_run_stopped_by_target_accuracy_stays_stopped(tmp_path: Path) -> None:
    """``target_accuracy`` ended the rounds early; interrupted after its last phase (in
    ``after_experiment``), the resumed run trains no further round."""
    spec = federated(target_accuracy=0.25, rounds=6)  # reached in round 4 of 6
    resumed = check_resume(spec, tmp_path, None)
    assert len(resumed.phases) < 6
    assert resumed.metrics["federated/rounds_to_target"] == len(resumed.phases)


# --------------------------------------------------------------------------------- the CLI


def test_cli_resume_continues_and_exits_0(tmp_path: Path, capsys: Any) -> None:
    from paralab.cli import main

    spec = {"device": "cpu", "seed": 1, "checkpoint_every": 1, **supervised()}
    folder = interrupted(spec, tmp_path, 2)
    assert main(["resume", str(folder)]) == 0
    saved = json.loads((folder / "result.json").read_text())
    assert saved["status"] == "completed" and len(saved["phases"]) == 3
    assert main(["resume", str(folder)]) == 2  # completed: nothing to resume
    assert "nothing to resume" in capsys.readouterr().err


# ------------------------------------------------------------------------------ bad input


def test_resuming_a_completed_run_is_refused(tmp_path: Path) -> None:
    spec = {"device": "cpu", "checkpoint_every": 1, "output": str(tmp_path), **supervised()}
    result = paralab.run(spec)
    with pytest.raises(ResumeError, match="completed; there is nothing to resume"):
        paralab.resume(result.path)


def test_a_folder_without_checkpoint_is_refused(tmp_path: Path) -> None:
    spec = {"device": "cpu", "checkpoint_every": 0, **supervised()}
    folder = interrupted(spec, tmp_path, 1)
    with pytest.raises(ResumeError, match="no checkpoint.pt: run with checkpoint_every"):
        paralab.resume(folder)
    with pytest.raises(ResumeError, match="not a run folder"):
        paralab.resume(tmp_path / "nothing-here")


@pytest.mark.parametrize("protocol, method, dataset", [
    ("kernel", "svc", "iris"),
    ("estimator", "unmitigated", "biased_synthetic"),
])
def test_checkpoint_every_under_a_protocol_that_cannot_resume(protocol: str, method: str,
                                                              dataset: str) -> None:
    """The single-fit protocols are not resumable: ``checkpoint_every`` is a spec error."""
    spec = {"dataset": dataset, "protocol": protocol, "method": method, "checkpoint_every": 1,
            "output": None}
    with pytest.raises(SpecError, match="checkpoint_every") as caught:
        paralab.run(spec)
    assert protocol in str(caught.value)


@pytest.mark.slow  # importing avalanche takes seconds
def test_checkpoint_every_with_a_method_a_checkpoint_cannot_hold(tmp_path: Path) -> None:
    """Avalanche keeps its strategy's state inside its own objects: refused before running,
    and no run folder is left behind."""
    pytest.importorskip("avalanche")
    spec = {"device": "cpu", "checkpoint_every": 1, "output": str(tmp_path / "runs"),
            **continual({"name": "avalanche", "strategy": "Naive"})}
    with pytest.raises(SpecError, match="checkpoint_every = 1: method 'avalanche'"):
        paralab.run(spec)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
