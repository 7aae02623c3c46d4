"""The evaluation engine: predictions computed once per evaluation point, metrics on the device.

:func:`predict` runs a model over index views of the shared data in large batches under
``torch.inference_mode``; every metric and auditor of that evaluation point reads the same
:class:`Predictions`. The metric functions below are plain tensor code on whatever device the
predictions live on: no copy to the CPU until a number is reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F

from paralab.data.shared import SharedDataset


@dataclass
class Predictions:
    """A model's outputs on some rows of a shared dataset.

    ``indices`` index the shared dataset, so metadata (sensitive features, task ids, client ids)
    is one gather away: ``predictions.feature("race")``. When :func:`predict` made them,
    ``extras["model"]`` and ``extras["transform"]`` say which model saw which inputs (auditors
    that re-run the model, such as attributions, need both).
    """

    logits: torch.Tensor
    targets: torch.Tensor
    indices: torch.Tensor
    dataset: SharedDataset | None = None
    split: str = ""
    extras: dict[str, Any] = field(default_factory=dict)
    predicted: torch.Tensor | None = None
    """Labels predicted otherwise than by the argmax of the logits (a randomized classifier's
    draws); ``labels`` returns them when given."""

    def __len__(self) -> int:
        return int(self.targets.numel())

    @cached_property
    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.logits.float(), dim=-1)

    @cached_property
    def labels(self) -> torch.Tensor:
        """The predicted class of each row: ``predicted`` when given, else the argmax."""
        return self.predicted if self.predicted is not None else self.logits.argmax(dim=-1)

    @cached_property
    def correct(self) -> torch.Tensor:
        return (self.labels == self.targets).float()

    @property
    def n_classes(self) -> int:
        return int(self.logits.shape[-1])

    def feature(self, name: str) -> torch.Tensor:
        """A per-example feature of the shared dataset for these rows."""
        if self.dataset is None:
            raise ValueError("these predictions carry no dataset to read features from")
        try:
            values = self.dataset.features[name]
        except KeyError:
            raise KeyError(
                f"dataset {self.dataset.name!r} has no feature {name!r}; features: "
                f"{sorted(self.dataset.features)}"
            ) from None
        return values[self.indices.to(values.device)].to(self.targets.device)

    def subset(self, mask: torch.Tensor) -> Predictions:
        """The rows where ``mask`` is true (or at the given positions)."""
        return Predictions(
            logits=self.logits[mask],
            targets=self.targets[mask],
            indices=self.indices[mask],
            dataset=self.dataset,
            split=self.split,
            predicted=None if self.predicted is None else self.predicted[mask],
        )


def predict(
    model: torch.nn.Module,
    dataset: SharedDataset,
    indices: torch.Tensor | None = None,
    *,
    batch_size: int = 4096,
    transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    split: str = "",
) -> Predictions:
    """Run ``model`` over ``dataset`` rows ``indices`` in batches; return the predictions.

    ``transform(x, indices)`` (for example a continual experience's input permutation) is
    applied on the device before the model. The model's training mode is restored afterwards.
    """
    if indices is None:
        indices = torch.arange(len(dataset), device=dataset.device)
    indices = indices.to(dataset.device)
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with torch.inference_mode():
            for start in range(0, len(indices), batch_size):
                index = indices[start : start + batch_size]
                x = dataset.x[index]
                if transform is not None:
                    x = transform(x, index)
                outputs.append(model(x))
    finally:
        model.train(was_training)
    n_classes = len(dataset.class_names) or dataset.n_classes
    logits = torch.cat(outputs) if outputs else torch.empty(0, n_classes, device=dataset.device)
    return Predictions(
        logits=logits,
        targets=dataset.y[indices],
        indices=indices,
        dataset=dataset,
        split=split,
        extras={"model": model, "transform": transform},
    )


# ---------------------------------------------------------------------------------- metrics


def accuracy(predictions: Predictions) -> float:
    """Fraction of rows whose predicted class equals the target."""
    if len(predictions) == 0:
        return math.nan
    return float(predictions.correct.mean())


def loss(predictions: Predictions) -> float:
    """Mean cross-entropy of the logits against the targets."""
    if len(predictions) == 0:
        return math.nan
    return float(F.cross_entropy(predictions.logits.float(), predictions.targets))


def confusion_matrix(predictions: Predictions, n_classes: int | None = None) -> torch.Tensor:
    """``C[i, j]`` = rows of class ``i`` predicted as ``j``, one ``bincount`` on the device."""
    n = n_classes or predictions.n_classes
    flat = predictions.targets * n + predictions.labels
    return torch.bincount(flat, minlength=n * n).reshape(n, n)


def per_class_accuracy(predictions: Predictions) -> list[float]:
    """Recall of each class (NaN for a class with no rows)."""
    matrix = confusion_matrix(predictions).double()
    support = matrix.sum(dim=1)
    values = matrix.diagonal() / support
    return [float(v) for v in values]


def grouped_mean(values: torch.Tensor, groups: torch.Tensor, n_groups: int | None = None) -> torch.Tensor:
    """Mean of ``values`` within each group code (NaN for empty groups), one scatter pass."""
    n = n_groups if n_groups is not None else int(groups.max()) + 1
    totals = torch.zeros(n, dtype=torch.float64, device=values.device)
    counts = torch.zeros(n, dtype=torch.float64, device=values.device)
    totals.index_add_(0, groups, values.double())
    counts.index_add_(0, groups, torch.ones_like(values, dtype=torch.float64))
    return totals / counts


def grouped_accuracy(predictions: Predictions, groups: torch.Tensor) -> list[float]:
    """Accuracy within each group of an index tensor (a task id, a client, a sensitive group)."""
    return [float(v) for v in grouped_mean(predictions.correct, groups.to(predictions.correct.device))]


def mean_confidence_interval(values: torch.Tensor, level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation confidence interval."""
    values = values.double().flatten()
    n = values.numel()
    if n == 0:
        return math.nan, math.nan
    z = {0.9: 1.6448536, 0.95: 1.959964, 0.99: 2.5758293}.get(level)
    if z is None:
        z = math.sqrt(2) * torch.special.erfinv(torch.tensor(level, dtype=torch.float64)).item()
    half = z * float(values.std(unbiased=True)) / math.sqrt(n) if n > 1 else math.nan
    return float(values.mean()), half


# Built-in metric factories, contributed by the host's own plugin.
def accuracy_metric() -> Callable[[Predictions, SharedDataset], float]:
    return lambda predictions, dataset: accuracy(predictions)


def loss_metric() -> Callable[[Predictions, SharedDataset], float]:
    return lambda predictions, dataset: loss(predictions)


def per_class_accuracy_metric() -> Callable[[Predictions, SharedDataset], dict[str, float]]:
    def metric(predictions: Predictions, dataset: SharedDataset) -> dict[str, float]:
        names = dataset.class_names
        return {names[i]: v for i, v in enumerate(per_class_accuracy(predictions))}

    return metric


def confusion_matrix_metric() -> Callable[[Predictions, SharedDataset], list[list[int]]]:
    return lambda predictions, dataset: confusion_matrix(
        predictions, len(dataset.class_names) or None
    ).tolist()


def grouped_accuracy_metric(
    feature: str = "",
) -> Callable[[Predictions, SharedDataset], dict[str, float]]:
    """Accuracy per value of a per-example feature of the dataset (``feature = "task"``)."""
    if not feature:
        raise ValueError(
            "metric grouped_accuracy needs the option feature = '<name of a per-example "
            "feature of the dataset>', e.g. { name = \"grouped_accuracy\", feature = \"race\" }"
        )

    def metric(predictions: Predictions, dataset: SharedDataset) -> dict[str, float]:
        groups = predictions.feature(feature)
        labels = dataset.categories.get(feature)
        values = grouped_accuracy(predictions, groups)
        return {(labels[i] if labels else str(i)): v for i, v in enumerate(values)}

    return metric
