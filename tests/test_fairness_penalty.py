"""The fairness penalty's value and gradient on hand-made batches."""

from __future__ import annotations

import pytest
import torch

from paralab import Batch
from paralab_fairness.penalty import FairnessPenalty, group_gap
from paralab_fairness.synthetic import biased_synthetic


class FakeRun:
    """Only what a loss term reads from a run: the shared dataset."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset


def test_group_gap_is_the_sum_of_absolute_deviations_from_the_mean() -> None:
    scores = torch.tensor([0.9, 0.7, 0.2, 0.4, 0.3], dtype=torch.float64)
    groups = torch.tensor([0, 0, 1, 1, 1])
    mean = scores.mean()
    expected = abs(0.8 - mean) + abs(0.3 - mean)
    assert float(group_gap(scores, groups, 3)) == pytest.approx(float(expected))
    same = torch.tensor([0.5, 0.5, 0.5, 0.5])
    assert float(group_gap(same, torch.tensor([0, 1, 0, 1]), 2)) == 0.0


def test_penalty_on_a_batch_has_the_right_value_and_a_gradient() -> None:
    dataset = biased_synthetic(n=200)
    run = FakeRun(dataset)
    indices = torch.arange(32)
    logits = torch.randn(32, 2, requires_grad=True)
    batch = Batch(dataset.x[indices], dataset.y[indices], indices, logits, torch.nn.Identity(),
                  run)  # type: ignore[arg-type]
    penalty = FairnessPenalty(sensitive=["group"], weight=2.0)
    penalty.validate(run)  # type: ignore[arg-type]
    value = penalty(batch)
    p = torch.softmax(logits, dim=-1)[:, 1]
    group = dataset.features["group"][indices]
    expected = 2.0 * sum(abs(p[group == g].mean() - p.mean()) for g in (0, 1))
    assert float(value) == pytest.approx(float(expected), rel=1e-6)
    value.backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0
    odds = FairnessPenalty(sensitive=["group"], constraint="equalized_odds")
    odds.validate(run)  # type: ignore[arg-type]
    y = dataset.y[indices]
    expected_odds = sum(
        group_gap(p[y == label].detach(), group[y == label], 2) for label in (0, 1)
    )
    assert float(odds(batch)) == pytest.approx(float(expected_odds), rel=1e-6)
