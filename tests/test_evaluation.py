"""The evaluation engine's metrics, checked against scikit-learn and by hand."""

from __future__ import annotations

import math

import torch
from sklearn.metrics import confusion_matrix as sk_confusion

from paralab.evaluation import (
    Predictions,
    accuracy,
    confusion_matrix,
    grouped_accuracy,
    loss,
    mean_confidence_interval,
    per_class_accuracy,
    predict,
)
from paralab.testing import tiny_dataset


def random_predictions(n: int = 500, classes: int = 4, seed: int = 0) -> Predictions:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=generator)
    targets = torch.randint(0, classes, (n,), generator=generator)
    return Predictions(logits=logits, targets=targets, indices=torch.arange(n))


def test_metrics_match_references() -> None:
    p = random_predictions()
    labels = p.logits.argmax(1)
    assert accuracy(p) == float((labels == p.targets).float().mean())
    expected = sk_confusion(p.targets.numpy(), labels.numpy(), labels=range(4))
    assert confusion_matrix(p).tolist() == expected.tolist()
    recalls = expected.diagonal() / expected.sum(1)
    assert per_class_accuracy(p) == [float(r) for r in recalls]
    assert math.isclose(loss(p), float(torch.nn.functional.cross_entropy(p.logits, p.targets)))


def test_grouped_accuracy_by_an_index_tensor() -> None:
    p = random_predictions()
    groups = torch.arange(500) % 3
    correct = (p.labels == p.targets).double()
    expected = [float(correct[groups == g].mean()) for g in range(3)]
    assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(grouped_accuracy(p, groups), expected))


def test_mean_confidence_interval() -> None:
    values = torch.tensor([0.5, 0.7, 0.6, 0.8, 0.4], dtype=torch.float64)
    mean, half = mean_confidence_interval(values)
    assert math.isclose(mean, 0.6)
    assert math.isclose(half, 1.959964 * float(values.std()) / math.sqrt(5), rel_tol=1e-6)


def test_predict_batches_restore_mode_and_share_dataset() -> None:
    data = tiny_dataset()
    model = torch.nn.Sequential(torch.nn.Linear(16, 10), torch.nn.Dropout(0.5))
    model.train()
    index = data.splits["test"]
    small = predict(model, data, index, batch_size=7)
    large = predict(model, data, index, batch_size=1000)
    assert torch.allclose(small.logits, large.logits), "dropout off, batching irrelevant"
    assert model.training
    assert small.feature("group").tolist() == data.features["group"][index].tolist()
