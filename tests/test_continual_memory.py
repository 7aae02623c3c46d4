"""Memory figures per experience: what each strategy keeps (bytes as stored, the rehearsal
memory's rows and their bytes as copies) and the peak memory of each experience."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import paralab
from paralab import MethodSpec, hookimpl, load_dataset
from paralab.testing import isolated_registry
from paralab.testing.kit import use_registry
from tests.continual_helpers import small_continual_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest

HIDDEN = 32


def _experience_metrics(result: paralab.Result) -> list[dict[str, Any]]:
    assert result.status == "completed", result.error
    return [p["metrics"] for p in result.phases if p["kind"] == "experience"]


def _row_bytes() -> int:
    dataset = load_dataset("digits")
    return dataset.x[0].numel() * dataset.x.element_size() + dataset.y.element_size()


def _parameter_bytes(result: paralab.Result) -> int:
    return sum(p.numel() * p.element_size() for p in result.model.parameters())


def test_replay_memory_rows_and_bytes():
    phases = _experience_metrics(paralab.run(small_continual_spec(
        {"name": "replay", "buffer_size": 60})))
    for metrics in phases:
        assert metrics["memory/buffer_rows"] == 60
        assert metrics["memory/buffer_bytes"] == 60 * _row_bytes()
        assert metrics["memory/strategy_bytes"] == 60 * 2 * 8  # two int64 indices a slot


def test_agem_memory_grows_per_experience():
    phases = _experience_metrics(paralab.run(small_continual_spec(
        {"name": "agem", "patterns_per_experience": 20, "sample_size": 8})))
    assert [m["memory/buffer_rows"] for m in phases] == [20, 40, 60]
    assert [m["memory/buffer_bytes"] for m in phases] == [r * _row_bytes() for r in (20, 40, 60)]


def test_penalties_and_teachers_cost_model_copies_and_naive_nothing():
    ewc = paralab.run(small_continual_spec({"name": "ewc"}))
    model = _parameter_bytes(ewc)
    # A and B: two model-sized tensors, however many experiences were folded in.
    assert [m["memory/strategy_bytes"] for m in _experience_metrics(ewc)] == [2 * model] * 3
    lwf = paralab.run(small_continual_spec({"name": "lwf"}))
    assert all(m["memory/strategy_bytes"] >= model for m in _experience_metrics(lwf))
    naive = _experience_metrics(paralab.run(small_continual_spec("naive")))
    assert all(m["memory/strategy_bytes"] == 0 and m["memory/buffer_rows"] == 0 for m in naive)
    both = _experience_metrics(paralab.run(small_continual_spec(
        {"name": "naive", "plugins": [{"name": "replay", "buffer_size": 60}, {"name": "ewc"}]})))
    assert all(m["memory/strategy_bytes"] == 2 * model + 60 * 16 for m in both)


def test_stacked_seeds_record_the_figures_of_separate_runs():
    spec = small_continual_spec({"name": "replay", "buffer_size": 40})
    stacked = paralab.run_seeds(spec, [0, 1])
    assert stacked[0].provenance["seed_axis"]["stacked"] == 2
    separate = paralab.run_seeds(spec, [0, 1], vectorize=False)
    keys = ("memory/strategy_bytes", "memory/buffer_rows", "memory/buffer_bytes")
    for a, b in zip(stacked, separate):
        assert [[m[k] for k in keys] for m in _experience_metrics(a)] == \
            [[m[k] for k in keys] for m in _experience_metrics(b)]
        assert [e["stacked"] for e in a.provenance["peak_memory"]] == [2, 2, 2]


class _Ballast:
    """A third party's plugin holding ~160 MB during experience 1 only."""

    name = "ballast"

    def __init__(self) -> None:
        self.held: torch.Tensor | None = None

    def before_experience(self, strategy: Any, run: Any, experience: Any) -> None:
        self.held = torch.ones(40_000_000) if experience.index == 1 else None

    def after_experience(self, strategy: Any, run: Any, experience: Any) -> None:
        self.held = None


class _BallastPlugin:
    PARALAB_API = "1.0"

    @hookimpl
    def paralab_methods(self) -> list[MethodSpec]:
        return [MethodSpec("ballast", _Ballast, "Holds memory in experience 1.",
                           family="continual_plugin")]


def test_peak_memory_is_per_experience():
    import paralab_continual

    registry = isolated_registry(("paralab_continual", paralab_continual),
                                 ("ballast", _BallastPlugin()))
    with use_registry(registry):
        result = paralab.run(small_continual_spec(
            {"name": "naive", "plugins": [{"name": "ballast"}]}), registry=registry)
    peaks = result.provenance["peak_memory"]
    assert [e["experience"] for e in peaks] == [0, 1, 2]
    assert all(e["peak_rss_bytes"] > 10_000_000 for e in peaks)
    if peaks[0]["scope"] != "experience":
        pytest.skip("this kernel cannot reset the peak RSS: peaks are the process's")
    # Experience 1 held 160 MB more; the reset at experience 2's start forgot it.
    assert peaks[1]["peak_rss_bytes"] > peaks[0]["peak_rss_bytes"] + 120_000_000
    assert peaks[2]["peak_rss_bytes"] < peaks[1]["peak_rss_bytes"] - 120_000_000
