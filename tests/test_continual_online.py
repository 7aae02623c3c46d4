"""Online streams: one pass, minibatch by minibatch, test-then-train online accuracy and
anytime accuracy every N steps, recomputed here independently; blurry boundaries."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import paralab
from paralab import MethodSpec, hookimpl
from paralab.testing import isolated_registry
from paralab.testing.kit import use_registry
from tests.continual_helpers import small_continual_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest

ONLINE = {"epochs": 1, "online": True, "eval_every": 4, "batch_size": 10}


class _Observer:
    """Listed after the strategy's plugins: predictions on each incoming batch before its
    step, and the accuracy over the seen experiences' test views after every 4th step."""

    name = "observer"
    log: dict[str, Any] = {}

    def setup(self, strategy: Any, run: Any, model: torch.nn.Module) -> None:
        type(self).log = {"hits": {}, "rows": {}, "anytime": {}, "steps": 0}

    def before_experience(self, strategy: Any, run: Any, experience: Any) -> None:
        self.current = experience

    def before_step(self, strategy: Any, run: Any, model: Any, x: Any, y: Any, rows: Any,
                    ids: Any) -> None:
        with torch.no_grad():
            logits, targets = strategy.forward(model, x, y, ids)
        log, i = type(self).log, self.current.index
        log["hits"][i] = log["hits"].get(i, 0) + int((logits.argmax(1) == targets).sum())
        log["rows"][i] = log["rows"].get(i, 0) + len(x)

    def after_step(self, strategy: Any, run: Any, model: Any) -> None:
        log = type(self).log
        log["steps"] += 1
        if log["steps"] % 4:
            return
        stream = strategy.stream
        accuracies = []
        was = model.training
        model.eval()
        with torch.no_grad():
            for e in stream.experiences[: self.current.index + 1]:
                x = run.dataset.x[e.test]
                logits, targets = stream.read_outputs(model(x), run.dataset.y[e.test], e.index)
                accuracies.append(float((logits.argmax(1) == targets).float().mean()))
        model.train(was)
        log["anytime"].setdefault(self.current.index, []).append(sum(accuracies) / len(accuracies))


def _observed(method: dict[str, Any], **protocol: Any) -> paralab.Result:
    import paralab_continual

    class Plugin:
        PARALAB_API = "1.0"

        @hookimpl
        def paralab_methods(self) -> list[MethodSpec]:
            return [MethodSpec("observer", _Observer, "Observes.", family="continual_plugin")]

    registry = isolated_registry(("paralab_continual", paralab_continual), ("obs", Plugin()))
    with use_registry(registry):
        result = paralab.run(small_continual_spec(
            {**method, "plugins": [*method.get("plugins", []), {"name": "observer"}]},
            **{**ONLINE, **protocol}), registry=registry)
    assert result.status == "completed", result.error
    return result


@pytest.mark.parametrize("method", [{"name": "naive"}, {"name": "replay", "buffer_size": 60}])
def test_online_accuracy_is_the_prediction_before_each_step(method):
    result = _observed(method)
    log = _Observer.log
    for phase in result.phases[1:]:
        i = phase["index"]
        # Only the incoming rows count (replay's memory rows are appended after before_step).
        assert phase["metrics"]["online/accuracy"] == pytest.approx(
            log["hits"][i] / log["rows"][i], abs=1e-12)
    total = sum(log["hits"].values()) / sum(log["rows"].values())
    assert result.metrics["average_online_accuracy"] == pytest.approx(total, abs=1e-12)


def test_anytime_accuracy_every_n_steps_equals_an_independent_evaluation():
    result = _observed({"name": "naive"})
    log, every = _Observer.log, []
    steps_so_far = 0
    for phase in result.phases[1:]:
        i = phase["index"]
        metrics = phase["metrics"]
        steps = math.ceil(phase["info"]["train_size"] / 10)
        expected_steps = [s for s in range(steps_so_far + 1, steps_so_far + steps + 1) if s % 4 == 0]
        steps_so_far += steps
        assert metrics["online/anytime_steps"] == [*expected_steps, steps_so_far]
        points = metrics["online/anytime_accuracy"]
        assert points[:-1] == pytest.approx(log["anytime"].get(i, []), abs=1e-6)
        row = metrics["accuracy_matrix_row"]
        assert points[-1] == pytest.approx(sum(row[: i + 1]) / (i + 1), abs=1e-12)
        every += points
    assert result.metrics["average_anytime_accuracy"] == pytest.approx(
        sum(every) / len(every), abs=1e-12)


