"""The ``kernel`` protocol: fit a kernel method once on the train split, evaluate each split.

Kernel machines do not train by gradient steps, so the supervised protocol does not fit them;
this protocol gives them one phase (``fit``) and hands their logits to the host's evaluation
engine with ``run.evaluate(split, predictions=...)``, so metrics and auditors (a fairness
audit of a quantum-kernel SVM) work unchanged. It declares uses_model=False: the spec names no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from paralab.evaluation import Predictions

if TYPE_CHECKING:
    from paralab.context import RunContext


class KernelProtocol:
    def __init__(self, train_split: str = "train", eval_splits: Sequence[str] = ("test",)) -> None:
        self.train_split = train_split
        self.eval_splits = tuple(eval_splits)

    def execute(self, run: RunContext) -> None:
        method = run.method
        if not (hasattr(method, "fit") and hasattr(method, "logits")):
            raise TypeError(
                f"kernel protocol: method {run.spec.method.name!r} has no fit(x, y) and logits(x)"
            )
        train = run.dataset.split(self.train_split)
        views = {split: run.dataset.split(split) for split in self.eval_splits}
        with run.phase("fit", 0, train_size=len(train)):
            method.fit(train.x, train.y, n_classes=run.info.n_classes)
            for split, view in views.items():
                logits = method.logits(view.x)
                predictions = Predictions(logits=logits, targets=view.y, indices=view.indices,
                                          dataset=run.dataset, split=split)
                run.evaluate(split, predictions=predictions)
