"""The seed axis of the ``continual`` protocol: stacked seeds equal separate runs.

Per seed, a stacked run of naive, joint, EWC, online EWC or replay must give the run its
separate run gives: the same phases, accuracy matrix and summaries, and the same weights.
Tolerance (see tests/test_seeds.py for why): weights at ``atol = 1e-4`` (the stacked
matrix products sum in another order, ~1e-7 per step, and the EWC penalty at lambda = 100
amplifies that to ~1e-5 over five experiences), training losses at ``rel = 1e-5``, accuracy
matrices equal but for at most one entry one test example apart (measured: all equal).
"""

from __future__ import annotations

import statistics
from typing import Any

import pytest
import torch

import paralab
from paralab import run_seeds

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def spec(method: dict[str, Any], **protocol: Any) -> dict[str, Any]:
    return {
        "name": "seeds-continual",
        "dataset": "digits",
        "model": {"name": "mlp", "hidden": [32, 32]},
        "protocol": {"name": "continual", "experiences": 5, "epochs": 1, "batch_size": 32,
                     "plot": False, **protocol},
        "method": {"lr": 0.05, **method},
        "metrics": ["accuracy"],
        "output": None,
        "device": "cpu",
    }


def max_difference(a: paralab.Result, b: paralab.Result) -> float:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return max(float((sa[n] - sb[n]).abs().max()) for n in sa)


def close_matrices(a: list[list[float]], b: list[list[float]], rows: int = 60) -> bool:
    """Equal, or apart by one test example of an experience (digits' experiences have at
    least ``rows`` test rows) in at most one entry: weights equal to ~1e-6 may put one example
    on the other side of a decision boundary."""
    flat_a, flat_b = [x for row in a for x in row], [x for row in b for x in row]
    apart = [abs(x - y) for x, y in zip(flat_a, flat_b) if x != y]
    return len(flat_a) == len(flat_b) and len(apart) <= 1 and all(d <= 1 / rows for d in apart)


def assert_equal_runs(stacked: list[paralab.Result], separate: list[paralab.Result],
                      weights: float | None = 1e-4) -> None:
    for a, b in zip(stacked, separate):
        assert a.status == b.status, (a.error, b.error)
        assert [(p["kind"], p["index"], p["info"]) for p in a.phases] == \
            [(p["kind"], p["index"], p["info"]) for p in b.phases]
        if a.status != "completed":  # a diverged run: its error is compared by the caller
            continue
        assert close_matrices(a.metrics["accuracy_matrix"], b.metrics["accuracy_matrix"])
        for key in ("average_accuracy", "forgetting", "backward_transfer", "forward_transfer"):
            value, reference = a.metrics.get(key), b.metrics.get(key)
            assert value == reference or abs(value - reference) <= 1.0 / 60, key
        for pa, pb in zip(a.phases, b.phases):
            if "train/loss" in pa["metrics"]:
                assert pa["metrics"]["train/loss"] == pytest.approx(
                    pb["metrics"]["train/loss"], rel=1e-5)
        if weights is not None:
            assert max_difference(a, b) <= weights


ADAM_EWC = {"name": "ewc", "ewc_lambda": 10.0, "optimizer": "adam", "lr": 0.002}


@pytest.mark.parametrize("method", [
    {"name": "naive"},
    {"name": "joint"},
    {"name": "ewc", "ewc_lambda": 100.0},
    {"name": "online_ewc", "ewc_lambda": 10.0, "decay": 0.9},
    {"name": "replay", "buffer_size": 60, "policy": "experience_balanced"},
    {"name": "replay", "buffer_size": 40, "policy": "reservoir", "memory_batch_size": 16},
    ADAM_EWC,
    {"name": "naive", "momentum": 0.5, "weight_decay": 1e-4, "reset_optimizer": False},
], ids=lambda m: "-".join(str(v) for v in m.values()))
def test_stacked_strategies_equal_separate_runs(method: dict[str, Any]) -> None:
    one = spec(method)
    stacked = run_seeds(one, [0, 1, 2])
    assert {r.provenance["seed_axis"]["stacked"] for r in stacked} == {3}
    separate = run_seeds(one, [0, 1, 2], vectorize=False)
    # Adam's final weights are checked after the first phases below, not after five
    # experiences: its normalised step turns the stacked products' rounding (~1e-7) in small
    # gradients into lr-sized steps that compound; measured 2026-12-02 on this machine, seed
    # 2 ends 4e-4 apart in 13 of 1,024 weights of one layer (1e-7 after two experiences),
    # while its losses, accuracy matrix and metrics still agree as checked here.
    adam = method.get("optimizer") == "adam"
    assert_equal_runs(stacked, separate, weights=None if adam else 1e-4)
    assert len({r.metrics["average_accuracy"] for r in stacked}) > 1 or \
        max_difference(stacked[0], stacked[1]) > 0.01  # the seeds are different runs


def test_adam_runs_equal_separate_runs_to_float_tolerance_after_the_first_phases() -> None:
    """The issue's criterion: after the first phase (here the first two experiences) the
    stacked and separate weights agree to float tolerance (measured ~1e-7)."""
    one = spec(ADAM_EWC, experiences=2)
    stacked, separate = run_seeds(one, [0, 1, 2]), run_seeds(one, [0, 1, 2], vectorize=False)
    assert_equal_runs(stacked, separate, weights=1e-6)


