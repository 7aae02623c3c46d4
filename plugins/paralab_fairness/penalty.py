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

if TYPE_CHECKING:
    from paralab.context import Batch, RunContext

CONSTRAINTS = ("demographic_parity", "equalized_odds")


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


class FairnessPenalty:
    """``weight * gap``, the gap measured on each batch's rows over one or more features."""

    def __init__(
        self,
        sensitive: Sequence[str] = (),
        constraint: str = "demographic_parity",
        weight: float = 1.0,
        positive_class: int = 1,
    ) -> None:
        if isinstance(sensitive, str):
            sensitive = [sensitive]
        if constraint not in CONSTRAINTS:
            raise ValueError(
                f"loss fairness_penalty: constraint = {constraint!r} is not one of {list(CONSTRAINTS)}"
            )
        if weight < 0:
            raise ValueError(f"loss fairness_penalty: weight must be >= 0, got {weight}")
        self.sensitive = tuple(sensitive)
        self.constraint = constraint
        self.weight = float(weight)
        self.positive_class = positive_class
        self._names: tuple[str, ...] | None = None
        self._sizes: dict[str, int] = {}

    def validate(self, run: RunContext) -> None:
        """Called by the host before training (``validate(run)``): fail early on bad options."""
        from paralab_fairness.auditor import resolve_sensitive

        self._names = resolve_sensitive(self.sensitive, run.dataset, "loss fairness_penalty")
        # Group counts once, here: reading a maximum per batch would sync the device.
        for name in self._names:
            values = run.dataset.features[name]
            declared = len(run.dataset.categories.get(name, ()))
            self._sizes[name] = max(declared, int(values.max()) + 1 if values.numel() else 1)
        n_classes = run.dataset.info.n_classes
        if self.positive_class >= n_classes:
            raise ValueError(
                f"loss fairness_penalty: positive_class = {self.positive_class} but dataset "
                f"{run.dataset.name!r} has {n_classes} classes"
            )

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
