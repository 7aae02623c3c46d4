"""Helpers for the fairness tests: an isolated registry with the plugin, a second protocol
(a two-experience stream, standing in for any non-supervised protocol), a probe that keeps
every evaluation's predictions so tests can recompute the audit independently, and the check
that a component's declared options equal its factory's signature."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paralab_fairness
from paralab import OptimizerMethod, Protocol, ProtocolSpec, hookimpl
from paralab.testing.conformance import factory_parameters
from paralab.testing.kit import TinyDataPlugin, isolated_registry, use_registry


class Stream(Protocol):
    """Train on the rows of one ``age_band`` after another; evaluate test after each.

    Its spec declares ``applies_losses``: it steps through an :class:`paralab.OptimizerMethod`,
    whose loss adds the spec's loss terms."""

    def __init__(self, epochs: int = 1, batch_size: int = 64) -> None:
        self.epochs = epochs
        self.batch_size = batch_size

    def execute(self, run: Any) -> None:
        method = run.method
        assert isinstance(method, OptimizerMethod)
        method.setup(run, run.model)
        train = run.dataset.split("train")
        for experience, band in enumerate(train.feature("age_band").unique().tolist()):
            rows = train.subset((train.feature("age_band") == band).nonzero().flatten())
            with run.phase("experience", experience, band=band):
                for _ in range(self.epochs):
                    for x, y, index in rows.batches(self.batch_size, shuffle=True,
                                                    generator=run.generator):
                        method.step(run, run.model, x, y, index)
                run.evaluate("test")


class StreamPlugin:
    PARALAB_API = "1.0"

    @hookimpl
    def paralab_protocols(self) -> list[ProtocolSpec]:
        return [ProtocolSpec("fairness_stream", Stream, "A test stream over age bands.",
                             {"epochs": 1, "batch_size": 64},
                             method_interface="GradientMethod", applies_losses=True)]

    @hookimpl
    def paralab_methods(self) -> list[Any]:
        from paralab import MethodSpec

        return [MethodSpec("stream_sgd", "paralab.methods:SGD", "SGD for the test stream.",
                           {"lr": 0.05}, protocols=("fairness_stream",))]


class PredictionProbe:
    """Keeps every evaluation's predictions and audits."""

    PARALAB_API = "1.0"

    def __init__(self) -> None:
        self.evaluations: list[Any] = []

    @hookimpl
    def paralab_after_evaluation(self, run: Any, phase: Any, evaluation: Any) -> None:
        self.evaluations.append(evaluation)


@contextmanager
def fairness_registry(*extra: tuple[str, object]) -> Iterator[tuple[Any, PredictionProbe]]:
    """An isolated registry with the fairness plugin, the test stream, the probe and any
    ``(name, plugin)`` pairs in ``extra`` (a test's own dataset or metric plugin)."""
    probe = PredictionProbe()
    registry = isolated_registry(
        ("paralab_fairness", paralab_fairness),
        ("paralab_tiny", TinyDataPlugin()),
        ("fairness_stream", StreamPlugin()),
        ("prediction_probe", probe),
        *extra,
    )
    with use_registry(registry):
        yield registry, probe


def signature_mismatches(component: Any) -> list[str]:
    """Where a component's declared options and its factory's parameters disagree (names or
    defaults). The factory's parameters are the kit's reading of it
    (:func:`paralab.testing.conformance.factory_parameters`: ``info``, ``root`` and ``*args``
    are not options, and ``**options`` passed on to a base class count as the base's)."""
    parameters, _ = factory_parameters(component.load())
    declared = component.defaults()
    problems = [f"{name}: declared, not a parameter" for name in declared.keys() - parameters]
    problems += [f"{name}: a parameter, not declared" for name in parameters.keys() - declared]
    problems += [
        f"{name}: declared default {declared[name]!r} != factory default {parameters[name]!r}"
        for name in declared.keys() & parameters.keys()
        if type(declared[name]) is not type(parameters[name]) or declared[name] != parameters[name]
    ]
    return sorted(problems)


def components_of(registry: Any, plugin: str) -> list[Any]:
    """Every component spec the named plugin contributes."""
    return [spec for kind in registry.components.values() for spec in kind.values()
            if spec.provider == plugin]
