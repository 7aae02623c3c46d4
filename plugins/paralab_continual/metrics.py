"""Continual-learning summaries of the accuracy matrix (Lopez-Paz and Ranzato 2017).

``R[i][j]`` is the accuracy on experience ``j``'s test view after training on experience ``i``
(T experiences); ``b[j]`` is the accuracy on experience ``j`` of the model before any training.

* average accuracy  ACC = 1/T * sum_j R[T-1][j]
* backward transfer BWT = 1/(T-1) * sum_{j<T-1} (R[T-1][j] - R[j][j])
* forgetting        F   = -BWT, the mean drop from just-trained to final accuracy (Avalanche's
  ``StreamForgetting`` after the last evaluation of the stream)
* forward transfer  FWT = 1/(T-1) * sum_{j>0} (R[j-1][j] - b[j])

Plain Python on a small matrix: T is rarely above a few dozen, the evaluation engine already
did the heavy work. Undefined values (one experience only) are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Matrix = Sequence[Sequence[float]]


def _check(matrix: Matrix) -> int:
    size = len(matrix)
    if size == 0 or any(len(row) != size for row in matrix):
        raise ValueError(f"the accuracy matrix must be square and non-empty, got {matrix!r}")
    return size


def average_accuracy(matrix: Matrix, after: int | None = None) -> float:
    """Mean accuracy over the experiences seen after training on ``after`` (default: all)."""
    size = _check(matrix)
    last = size - 1 if after is None else after
    row = matrix[last][: last + 1]
    return sum(row) / len(row)


def backward_transfer(matrix: Matrix) -> float:
    """Lopez-Paz and Ranzato's BWT: how training later changed accuracy on earlier experiences."""
    size = _check(matrix)
    if size < 2:
        return math.nan
    last = matrix[size - 1]
    return sum(last[j] - matrix[j][j] for j in range(size - 1)) / (size - 1)


def forgetting(matrix: Matrix) -> float:
    """Mean drop from the accuracy just after learning an experience to the final one."""
    value = backward_transfer(matrix)
    return math.nan if math.isnan(value) else -value


def max_forgetting(matrix: Matrix) -> float:
    """Chaudhry et al. 2018's forgetting: best earlier accuracy minus the final one, averaged."""
    size = _check(matrix)
    if size < 2:
        return math.nan
    drops = [
        max(matrix[i][j] for i in range(j, size - 1)) - matrix[size - 1][j]
        for j in range(size - 1)
    ]
    return sum(drops) / len(drops)


def forward_transfer(matrix: Matrix, initial: Sequence[float]) -> float:
    """Lopez-Paz and Ranzato's FWT: accuracy on the next experience before training on it,
    relative to the untrained model's ``initial`` accuracy on it."""
    size = _check(matrix)
    if len(initial) != size:
        raise ValueError(f"initial accuracies: expected {size} values, got {len(initial)}")
    if size < 2:
        return math.nan
    return sum(matrix[j - 1][j] - initial[j] for j in range(1, size)) / (size - 1)


def summarize(matrix: Matrix, initial: Sequence[float] | None = None) -> dict[str, float]:
    """Every summary of ``matrix`` by name (``forward_transfer`` only with ``initial``)."""
    summary = {
        "average_accuracy": average_accuracy(matrix),
        "backward_transfer": backward_transfer(matrix),
        "forgetting": forgetting(matrix),
        "max_forgetting": max_forgetting(matrix),
    }
    if initial is not None:
        summary["forward_transfer"] = forward_transfer(matrix, initial)
    return summary
