"""The supervised protocol: epochs over the train split, evaluation every ``eval_every``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from paralab.interfaces import GradientMethod, Protocol

if TYPE_CHECKING:
    from paralab.context import RunContext


class Supervised(Protocol):
    """Train with the run's :class:`~paralab.interfaces.GradientMethod`; each epoch is a phase
    named ``epoch``. Options are declared (and checked) in ``paralab.builtin``."""

    def __init__(
        self,
        epochs: int = 10,
        batch_size: int = 32,
        eval_every: int = 1,
        train_split: str = "train",
        eval_splits: Sequence[str] = ("test",),
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.eval_every = eval_every
        self.train_split = train_split
        self.eval_splits = tuple(eval_splits)

    def validate(self, run: RunContext) -> None:
        """Every split named must exist in the dataset."""
        named = [("train_split", self.train_split)]
        named += [(f"eval_splits[{i}]", split) for i, split in enumerate(self.eval_splits)]
        for option, split in named:
            if split not in run.dataset.splits:
                raise ValueError(
                    f"{option} = {split!r} is not a split of dataset {run.dataset.name!r}; its "
                    f"splits: {', '.join(sorted(run.dataset.splits)) or 'none'}"
                )

    def execute(self, run: RunContext) -> None:
        method: GradientMethod = run.method
        train = run.dataset.split(self.train_split)
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
