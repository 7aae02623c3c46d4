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

The stream is built in :meth:`Continual.validate` (the host calls it once the data and the
model exist, before any run folder), where the method's ``check`` also sees it: more
experiences than classes, a bad ``class_order`` or a replay memory larger than the data
reject the spec with a :class:`paralab.SpecError` naming the option. ``execute`` trains on
that same stream.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from paralab import Predictions, Protocol, accuracy, predict
from paralab_continual import metrics
from paralab_continual.memory import PeakMemory, strategy_figures
from paralab_continual.online import OnlineMonitor, blur_stream
from paralab_continual.scenarios import Experience, Stream, build_stream

if TYPE_CHECKING:
    from paralab import ContinualStrategy, RunContext

STATE = "paralab_continual"
"""The key of this plugin's entry in ``run.state``: the stream, then R and its summary."""


class Continual(Protocol):
    """Train a method on a stream of experiences and measure forgetting.

    The run's method implements :class:`paralab.ContinualStrategy` (checked by the host at
    build). Options are declared (and checked) in ``paralab_continual/__init__.py``.

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
    :param online: one pass, a minibatch at a time, with online and anytime accuracy
        (:mod:`paralab_continual.online`); ``epochs`` must be 1.
    :param eval_every: online: training steps between anytime evaluations (0: only at each
        experience's end).
    :param blurry: the fraction of each experience's training rows moved to the others
        (blurry boundaries; class-incremental streams).
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
        online: bool = False,
        eval_every: int = 0,
        blurry: float = 0.0,
    ) -> None:
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
        self.online = online
        self.eval_every = eval_every
        self.blurry = blurry
        self.stream: Stream | None = None
        self._restored: dict[str, Any] | None = None
        self._live: dict[str, Any] = {"initial": None, "rows": []}
        """R's rows so far and the initial row: what a checkpoint needs besides the model."""

    # ------------------------------------------------------------------------- checking

    def validate(self, run: RunContext) -> None:
        """Build the stream over the run's dataset and let the method check it; a
        ``ValueError`` (a :class:`~paralab_continual.scenarios.ScenarioError`) rejects the
        spec before any run folder exists. The stream is kept for :meth:`execute`."""
        run.dataset.check_splits(self.options["train_split"])
        run.dataset.check_splits(self.options["eval_split"], train_option="eval_split")
        stream = build_stream(run.dataset, seed=run.seed, **self.options)
        self.check_online(run, stream)
        stream = blur_stream(stream, self.blurry, run.seed)
        if isinstance(getattr(run.method, "batch_size", None), int):
            run.method.batch_size = self.batch_size  # what plugins sized by the batch check
        run.method.check(stream, run.dataset)
        if run.spec.checkpoint_every and not all(
            callable(getattr(run.method, name, None)) for name in ("state_dict", "load_state_dict")
        ):
            raise ValueError(
                f"checkpoint_every = {run.spec.checkpoint_every}: method "
                f"{run.spec.method.name!r} keeps its state where a checkpoint cannot reach it "
                f"(no state_dict()/load_state_dict()), so the run could not resume exactly; "
                f"set checkpoint_every = 0 or use a native strategy"
            )
        self.stream = stream
        run.state[STATE] = {"stream": stream}

    def check_online(self, run: RunContext, stream: Stream) -> None:
        """What the declarations cannot say alone: online is one pass of a native strategy's
        steps; blurry boundaries need a class-incremental stream."""
        if self.online and self.epochs != 1:
            raise ValueError(f"protocol.epochs = {self.epochs}: online = true is one pass over "
                             f"the stream; set epochs = 1")
        if self.online and not hasattr(run.method, "step_hook"):
            raise ValueError(
                f"protocol.online = true: method {run.spec.method.name!r} trains through its "
                f"own loop, whose steps paralab cannot observe; use a native strategy")
        if self.online and run.spec.checkpoint_every:
            raise ValueError(f"checkpoint_every = {run.spec.checkpoint_every}: an online run's "
                             f"running metrics are not checkpointed; set checkpoint_every = 0")
        if self.eval_every and not self.online:
            raise ValueError(f"protocol.eval_every = {self.eval_every}: evaluations inside an "
                             f"experience are for online = true; set online = true or "
                             f"eval_every = 0")
        if self.blurry and stream.scenario != "class_incremental":
            raise ValueError(
                f"protocol.blurry = {self.blurry}: blurry boundaries move rows between "
                f"experiences, which only a class-incremental stream allows (no task mask or "
                f"transform depends on the experience); scenario is {stream.scenario!r}")

    # ----------------------------------------------------------------------- checkpoints

    def checkpoint_state(self, run: RunContext) -> dict[str, Any]:
        """After the phases closed so far: the model, the strategy's state (optimizer, penalty
        terms, teacher, memories: its ``state_dict``), R's rows and the initial row. The
        stream is rebuilt from the seed; training draws only from ``run.generator``, which the
        host saves."""
        return {
            "experiences_done": len(self._live["rows"]),
            "initial": self._live["initial"],
            "rows": [list(row) for row in self._live["rows"]],
            "model": run.model.state_dict(),
            "method": run.method.state_dict(),
        }

    def restore_state(self, run: RunContext, state: dict[str, Any]) -> None:
        self._restored = state

    def stream_of(self, run: RunContext) -> Stream:
        """The stream :meth:`validate` built for ``run`` (built now if it was not called)."""
        state = run.state.get(STATE, {})
        if "stream" not in state:
            self.validate(run)
        return run.state[STATE]["stream"]

    # -------------------------------------------------------------------------- running

    def execute(self, run: RunContext) -> None:
        stream = self.stream_of(run)
        method: ContinualStrategy = run.method
        method.bind(stream)
        method.setup(run, run.model)
        size = len(stream)
        initial: list[float] | None = None
        matrix = [[math.nan] * size for _ in range(size)]
        restored, self._restored = self._restored, None
        self._live = {"initial": None, "rows": []}
        start = 0
        if restored is not None:  # paralab resume: continue after the saved experiences
            run.model.load_state_dict(restored["model"])
            method.load_state_dict(restored["method"])
            initial = restored["initial"]
            start = int(restored["experiences_done"])
            matrix[:start] = [list(row) for row in restored["rows"]]
            self._live = {"initial": initial, "rows": matrix[:start]}
        if self.forward_transfer and restored is None:
            with run.phase("initial", 0, scenario=stream.scenario):
                initial = self.evaluate_stream(run, stream)
                self._live["initial"] = initial
        monitor = None
        if self.online:
            monitor = OnlineMonitor(run, stream, self.eval_every, evaluation_model)
            method.step_hook = monitor
        experiences = stream.experiences[start:]
        for experience in run.progress(experiences, desc="experiences", total=size, done=start):
            i = experience.index
            with run.phase(
                "experience", i, scenario=stream.scenario, **experience.describe()
            ) as phase:
                peak = PeakMemory(run.device)
                peak.start()
                if monitor is not None:
                    monitor.start(experience)
                method.before_experience(run, experience)
                loss = method.train_experience(run, experience, self.epochs, self.batch_size)
                method.after_experience(run, experience)
                if loss is not None:  # None: the strategy trained no rows (joint, later)
                    phase.metrics["train/loss"] = loss
                phase.metrics.update(strategy_figures(method, run.dataset))
                peak.record(run, i)
                matrix[i] = self.evaluate_stream(run, stream)
                if monitor is not None:
                    monitor.close(phase, sum(matrix[i][: i + 1]) / (i + 1))
                self._live["rows"] = matrix[: i + 1]
                run.record("average_accuracy", metrics.average_accuracy(matrix, after=i))
                run.record("accuracy_matrix_row", matrix[i])
        if monitor is not None:
            for key, value in monitor.summary().items():
                run.record(key, value)
        self.finish(run, matrix, initial)

    def finish(self, run: RunContext, matrix: list[list[float]],
               initial: list[float] | None) -> None:
        """The end of :meth:`execute` (also of each stacked seed's): the summaries, the
        accuracy matrix, its plot."""
        summary = metrics.summarize(matrix, initial)
        for key, value in summary.items():
            run.record(key, value)
        run.record("accuracy_matrix", matrix)
        if initial is not None:
            run.record("initial_accuracy", initial)
        run.state[STATE].update(matrix=matrix, initial=initial, summary=summary)
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
        raw = predict(evaluation_model(run), run.dataset, rows,
                      batch_size=run.spec.eval_batch_size)
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
                evaluation_model(run),
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


def evaluation_model(run: RunContext) -> torch.nn.Module:
    """The model whose outputs are evaluated: the method's ``evaluation_model(run)`` when it
    has one (iCaRL classifies by the nearest mean of exemplars, not by the model's head),
    else ``run.model``."""
    chooser = getattr(run.method, "evaluation_model", None)
    return chooser(run) if callable(chooser) else run.model