@pytest.mark.parametrize("protocol", [
    {"scenario": "task_incremental"},  # training reads the outputs masked per task
    {"scenario": "domain_incremental", "domain": "permuted", "experiences": 3},  # per seed
    {"scenario": "domain_incremental", "domain": "split"},  # relabelled targets
], ids=lambda p: "-".join(str(v) for v in p.values()))
def test_stacked_scenarios_equal_separate_runs(protocol: dict[str, Any]) -> None:
    one = spec({"name": "replay", "buffer_size": 30}, **protocol)
    stacked = run_seeds(one, [0, 1])
    assert stacked[0].provenance["seed_axis"]["stacked"] == 2
    assert_equal_runs(stacked, run_seeds(one, [0, 1], vectorize=False))


def test_ten_seeds_of_ewc_distribute_as_separate_runs() -> None:
    one = spec({"name": "ewc", "ewc_lambda": 100.0}, forward_transfer=False)
    one["model"] = {"name": "mlp", "hidden": [16]}
    seeds = list(range(10))
    stacked = run_seeds(one, seeds)
    separate = run_seeds(one, seeds, vectorize=False)
    a = [r.metrics["average_accuracy"] for r in stacked]
    b = [r.metrics["average_accuracy"] for r in separate]
    assert a == pytest.approx(b, abs=1 / 300)  # every seed equal (but one example)
    assert statistics.mean(a) == pytest.approx(statistics.mean(b), abs=1 / 300)
    assert statistics.stdev(a) == pytest.approx(statistics.stdev(b), abs=1 / 300)
    assert statistics.stdev(a) > 0.005  # ten different runs, not one run ten times
    assert {r.provenance["seed_axis"]["stacked"] for r in stacked} == {10}


def test_a_diverging_seed_fails_alone() -> None:
    """EWC with momentum at a large step diverges for some seeds: in a stacked chunk those
    seeds fail in the same experience, with the same error, as their separate runs, and the
    others complete."""
    one = spec({"name": "ewc", "ewc_lambda": 100.0, "momentum": 0.9}, epochs=2,
               shuffle_classes=False)
    one["model"] = {"name": "mlp", "hidden": [64, 64]}
    stacked = run_seeds(one, [0, 1, 2])
    separate = run_seeds(one, [0, 1, 2], vectorize=False)
    statuses = [r.status for r in separate]
    assert "failed" in statuses and "completed" in statuses, statuses
    assert [r.status for r in stacked] == statuses
    for a, b in zip(stacked, separate):
        assert [(p["kind"], p["index"]) for p in a.phases] == \
            [(p["kind"], p["index"]) for p in b.phases]
        if b.status == "failed":
            assert a.error["message"] == b.error["message"]
            assert a.error["phase"] == b.error["phase"]
    # (the weights of a seed that survives this step size are chaotic: not compared)


@pytest.mark.parametrize("method", [
    {"name": "si", "si_lambda": 1.0},
    {"name": "si", "si_lambda": 10.0, "optimizer": "adam", "lr": 0.002},
    {"name": "lwf", "alpha": 2.0},
    {"name": "agem", "patterns_per_experience": 20, "sample_size": 16},
], ids=lambda m: "-".join(str(v) for v in m.values()))
@pytest.mark.parametrize("scenario", ["class_incremental", "task_incremental"])
def test_stacked_si_lwf_agem_equal_separate_runs(method: dict[str, Any], scenario: str) -> None:
    """SI's stacked path integral, LwF's stacked teachers, A-GEM's per-seed memory samples
    and projections."""
    one = spec(method, scenario=scenario, epochs=2)
    stacked = run_seeds(one, [0, 1])
    assert stacked[0].provenance["seed_axis"]["stacked"] == 2
    assert_equal_runs(stacked, run_seeds(one, [0, 1], vectorize=False))


def test_checkpointed_runs_go_one_after_another(tmp_path: Any) -> None:
    one = spec({"name": "naive"}, experiences=2)
    one.update(output=str(tmp_path), checkpoint_every=1)
    results = run_seeds(one, [0, 1])
    assert [r.status for r in results] == ["completed", "completed"]
    assert {r.provenance["seed_axis"]["stacked"] for r in results} == {1}
    assert "checkpoint_every" in results[0].provenance["seed_axis"]["why_not"]


@pytest.mark.slow
def test_the_avalanche_adapter_runs_one_after_another() -> None:
    pytest.importorskip("avalanche")
    one = spec({"name": "avalanche", "strategy": "Naive"}, experiences=2)
    results = run_seeds(one, [0, 1])
    assert [r.status for r in results] == ["completed", "completed"]
    assert "'avalanche' (AvalancheStrategy) has no stacked step" in \
        results[0].provenance["seed_axis"]["why_not"]


def test_seed_chunks_of_replay_keep_each_seeds_memory() -> None:
    one = spec({"name": "replay", "buffer_size": 50})
    stacked = run_seeds(one, [5, 6, 7], max_parallel_seeds=2)
    assert [r.provenance["seed_axis"]["stacked"] for r in stacked] == [2, 2, 1]
    assert_equal_runs(stacked, run_seeds(one, [5, 6, 7], vectorize=False))
    assert torch.is_tensor(next(stacked[0].model.parameters()))
