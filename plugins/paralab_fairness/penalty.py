"""``fairness_penalty``: a differentiable fairness term any protocol's training can add.

A loss term sees each training batch (:class:`paralab.Batch`) wherever it is trained: an
epoch of the supervised protocol, a federated client's local step, a continual experience.
It pushes each group's mean predicted probability of the positive class towards the batch's
overall mean (demographic parity), or does so separately among rows with a positive and with
a negative label (equalized odds): the relaxation of the constraints fairlearn's reductions
enforce (``sum_g |E[h | g] - E[h]|``), on the device, with one ``index_add`` per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from paralab import LossTerm
from paralab_fairness.auditor import as_names, check_positive_class, resolve_sensitive
from paralab_fairness.choices import PENALTY_CONSTRAINTS

if TYPE_CHECKING:
    from paralab import Batch, RunContext

CONSTRAINTS = PENALTY_CONSTRAINTS


def group_gap(scores: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """``sum_g |mean(scores in g) - mean(scores)|`` over groups present in the rows."""
    if scores.numel() == 0:
        return scores.sum()
    totals = torch.zeros(n_groups, dtype=scores.dtype, device=scores.device)
    counts = torch.zeros(n_groups, dtype=scores.dtype, device=scores.device)
    totals = totals.index_add(0, groups, scores)
    counts = counts.index_add(0, groups, torch.ones_like(scores))
    present = counts > 0
    means = totals[present] / counts[present]
    return (means - scores.mean()).abs().sum()


class FairnessPenalty(LossTerm):
    """``weight * gap``, the gap measured on each batch's rows over one or more features.

    Options are declared (and checked) in :mod:`paralab_fairness`; :meth:`validate` checks them
    against the run's data and counts each feature's groups once.
    """

    def __init__(
        self,
        sensitive: Sequence[str] | str = (),
        constraint: str = "demographic_parity",
        weight: float = 1.0,
        positive_class: int = 1,
    ) -> None:
        self.sensitive = as_names(sensitive)
        self.constraint = constraint
        self.weight = float(weight)
        self.positive_class = positive_class
        self._names: tuple[str, ...] | None = None
        self._sizes: dict[str, int] = {}

    def validate(self, run: RunContext) -> None:
        """The sensitive features and ``positive_class`` against the run's dataset (before
        training); also counts each feature's groups, so batches never sync the device."""
        self._names = resolve_sensitive(self.sensitive, run.dataset, "loss fairness_penalty")
        # Group counts once, here: reading a maximum per batch would sync the device.
        for name in self._names:
            values = run.dataset.features[name]
            declared = len(run.dataset.categories.get(name, ()))
            self._sizes[name] = max(declared, int(values.max()) + 1 if values.numel() else 1)
        check_positive_class(self.positive_class, run.dataset, "loss fairness_penalty")

    def __call__(self, batch: Batch) -> torch.Tensor:
        if batch.run is None:
            raise ValueError("loss fairness_penalty: the batch has no run to read groups from")
        if self._names is None:
            self.validate(batch.run)
        assert self._names is not None
        scores = torch.softmax(batch.logits, dim=-1)[:, self.positive_class]
        total = scores.new_zeros(())
        for name in self._names:
            groups = batch.feature(name).to(scores.device).long()
            n_groups = self._sizes[name]
            if self.constraint == "demographic_parity":
                total = total + group_gap(scores, groups, n_groups)
            else:
                positive = batch.targets == self.positive_class
                total = total + group_gap(scores[positive], groups[positive], n_groups)
                total = total + group_gap(scores[~positive], groups[~positive], n_groups)
        return self.weight * total