def test_online_runs_are_one_pass_and_not_stacked():
    results = paralab.run_seeds(small_continual_spec("naive", **ONLINE), [0, 1])
    assert [r.status for r in results] == ["completed", "completed"]
    assert "online" in results[0].provenance["seed_axis"]["why_not"]


def test_blurry_boundaries_move_a_fraction_of_rows_and_keep_everything_else():
    from paralab_continual.online import blur_stream

    seen: dict[str, Any] = {}

    class Reader:
        name = "reader"

        def check(self, strategy: Any, stream: Any, dataset: Any) -> None:
            seen["stream"], seen["y"] = stream, dataset.y

    import paralab_continual

    class Plugin:
        PARALAB_API = "1.0"

        @hookimpl
        def paralab_methods(self) -> list[MethodSpec]:
            return [MethodSpec("reader", Reader, "Reads.", family="continual_plugin")]

    registry = isolated_registry(("paralab_continual", paralab_continual), ("r", Plugin()))
    with use_registry(registry):
        paralab.run(small_continual_spec({"name": "naive", "plugins": [{"name": "reader"}]},
                                         epochs=1), registry=registry)
    sharp, y = seen["stream"], seen["y"]
    blurry = blur_stream(sharp, 0.2, seed=0)
    assert blur_stream(sharp, 0.0, seed=0) is sharp
    all_sharp = torch.cat([e.train for e in sharp]).sort().values
    assert torch.equal(torch.cat([e.train for e in blurry]).sort().values, all_sharp)
    for before, after in zip(sharp, blurry):
        assert torch.equal(before.test, after.test) and before.classes == after.classes
        own = torch.isin(y[after.train], torch.tensor(before.classes, device=y.device))
        kept = int(own.sum())
        assert kept == len(before.train) - int(0.2 * len(before.train))  # 80% stay
        assert int((~own).sum()) > 0  # and others' rows arrive
    other = blur_stream(sharp, 0.2, seed=1)
    assert not torch.equal(other[0].train.sort().values, blurry[0].train.sort().values)


def test_a_blurry_run_trains_on_the_blurred_experiences():
    sharp = paralab.run(small_continual_spec("naive", epochs=1))
    blurry = paralab.run(small_continual_spec("naive", epochs=1, blurry=0.3))
    assert blurry.metrics["accuracy_matrix"] != sharp.metrics["accuracy_matrix"]
    # Old classes keep some accuracy: their rows keep arriving in later experiences.
    assert blurry.metrics["accuracy_matrix"][-1][0] > sharp.metrics["accuracy_matrix"][-1][0]


@pytest.mark.parametrize(("method", "protocol", "message"), [
    ("naive", {"online": True, "epochs": 2}, r"protocol.epochs = 2: online = true is one pass"),
    ("naive", {"eval_every": 5}, r"protocol.eval_every = 5: evaluations inside an experience"),
    ("naive", {"blurry": 0.1, "scenario": "task_incremental"},
     r"protocol.blurry = 0.1: blurry boundaries .* 'task_incremental'"),
    ({"name": "avalanche", "strategy": "Naive"}, {"online": True},
     r"protocol.online = true: method 'avalanche' trains through its own loop"),
    ("naive", {"blurry": 1.0}, r"protocol.blurry = 1.0"),
])
def test_online_and_blurry_misuse_is_a_spec_error_before_any_folder(method, protocol, message,
                                                                    tmp_path):
    spec = small_continual_spec(method, **protocol)
    spec["output"] = str(tmp_path)
    with pytest.raises(paralab.SpecError, match=message):
        paralab.run(spec)
    assert list(tmp_path.iterdir()) == []
