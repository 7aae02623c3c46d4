"""The ``continual`` protocol: a stream of experiences, each a phase, and the accuracy matrix.

For each experience ``i`` the protocol opens ``run.phase("experience", i, classes=..., ...)``
(so every plugin's ``paralab_before_phase``/``paralab_after_phase`` sees each experience: a
fairness auditor, a logger), lets the method train on it, then evaluates every experience's
test view through the shared evaluation engine (``run.evaluate(..., name=f"exp{j}")``, the
experience's transform applied on the device, outputs masked/relabelled as the scenario
says) and fills ``R[i][j]``. With ``forward_transfer`` on, an ``initial`` phase first
evaluates the untrained model on every experience (the baseline of FWT).

At the end it records ``accuracy_matrix``, ``average_accuracy`` (the run's main metric),
``forgetting``, ``max_forgetting``, ``backward_transfer`` and ``forward_transfer``, and writes a
heat-map of R (``accuracy_matrix.png``) into the run's folder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from paralab.evaluation import Predictions, accuracy, predict
from paralab_continual import metrics
from paralab_continual.scenarios import Experience, Stream, build_stream

if TYPE_CHECKING:
    from paralab.context import RunContext


class Continual:
    """Train a method on a stream of experiences and measure forgetting.

    :param scenario: ``class_incremental``, ``task_incremental`` or ``domain_incremental``.
    :param experiences: how many experiences the stream has.
    :param epochs: epochs over each experience.
    :param batch_size: minibatch size.
    :param domain: for a domain-incremental stream: ``permuted``, ``rotated`` or ``split``.
    :param shuffle_classes: shuffle the class order with ``class_order_seed`` (else 0..C-1).
    :param class_order: an explicit class order (overrides the shuffle).
    :param max_rotation: the last experience of a rotated stream is rotated by almost this.
    :param train_split: the split the experiences train on.
    :param eval_split: the split each experience's test view comes from.
    :param forward_transfer: evaluate the untrained model first (for FWT).
    :param plot: write the heat-map of R when the run has an output folder.
    """

    def __init__(
        self,
        scenario: str = "class_incremental",
        experiences: int = 5,
        epochs: int = 1,
        batch_size: int = 32,
        domain: str = "permuted",
        shuffle_classes: bool = True,
        class_order_seed: int = 0,
        class_order: Sequence[int] = (),
        max_rotation: float = 180.0,
        train_split: str = "train",
        eval_split: str = "test",
        forward_transfer: bool = True,
        plot: bool = True,
    ) -> None:
        if epochs < 1 or batch_size < 1:
            raise ValueError(
                f"continual: epochs and batch_size must be >= 1, got {epochs} and {batch_size}"
            )
        self.options: dict[str, Any] = {
            "scenario": scenario,
            "experiences": experiences,
            "domain": domain,
            "shuffle_classes": shuffle_classes,
            "class_order_seed": class_order_seed,
            "class_order": tuple(class_order),
            "max_rotation": max_rotation,
            "train_split": train_split,
            "eval_split": eval_split,
        }
        self.epochs = epochs
        self.batch_size = batch_size
        self.eval_split = eval_split
        self.forward_transfer = forward_transfer
        self.plot = plot
        self.stream: Stream | None = None

    # ------------------------------------------------------------------------- building

    def build(self, run: RunContext) -> Stream:
        """The stream over the run's dataset, checked against the run's method."""
        stream = build_stream(run.dataset, seed=run.seed, **self.options)
        check = getattr(run.method, "check", None)
        if check is None or not hasattr(run.method, "train_experience"):
            raise TypeError(
                f"continual: method {run.spec.method.name!r} does not implement the continual "
                "method interface (check, bind, before_experience, train_experience, "
                "after_experience)"
            )
        check(stream, run.dataset)
        return stream

    # -------------------------------------------------------------------------- running

    def execute(self, run: RunContext) -> None:
        stream = self.build(run)  # every bad option fails here, before any training
        self.stream = stream
        run.state["paralab_continual"] = {"stream": stream}
        method = run.method
        method.bind(stream)
        method.setup(run, run.model)
        size = len(stream)
        initial: list[float] | None = None
        if self.forward_transfer:
            with run.phase("initial", 0, scenario=stream.scenario):
                initial = self.evaluate_stream(run, stream)
        matrix = [[math.nan] * size for _ in range(size)]
        for experience in run.progress(stream.experiences, desc="experiences", total=size):
            i = experience.index
            with run.phase(
                "experience", i, scenario=stream.scenario, **experience.describe()
            ) as phase:
                method.before_experience(run, experience)
                loss = method.train_experience(run, experience, self.epochs, self.batch_size)
                method.after_experience(run, experience)
                phase.metrics["train/loss"] = loss
                matrix[i] = self.evaluate_stream(run, stream)
                run.record("average_accuracy", metrics.average_accuracy(matrix, after=i))
                run.record("accuracy_matrix_row", matrix[i])
        summary = metrics.summarize(matrix, initial)
        for key, value in summary.items():
            run.record(key, value)
        run.record("accuracy_matrix", matrix)
        if initial is not None:
            run.record("initial_accuracy", initial)
        run.state["paralab_continual"].update(matrix=matrix, initial=initial, summary=summary)
        if self.plot and run.writer.enabled:
            from paralab_continual.plots import plot_accuracy_matrix

            name = "accuracy_matrix.png"
            plot_accuracy_matrix(matrix, run.output_dir / name, title=run.spec.name)
            run.result.artifacts["accuracy_matrix"] = name

    def evaluate_stream(self, run: RunContext, stream: Stream) -> list[float]:
        """Evaluate every experience's test view; returns the accuracies (a row of R).

        Without per-experience transforms all test views go through the model in one batched
        pass, and each experience's predictions are a slice of it."""
        if any(e.transform is not None for e in stream):
            return [self.evaluate(run, stream, e) for e in stream]
        rows = torch.cat([e.test for e in stream])
        raw = predict(run.model, run.dataset, rows, batch_size=run.spec.eval_batch_size)
        accuracies, start = [], 0
        for experience in stream:
            stop = start + len(experience.test)
            piece = Predictions(
                logits=raw.logits[start:stop],
                targets=raw.targets[start:stop],
                indices=raw.indices[start:stop],
                dataset=run.dataset,
            )
            accuracies.append(self.evaluate(run, stream, experience, piece))
            start = stop
        return accuracies

    def evaluate(
        self,
        run: RunContext,
        stream: Stream,
        experience: Experience,
        raw: Predictions | None = None,
    ) -> float:
        """Evaluate one experience's test view (``raw``: its model outputs, when already
        computed); returns its accuracy (``R[i][j]``)."""
        name = f"exp{experience.index}"
        if raw is None:
            raw = predict(
                run.model,
                run.dataset,
                experience.test,
                batch_size=run.spec.eval_batch_size,
                transform=experience.transform,
                split=name,
            )
        logits, targets = raw.logits, raw.targets
        if stream.masked or stream.remapped:
            logits, targets = stream.read_outputs(logits, targets, experience.index)
        predictions = Predictions(
            logits=logits,
            targets=targets,
            indices=raw.indices,
            dataset=run.dataset,
            split=name,
            extras={"experience": experience.index},
        )
        evaluation = run.evaluate(self.eval_split, name=name, predictions=predictions)
        return accuracy(evaluation.predictions)
