"""What a run folder shows a person (issue 23.9): the curve, the settings, the warnings."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import paralab
from paralab.plots import NO_CURVE, chosen_curves, curve_figure, tick_label
from paralab.results import Result
from paralab.run_warnings import RepeatedWarning

SPEC = {"dataset": "iris", "model": "mlp", "protocol": {"name": "supervised", "epochs": 3}}


def _phase(kind: str, index: int, metrics: dict, **info: object) -> dict:
    return {"kind": kind, "index": index, "info": dict(info), "metrics": metrics, "audits": {},
            "seconds": 0.0}


def _lines(figure) -> dict[str, list[float]]:  # noqa: ANN001
    axes = figure.axes[0]
    return {line.get_label(): list(line.get_xdata()) for line in axes.get_lines()}


def _ticks(figure) -> list[str]:  # noqa: ANN001
    return [label.get_text() for label in figure.axes[0].get_xticklabels()]


def test_epochs_draw_the_main_metric_and_its_other_splits_on_integer_ticks() -> None:
    result = Result("r", main_metric="test/accuracy", phases=[
        _phase("epoch", i, {"train/accuracy": 0.5 + i / 10, "test/accuracy": 0.4 + i / 10,
                            "train/loss": 1.0 - i / 10}) for i in range(3)])
    figure = curve_figure(result)
    assert _lines(figure) == {"test/accuracy": [0, 1, 2], "train/accuracy": [0, 1, 2]}
    assert _ticks(figure) == ["epoch 0", "epoch 1", "epoch 2"]
    assert figure.axes[0].get_xlabel() == "epoch"


def test_continual_ticks_are_experiences_with_their_classes() -> None:
    phases = [_phase("initial", 0, {})] + [
        _phase("experience", i, {"average_accuracy": 0.9 - i / 10}, classes=[2 * i, 2 * i + 1])
        for i in range(3)]
    figure = curve_figure(Result("r", main_metric="average_accuracy", phases=phases))
    assert _lines(figure) == {"average_accuracy": [1, 2, 3]}  # no point for the initial phase
    assert _ticks(figure) == ["exp 0\n[0, 1]", "exp 1\n[2, 3]", "exp 2\n[4, 5]"]


def test_meta_test_once_draws_meta_validation_over_meta_batches_and_the_final_value() -> None:
    phases = [_phase("meta_batch", i, {"meta_train/loss": 1.0 / (i + 1),
                                       "meta_val/accuracy": 0.5 + i / 20}) for i in range(4)]
    phases.append(_phase("meta_test", 0, {"meta_test/accuracy": 0.71}))
    result = Result("r", main_metric="meta_test/accuracy", phases=phases,
                    metrics={"meta_test/accuracy": 0.71})
    assert chosen_curves(result) == (["meta_val/accuracy"], "other split")
    lines = _lines(curve_figure(result))
    assert lines["meta_val/accuracy"] == [0, 1, 2, 3]
    assert "meta_test/accuracy (final) = 0.7100" in lines
    assert _ticks(curve_figure(result)) == [f"meta-batch {i}" for i in range(4)]


def test_without_validation_the_training_loss_is_the_curve_and_the_title_says_so() -> None:
    phases = [_phase("meta_batch", i, {"meta_train/loss": 1.0 / (i + 1)}) for i in range(3)]
    phases.append(_phase("meta_test", 0, {"meta_test/accuracy": 0.7}))
    result = Result("r", main_metric="meta_test/accuracy", phases=phases)
    figure = curve_figure(result)
    assert chosen_curves(result) == (["meta_train/loss"], "loss")
    assert "meta_test/accuracy is measured once" in figure.axes[0].get_title()


def test_a_run_that_evaluates_once_says_there_is_no_curve() -> None:
    result = Result("kernel", main_metric="test/accuracy",
                    phases=[_phase("fit", 0, {"test/accuracy": 0.9, "train/accuracy": 1.0})],
                    metrics={"test/accuracy": 0.9, "train/accuracy": 1.0},
                    spec={"protocol": {"name": "kernel"}})
    figure = curve_figure(result)
    axes = figure.axes[0]
    assert axes.get_title().startswith(f"{NO_CURVE}: kernel evaluates once")
    assert not axes.get_lines()
    assert sorted(p.get_width() for p in axes.patches) == [0.9, 1.0]


def test_many_phases_get_at_most_sixteen_labelled_ticks() -> None:
    result = Result("r", main_metric="test/accuracy",
                    phases=[_phase("round", i, {"test/accuracy": i / 100}) for i in range(100)])
    ticks = _ticks(curve_figure(result))
    assert len(ticks) <= 16 and ticks[0] == "round 0"
    assert tick_label(_phase("experience", 1, {}, classes=list(range(6)))) == \
        "exp 1\n[0, 1, 2, 3, ...]"


def test_summary_lists_every_resolved_option_and_result_json_keeps_them(tmp_path: Path) -> None:
    result = paralab.run({**SPEC, "output": str(tmp_path)})
    settings = result.settings
    assert settings["protocol"]["epochs"] == 3  # the spec's value
    declared = paralab.get_registry().component("protocol", "supervised").defaults()
    assert settings["protocol"]["batch_size"] == declared["batch_size"]  # a default, resolved
    assert settings["method"]["name"] == result.spec["method"]["name"]
    summary = (Path(result.path) / "summary.md").read_text()
    assert "## Settings" in summary
    assert f"| protocol | batch_size | {declared['batch_size']} |" in summary
    saved = json.loads((Path(result.path) / "result.json").read_text())
    assert saved["settings"] == json.loads(json.dumps(settings))


class Noisy:
    """A callback that warns the same thing at every phase, and once something else."""

    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_after_phase(self, run, phase) -> None:  # noqa: ANN001
        warnings.warn("the same thing again", UserWarning, stacklevel=1)
        if phase.index == 1:
            warnings.warn("something else", FutureWarning, stacklevel=1)


def test_a_warning_repeated_at_every_phase_is_shown_once_and_counted(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as shown:
        warnings.resetwarnings()  # as in a plain `paralab run`: no filter decides these
        result = paralab.run({**SPEC, "output": str(tmp_path)}, callbacks=[Noisy()])
    messages = [(w.category, str(w.message)) for w in shown]
    assert messages.count((UserWarning, "the same thing again")) == 1
    assert messages.count((FutureWarning, "something else")) == 1
    summaries = [m for c, m in messages if c is RepeatedWarning]
    assert len(summaries) == 1 and summaries[0].startswith("2 repeats of 1 warning(s)")
    counts = {w["message"]: w["count"] for w in result.warnings}
    assert counts == {"the same thing again": 3, "something else": 1}
    saved = json.loads((Path(result.path) / "result.json").read_text())
    assert {w["message"]: w["count"] for w in saved["warnings"]} == counts
    assert "| UserWarning | 3 | the same thing again |" in \
        (Path(result.path) / "summary.md").read_text()


def test_an_error_filter_still_raises_inside_a_run() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with pytest.raises(paralab.RunError, match="the same thing again"):
            paralab.run({**SPEC, "output": None}, callbacks=[Noisy()])
