"""The accuracy matrix and its summaries: hand-computed numbers, and parity with Avalanche's
metrics on the same predictions."""

from __future__ import annotations

import math

import pytest
import torch
from avalanche.evaluation.metrics import Accuracy
from avalanche.evaluation.metrics.forgetting_bwt import Forgetting, forgetting_to_bwt
from avalanche.evaluation.metrics.forward_transfer import ForwardTransfer

from paralab import Predictions, accuracy
from paralab_continual import metrics

R = [
    [0.9, 0.1, 0.0],
    [0.6, 0.8, 0.2],
    [0.3, 0.5, 0.7],
]
INITIAL = [0.1, 0.05, 0.15]


def test_summaries_by_hand():
    assert metrics.average_accuracy(R) == pytest.approx((0.3 + 0.5 + 0.7) / 3)
    assert metrics.average_accuracy(R, after=1) == pytest.approx((0.6 + 0.8) / 2)
    assert metrics.backward_transfer(R) == pytest.approx(((0.3 - 0.9) + (0.5 - 0.8)) / 2)
    assert metrics.forgetting(R) == pytest.approx(0.45)
    assert metrics.max_forgetting([[0.9, 0, 0], [0.95, 0.8, 0], [0.3, 0.5, 0.7]]) == pytest.approx(
        ((0.95 - 0.3) + (0.8 - 0.5)) / 2
    )
    assert metrics.forward_transfer(R, INITIAL) == pytest.approx(((0.1 - 0.05) + (0.2 - 0.15)) / 2)
    assert math.isnan(metrics.backward_transfer([[0.5]]))
    with pytest.raises(ValueError, match="square"):
        metrics.average_accuracy([[0.1, 0.2]])


def _predictions(generator: torch.Generator, n: int, quality: float) -> Predictions:
    targets = torch.randint(0, 4, (n,), generator=generator)
    logits = torch.randn(n, 4, generator=generator)
    logits[torch.arange(n), targets] += quality
    return Predictions(logits=logits, targets=targets, indices=torch.arange(n))


def test_equal_to_avalanche_on_the_same_predictions():
    """Avalanche's Accuracy, Forgetting (and forgetting_to_bwt) and ForwardTransfer fed the same
    predictions at the same points give paralab's numbers (to float32 rounding: paralab's
    accuracy is a float32 mean on the device, Avalanche's a Python division)."""
    generator = torch.Generator().manual_seed(0)
    size = 4
    # predictions[i][j]: after training on i (i = -1: before training), evaluated on j.
    predictions = {
        (i, j): _predictions(generator, 50 + 7 * j, quality=float(2 + i - j))
        for i in range(-1, size)
        for j in range(size)
    }
    ours = [[accuracy(predictions[i, j]) for j in range(size)] for i in range(size)]
    initial = [accuracy(predictions[-1, j]) for j in range(size)]

    def avalanche_accuracy(p: Predictions) -> float:
        metric = Accuracy()
        metric.update(p.logits, p.targets)
        return float(metric.result())

    theirs = [[avalanche_accuracy(predictions[i, j]) for j in range(size)] for i in range(size)]
    for their_row, our_row in zip(theirs, ours):
        assert their_row == pytest.approx(our_row, abs=1e-6)

    forgetting, transfer = Forgetting(), ForwardTransfer()
    for j in range(size):
        transfer.update(j, avalanche_accuracy(predictions[-1, j]), initial=True)
    for i in range(size):
        forgetting.reset_last()  # as StreamForgetting does before each evaluation of the stream
        for j in range(size):
            value = avalanche_accuracy(predictions[i, j])
            forgetting.update(j, value, initial=(i == j))
            if i == j - 1:
                transfer.update(j, value)
    per_experience = forgetting.result()
    stream_forgetting = sum(per_experience.values()) / len(per_experience)
    assert sorted(per_experience) == list(range(size - 1))
    assert metrics.forgetting(ours) == pytest.approx(stream_forgetting, abs=1e-6)
    assert metrics.backward_transfer(ours) == pytest.approx(
        forgetting_to_bwt(stream_forgetting), abs=1e-6
    )
    fwt = transfer.result()
    assert metrics.forward_transfer(ours, initial) == pytest.approx(
        sum(fwt.values()) / len(fwt), abs=1e-6
    )
