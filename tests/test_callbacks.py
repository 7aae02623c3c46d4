"""Per-run callbacks: hook objects for one run, without entry points (as Lightning's)."""

from __future__ import annotations

import pytest

import paralab
from paralab import host
from paralab.spec import SpecError
from paralab_registry import LoadSettings, PluginLoadError

SPEC = {"dataset": "iris", "model": "mlp", "output": None,
        "protocol": {"name": "supervised", "epochs": 3}}


class Recorder:
    PARALAB_API = "1.0"

    def __init__(self) -> None:
        self.phases: list[tuple[str, int, float]] = []
        self.ended = ""

    @paralab.hookimpl
    def paralab_after_phase(self, run, phase) -> None:  # noqa: ANN001
        self.phases.append((phase.kind, phase.index, phase.metrics["train/loss"]))

    @paralab.hookimpl
    def paralab_after_experiment(self, run, result) -> None:  # noqa: ANN001
        self.ended = result.status


def test_a_callback_sees_its_run_and_no_other() -> None:
    recorder = Recorder()
    result = paralab.run(SPEC, callbacks=[recorder])
    assert [(k, i) for k, i, _ in recorder.phases] == [("epoch", 0), ("epoch", 1), ("epoch", 2)]
    assert [loss for *_, loss in recorder.phases] == [p["metrics"]["train/loss"]
                                                      for p in result.phases]
    assert recorder.ended == "completed"
    paralab.run(SPEC)  # a later run without it: the callback is not registered process-wide
    assert len(recorder.phases) == 3


class Forgot:
    PARALAB_API = "1.0"

    def paralab_after_phase(self, run, phase) -> None:  # noqa: ANN001 - no @hookimpl
        raise AssertionError("never called")


class Typo:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_after_phse(self, run, phase) -> None:  # noqa: ANN001
        pass


class NoApi:
    @paralab.hookimpl
    def paralab_after_phase(self, run, phase) -> None:  # noqa: ANN001
        pass


class Contributes:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_metrics(self) -> list:
        return []


@pytest.mark.parametrize(("callback", "message"), [
    (Forgot(), r"callbacks\[0\] \(Forgot\): paralab_after_phase is not marked @paralab.hookimpl"),
    (Typo(), r"paralab_after_phse.*did you mean 'paralab_after_phase'"),
    (NoApi(), r"declares no PARALAB_API"),
    (Contributes(), r"paralab_metrics contribute components"),
])
def test_a_callback_that_would_be_ignored_is_an_error_before_the_run(
        callback: object, message: str, tmp_path) -> None:
    with pytest.raises(SpecError, match=message):
        paralab.run({**SPEC, "output": str(tmp_path)}, callbacks=[callback])
    assert list(tmp_path.iterdir()) == []


class Raises:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_after_phase(self, run, phase) -> None:  # noqa: ANN001
        if phase.index == 1:
            raise RuntimeError("the callback broke")


def test_a_failing_callback_fails_the_run_naming_it_and_keeps_finished_phases() -> None:
    with pytest.raises(paralab.RunError, match=r"callbacks\[0\]:Raises.*the callback broke") as raised:
        paralab.run(SPEC, callbacks=[Raises()])
    assert raised.value.result.status == "failed"
    assert len(raised.value.result.phases) >= 1


def test_registry_add_refuses_what_it_would_ignore() -> None:
    registry = host.make_registry(LoadSettings()).load()
    with pytest.raises(PluginLoadError, match="not marked @paralab.hookimpl"):
        registry.add("forgot", Forgot())
    with pytest.raises(PluginLoadError, match="declares no PARALAB_API"):
        registry.add("no_api", NoApi())
    assert "no_api" not in registry.records and "forgot" not in registry.records
    assert registry.add("recorder", Recorder()).status == "active"


class NumericApi:
    PARALAB_API = 1.0

    @paralab.hookimpl
    def paralab_after_phase(self, run, phase) -> None:  # noqa: ANN001
        pass


def test_a_numeric_paralab_api_is_refused_naming_the_object() -> None:
    registry = host.make_registry(LoadSettings()).load()
    with pytest.raises(PluginLoadError, match=r"numeric.*PARALAB_API = 1.0 is a float; it must "
                                              r"be a string such as \"1.0\""):
        registry.add("numeric", NumericApi())
    with pytest.raises(SpecError, match=r"callbacks\[0\] \(NumericApi\): PARALAB_API = 1.0 is "
                                        r"a float"):
        paralab.run(SPEC, callbacks=[NumericApi()])


class Transforms:
    PARALAB_API = "1.0"

    @paralab.hookimpl(wrapper=True)
    def paralab_process_update(self, run, update):  # noqa: ANN001, ANN201
        return (yield)


def test_a_callback_with_a_middleware_hook_is_refused() -> None:
    """Under supervised nothing calls paralab_process_update: it would silently do nothing."""
    with pytest.raises(SpecError, match=r"paralab_process_update transforms .* declare it as "
                                        r"middleware"):
        paralab.run(SPEC, callbacks=[Transforms()])
