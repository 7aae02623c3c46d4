"""Helpers for the fairness tests: an isolated registry with the plugin, a second protocol
(a two-experience stream, standing in for any non-supervised protocol) and a probe that keeps
every evaluation's predictions so tests can recompute the audit independently."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paralab_fairness
from paralab import ProtocolSpec, hookimpl
from paralab.methods import GradientMethod
from paralab.testing.kit import TinyDataPlugin, isolated_registry, use_registry


class Stream:
    """Train on the rows of one ``age_band`` after another; evaluate test after each."""

    def __init__(self, epochs: int = 1, batch_size: int = 64) -> None:
        self.epochs = epochs
        self.batch_size = batch_size

    def execute(self, run: Any) -> None:
        method = run.method
        assert isinstance(method, GradientMethod)
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
                             {"epochs": 1, "batch_size": 64})]

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
def fairness_registry() -> Iterator[tuple[Any, PredictionProbe]]:
    probe = PredictionProbe()
    registry = isolated_registry(
        ("paralab_fairness", paralab_fairness),
        ("paralab_tiny", TinyDataPlugin()),
        ("fairness_stream", StreamPlugin()),
        ("prediction_probe", probe),
    )
    with use_registry(registry):
        yield registry, probe
