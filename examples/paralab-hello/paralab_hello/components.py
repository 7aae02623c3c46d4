"""The components of paralab_hello; importing this module imports torch."""

from __future__ import annotations

import torch
from torch import nn

from paralab import (
    Batch,
    DatasetInfo,
    GradientMethod,
    OptimizerMethod,
    Predictions,
    Protocol,
    RunContext,
    SharedDataset,
    accuracy,
)


def top2_accuracy():
    def metric(predictions: Predictions, dataset: SharedDataset) -> float:
        top2 = predictions.logits.topk(2, dim=-1).indices
        return float((top2 == predictions.targets[:, None]).any(dim=-1).float().mean())

    return metric


def bottleneck(info: DatasetInfo, width: int = 8) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(info.n_features, width),
        nn.ReLU(),
        nn.Linear(width, info.n_classes),
    )


class SmoothedSGD(OptimizerMethod):
    """SGD whose loss is label-smoothed cross-entropy plus the spec's loss terms.

    Overriding :meth:`loss` is enough: every protocol that drives a GradientMethod calls it."""

    def __init__(self, lr: float = 0.05, smoothing: float = 0.1, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.smoothing = smoothing

    def make_optimizer(self, parameters):
        return torch.optim.SGD(parameters, lr=self.lr, weight_decay=self.weight_decay)

    def loss(self, run: RunContext | None, batch: Batch) -> torch.Tensor:
        value = nn.functional.cross_entropy(batch.logits, batch.targets,
                                            label_smoothing=self.smoothing)
        return value + (run.extra_loss(batch) if run is not None else 0.0)


class EarlyStopping(Protocol):
    """Train epoch by epoch; stop once validation accuracy has not improved for `patience`."""

    def __init__(self, max_epochs: int = 50, patience: int = 3, batch_size: int = 32,
                 validation_split: str = "test") -> None:
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.validation_split = validation_split

    def validate(self, run: RunContext) -> None:
        """A missing split is a spec error, reported before the run folder exists."""
        for option, split in (("train", "train"), ("validation_split", self.validation_split)):
            if split not in run.dataset.splits:
                raise ValueError(f"{option}: dataset {run.dataset.name!r} has no split "
                                 f"{split!r}; its splits: {sorted(run.dataset.splits)}")

    def execute(self, run: RunContext) -> None:
        method: GradientMethod = run.method  # the host checked the interface at build
        model = run.model
        if model is None:  # the spec check refuses a model-less run of a model protocol
            raise ValueError("early_stopping trains a model; the spec names none")
        method.setup(run, model)
        best, waited = -1.0, 0
        for epoch in range(self.max_epochs):
            with run.phase("epoch", epoch) as phase:
                model.train()
                losses = [method.step(run, model, x, y, rows) for x, y, rows in
                          run.dataset.split("train").batches(self.batch_size, shuffle=True,
                                                             generator=run.generator)]
                phase.metrics["train/loss"] = sum(losses) / max(len(losses), 1)
                score = accuracy(run.evaluate(self.validation_split).predictions)
            best, waited = (score, 0) if score > best else (best, waited + 1)
            if waited >= self.patience:
                run.record("stopped_after", epoch + 1)
                return


__all__ = ["EarlyStopping", "SmoothedSGD", "bottleneck", "top2_accuracy", "torch"]
