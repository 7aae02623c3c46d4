"""The supervised protocol: epochs over the train split, evaluation every ``eval_every``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from paralab.methods import GradientMethod

if TYPE_CHECKING:
    from paralab.context import RunContext


class Supervised:
    """Train with the run's gradient method; each epoch is a phase named ``epoch``."""

    def __init__(
        self,
        epochs: int = 10,
        batch_size: int = 32,
        eval_every: int = 1,
        train_split: str = "train",
        eval_splits: Sequence[str] = ("test",),
    ) -> None:
        if epochs < 1 or batch_size < 1 or eval_every < 1:
            raise ValueError(
                f"supervised: epochs, batch_size and eval_every must be >= 1, got "
                f"{epochs}, {batch_size}, {eval_every}"
            )
        self.epochs = epochs
        self.batch_size = batch_size
        self.eval_every = eval_every
        self.train_split = train_split
        self.eval_splits = tuple(eval_splits)

    def execute(self, run: RunContext) -> None:
        method = run.method
        if not isinstance(method, GradientMethod):
            raise TypeError(
                f"supervised: method {run.spec.method.name!r} is not a paralab GradientMethod"
            )
        train = run.dataset.split(self.train_split)
        for split in self.eval_splits:
            run.dataset.split(split)  # fail before training on a missing split
        model = run.model
        model.train()
        method.setup(run, model)
        for epoch in run.progress(range(self.epochs), desc="epochs", total=self.epochs):
            with run.phase("epoch", epoch) as phase:
                total, batches = 0.0, 0
                for x, y, index in train.batches(
                    self.batch_size, shuffle=True, generator=run.generator
                ):
                    total += method.step(run, model, x, y, index)
                    batches += 1
                phase.metrics["train/loss"] = total / max(batches, 1)
                if (epoch + 1) % self.eval_every == 0 or epoch + 1 == self.epochs:
                    for split in self.eval_splits:
                        run.evaluate(split)
