"""Composed strategies: a base loop plus strategy plugins named in the spec.

A named strategy (``method = "ewc"``) is the base loop with its own plugin: the same run as
``naive`` with ``plugins = [{name = "ewc"}]``, bit for bit. Composition is what inheritance
could not give: replay + EWC is a run that differs from each alone, in which both consolidate
after every experience, in list order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import paralab
from paralab import MethodSpec, hookimpl, host
from paralab.testing import isolated_registry
from paralab.testing.kit import use_registry
from paralab_continual.scenarios import build_stream
from paralab_registry import LoadSettings
from tests.continual_helpers import small_continual_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


def _same_run(a: paralab.Result, b: paralab.Result) -> None:
    assert a.status == b.status == "completed", (a.error, b.error)
    assert a.metrics["accuracy_matrix"] == b.metrics["accuracy_matrix"]
    assert [p["metrics"].get("train/loss") for p in a.phases] == \
        [p["metrics"].get("train/loss") for p in b.phases]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[name], sb[name]) for name in sa)


OWN = [
    ("ewc", {"ewc_lambda": 100.0}),
    ("ewc", {"ewc_lambda": 10.0, "mode": "online", "decay": 0.9}),
    ("online_ewc", {"ewc_lambda": 10.0, "decay": 0.8}),
    ("si", {"si_lambda": 1.0}),
    ("lwf", {"alpha": 2.0}),
    ("replay", {"buffer_size": 60, "policy": "class_balanced"}),
    ("agem", {"patterns_per_experience": 20, "sample_size": 16}),
]


@pytest.mark.parametrize(("name", "options"), OWN, ids=lambda v: str(v))
@pytest.mark.parametrize("scenario", ["class_incremental", "task_incremental"])
def test_a_named_strategy_is_naive_with_its_plugin(name: str, options: dict[str, Any],
                                                   scenario: str) -> None:
    named = paralab.run(small_continual_spec({"name": name, **options}, scenario=scenario))
    composed = paralab.run(small_continual_spec(
        {"name": "naive", "plugins": [{"name": name, **options}]}, scenario=scenario))
    _same_run(named, composed)


def test_a_named_strategy_takes_more_plugins_after_its_own() -> None:
    """``replay`` + ``plugins = [ewc]`` is ``naive`` + ``[replay, ewc]``."""
    a = paralab.run(small_continual_spec(
        {"name": "replay", "buffer_size": 60, "plugins": [{"name": "ewc", "ewc_lambda": 50.0}]}))
    b = paralab.run(small_continual_spec(
        {"name": "naive", "plugins": [{"name": "replay", "buffer_size": 60},
                                      {"name": "ewc", "ewc_lambda": 50.0}]}))
    _same_run(a, b)


class _Probe:
    """A third party's strategy plugin (no import of paralab_continual): after each
    experience it reads what the plugins before it consolidated."""

    name = "probe"
    seen: list[dict[str, Any]] = []

    def after_experience(self, strategy: Any, run: Any, experience: Any) -> None:
        replay, ewc = strategy.plugins[:2]
        type(self).seen.append({
            "experience": experience.index,
            "replay_seen": replay.buffer.seen,
            "replay_rows": len(replay.buffer),
            "ewc_anchors": float(ewc.offset),
            "ewc_curvature": float(sum(a.sum() for a in ewc.curvature)),
            "order": [p.name for p in strategy.plugins],
        })


class _ProbePlugin:
    PARALAB_API = "1.0"

    @hookimpl
    def paralab_methods(self) -> list[MethodSpec]:
        return [MethodSpec("probe", _Probe, "Reads the plugins before it.",
                           family="continual_plugin")]


REPLAY = {"name": "replay", "buffer_size": 60}
EWC = {"name": "ewc", "ewc_lambda": 1000.0}


def test_replay_plus_ewc_differs_from_each_and_both_consolidate() -> None:
    import paralab_continual

    registry = isolated_registry(("paralab_continual", paralab_continual),
                                 ("probe", _ProbePlugin()))
    _Probe.seen = []
    with use_registry(registry):
        both = paralab.run(small_continual_spec(
            {"name": "naive", "plugins": [REPLAY, EWC, {"name": "probe"}]}), registry=registry)
        replay = paralab.run(small_continual_spec(REPLAY), registry=registry)
        ewc = paralab.run(small_continual_spec(EWC), registry=registry)
    matrices = [r.metrics["accuracy_matrix"] for r in (both, replay, ewc)]
    assert matrices[0] != matrices[1] and matrices[0] != matrices[2]
    # After every experience (in list order: replay, ewc, then the probe) the memory has
    # taken this experience's rows and EWC has folded one more Fisher around new anchors.
    stream = build_stream(paralab.load_dataset("digits"), experiences=3, seed=0)
    sizes = [len(e.train) for e in stream]
    assert [s["experience"] for s in _Probe.seen] == [0, 1, 2]
    assert [s["replay_seen"] for s in _Probe.seen] == [sum(sizes[: i + 1]) for i in range(3)]
    assert all(s["replay_rows"] == 60 for s in _Probe.seen)
    anchors = [s["ewc_anchors"] for s in _Probe.seen]
    curvature = [s["ewc_curvature"] for s in _Probe.seen]
    assert anchors[0] > 0 and anchors[1] > anchors[0] and anchors[2] > anchors[1]
    assert curvature[0] > 0 and curvature[1] > curvature[0] and curvature[2] > curvature[1]
    assert _Probe.seen[0]["order"] == ["replay", "ewc", "probe"]


@pytest.mark.parametrize(("plugins", "needles"), [
    ([REPLAY, {"name": "ewk"}],
     ["method.plugins[1].name = 'ewk'", "is unknown",
      "agem, der, er_ace, ewc, lwf, online_ewc, replay, si"]),
    ([{"name": "naive"}], ["method.plugins[0].name = 'naive'", "is not a strategy plugin"]),
    ([{"name": "ewc", "lambda": 100}], ["method.plugins[0].lambda", "has no option 'lambda'",
                                        "ewc_lambda"]),
    ([{"name": "ewc", "ewc_lambda": -1.0}], ["method.plugins[0].ewc_lambda = -1.0",
                                             "must be >= 0"]),
    ([{"name": "replay", "lr": 0.1}], ["method.plugins[0].lr", "has no option 'lr'"]),
    (["ewc"], ["method.plugins = ['ewc']: entry [0] expected table"]),
    ([{"ewc_lambda": 1.0}], ["method.plugins[0]", "a plugin is a table with a name"]),
    ([{"name": "replay", "buffer_size": 100000}],
     ["method 'naive', plugin 'replay' (method.plugins[0])", "buffer_size = 100000"]),
])
def test_bad_plugins_are_spec_errors_before_any_folder(plugins: list[Any], needles: list[str],
                                                       tmp_path: Any) -> None:
    spec = small_continual_spec({"name": "naive", "plugins": plugins})
    spec["output"] = str(tmp_path)
    with pytest.raises(paralab.SpecError) as raised:
        paralab.run(spec)
    for needle in needles:
        assert needle in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_composed_seeds_run_one_after_another_with_the_reason() -> None:
    spec = small_continual_spec({"name": "naive", "plugins": [REPLAY, EWC]})
    results = paralab.run_seeds(spec, [0, 1])
    assert [r.status for r in results] == ["completed", "completed"]
    axis = results[0].provenance["seed_axis"]
    assert axis["stacked"] == 1
    assert "composes strategy plugins ['replay', 'ewc']" in axis["why_not"]
    single = paralab.run({**spec, "seed": 1})
    assert results[1].metrics["accuracy_matrix"] == single.metrics["accuracy_matrix"]
    # A named strategy with only its own plugin still stacks.
    stacked = paralab.run_seeds(small_continual_spec(REPLAY), [0, 1])
    assert stacked[0].provenance["seed_axis"]["stacked"] == 2


def test_a_composed_run_resumes_to_the_uninterrupted_run(tmp_path: Any) -> None:
    """Every plugin's state is in the checkpoint: a run resumed after experience 1 ends
    like the uninterrupted one."""
    from paralab.checkpoints import CHECKPOINT_FILE

    spec = {**small_continual_spec({"name": "naive", "plugins": [REPLAY, EWC]}),
            "checkpoint_every": 1}
    reference = paralab.run({**spec, "output": str(tmp_path / "a")})

    class Stop:
        PARALAB_API = "1.0"

        @hookimpl
        def paralab_after_phase(self, run: Any, phase: Any) -> None:
            if phase.kind == "experience" and phase.index == 1:
                raise KeyboardInterrupt

    registry = host.make_registry(LoadSettings()).load()
    registry.add("stop", Stop())
    with pytest.raises(KeyboardInterrupt) as caught:
        paralab.run({**spec, "output": str(tmp_path / "b")}, registry=registry)
    folder = Path(caught.value.result.path)  # type: ignore[attr-defined]
    assert (folder / CHECKPOINT_FILE).is_file()
    state = torch.load(folder / CHECKPOINT_FILE, weights_only=True)["protocol"]["method"]
    assert len(state["plugins"]) == 2 and len(state["plugins"][0]["buffer"]["indices"]) == 60
    resumed = paralab.resume(folder)
    assert resumed.metrics["accuracy_matrix"] == reference.metrics["accuracy_matrix"]


def test_a_listed_plugins_option_that_would_do_nothing_is_refused():
    """``used_when`` holds inside ``plugins = [...]`` as for the method itself: ewc's decay acts
    only in online mode, so with mode = "separate" it is refused, not ignored."""
    spec = small_continual_spec({"name": "naive", "plugins": [{"name": "ewc", "decay": 0.5}]})
    with pytest.raises(paralab.SpecError, match=(
            r"method\.plugins\[0\]\.decay: method 'ewc' \(paralab_continual\) uses it only "
            r"when mode = 'online', and here mode = 'separate'")):
        paralab.run(spec)
    online = small_continual_spec({"name": "naive", "plugins": [
        {"name": "ewc", "mode": "online", "decay": 0.5}]})
    assert paralab.run(online).status == "completed"
