"""The ``kernel`` protocol: fit a kernel method once on the train split, evaluate each split.

Kernel machines do not train by gradient steps, so the supervised protocol does not fit them;
this protocol gives them one phase (``fit``) and hands their logits to the host's evaluation
engine with ``run.evaluate(split, predictions=...)``, so metrics and auditors (a fairness
audit of a quantum-kernel SVM) work unchanged.

Its spec declares what it consumes: no torch model (``uses_model=False``: the spec names
none), a :class:`paralab.KernelMethod` (checked by the host when the method is built), and no
loss terms or middleware (a kernel machine is fitted in one solve, so a spec naming either is
rejected before anything is built).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from paralab import Predictions, Protocol

if TYPE_CHECKING:
    from paralab import KernelMethod, RunContext


class KernelProtocol(Protocol):
    """One ``fit`` phase: fit on ``train_split``, evaluate each of ``eval_splits``."""

    def __init__(self, train_split: str = "train", eval_splits: Sequence[str] = ("test",)) -> None:
        self.train_split = train_split
        self.eval_splits = tuple(eval_splits)

    def validate(self, run: RunContext) -> None:
        """Every split named must exist in the dataset."""
        run.dataset.check_splits(self.train_split, self.eval_splits)

    def execute(self, run: RunContext) -> None:
        method: KernelMethod = run.method
        train = run.dataset.split(self.train_split)
        views = {split: run.dataset.split(split) for split in self.eval_splits}
        with run.phase("fit", 0, train_size=len(train)):
            method.fit(train.x, train.y, n_classes=run.info.n_classes)
            for split, view in views.items():
                logits = method.logits(view.x)
                predictions = Predictions(logits=logits, targets=view.y, indices=view.indices,
                                          dataset=run.dataset, split=split)
                run.evaluate(split, predictions=predictions)
