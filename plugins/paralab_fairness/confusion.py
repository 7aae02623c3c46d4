"""The one pass over the rows: confusion counts (and calibration sums) per group.

Every per-group metric of the audit is a function of four counts per group (true negatives,
false positives, false negatives, true positives), so the rows are read once: one
``torch.bincount`` over ``group * 4 + 2 * y + y_hat``. Calibration adds one weighted bincount
over ``group * bins + bin`` of ``score - y``. Everything after this works on ``groups x 4``
numbers, which is why the audit does not grow with the number of metrics (fairlearn's
``MetricFrame`` runs every metric on every group's rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from paralab_fairness.groups import GroupCodes

CELLS = ("tn", "fp", "fn", "tp")
"""Column order of the counts: index ``2 * y + y_hat``."""

_DENSE_LIMIT = 1 << 24
"""Up to this many possible groups x cells a dense bincount is used; beyond it, the groups
that occur are found with ``torch.unique`` first (a sort) so memory stays bounded."""


@dataclass(frozen=True)
class GroupCounts:
    """Counts of the groups that occur, in increasing group-number order.

    ``numbers`` are the combined group numbers (see :class:`GroupCodes`), ``counts`` is a
    float64 ``(groups, 4)`` tensor in :data:`CELLS` order, ``calibration_gap`` (or ``None``)
    the ``(groups, bins)`` sums of ``score - y``.
    """

    numbers: torch.Tensor
    counts: torch.Tensor
    calibration_gap: torch.Tensor | None = None


def group_counts(
    groups: GroupCodes,
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    scores: torch.Tensor | None = None,
    bins: int = 10,
) -> GroupCounts:
    """Confusion counts per occurring group; with ``scores``, calibration sums per score bin.

    ``y_true`` and ``y_pred`` are 0/1 (bool or integer) tensors on the same device as the
    group codes; ``scores`` the predicted probability of the positive class.
    """
    size = groups.size
    cell = y_true.to(torch.uint8).mul_(2).add_(y_pred)  # 2 * y + y_hat, one byte per row
    if size * 4 <= max(_DENSE_LIMIT, 4 * y_true.numel()):
        # One index buffer, filled in place: group * 4 + 2 * y + y_hat, then one bincount.
        index = groups.combined(scale=4).add_(cell)
        dense = torch.bincount(index, minlength=size * 4).view(size, 4)
        present = dense.sum(dim=1) > 0
        numbers = torch.nonzero(present).flatten()
        counts = dense[present]
        compact = None
    else:
        numbers, compact = torch.unique(groups.combined(), return_inverse=True)
        index = (compact * 4).add_(cell)
        counts = torch.bincount(index, minlength=len(numbers) * 4).view(-1, 4)
    gap = None
    if scores is not None:
        if compact is None:
            lookup = torch.full((size,), -1, dtype=torch.long, device=numbers.device)
            lookup[numbers] = torch.arange(len(numbers), device=numbers.device)
            compact = lookup[groups.combined()]
        binned = (scores.double() * bins).floor().clamp_(0, bins - 1).long()
        gap = torch.bincount(
            compact * bins + binned,
            weights=scores.double() - y_true.double(),
            minlength=len(numbers) * bins,
        ).view(-1, bins)
    return GroupCounts(numbers=numbers, counts=counts.double(), calibration_gap=gap)
