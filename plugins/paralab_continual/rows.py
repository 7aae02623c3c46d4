"""Training rows gathered from the shared tensors, and the fused plain-SGD step.

The base loop and the strategy plugins (replay's memory, A-GEM's sample, EWC's Fisher) all
read rows of the shared dataset the same way: gathered once, each row transformed as its
experience dictates (a permuted digit stays permuted when replayed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from paralab import SharedDataset
    from paralab_continual.scenarios import Stream


def gather(
    dataset: SharedDataset, stream: Stream, rows: torch.Tensor, experience_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of ``rows``, each transformed as its experience dictates."""
    x = dataset.x[rows]
    y = dataset.y[rows]
    transformed = [e for e in stream if e.transform is not None]
    if not transformed:
        return x, y
    ids = experience_ids.to(x.device)
    first = int(ids[0]) if len(ids) else 0
    if len(ids) and bool((ids == first).all()):
        transform = stream[first].transform
        return (transform(x, rows) if transform is not None else x), y
    x = x.clone()
    for experience in transformed:
        where = (ids == experience.index).nonzero().flatten()
        if len(where):
            assert experience.transform is not None
            x[where] = experience.transform(x[where], rows[where])
    return x, y


def fused_sgd_step(parameters: list[torch.Tensor], lr: float, weight_decay: float) -> None:
    """Plain SGD as one fused ``_foreach_add_`` over the parameters that have gradients (the
    update ``torch.optim.SGD`` makes without momentum, minus its per-step dispatch)."""
    with torch.no_grad():
        pairs = [(p, p.grad) for p in parameters if p.grad is not None]
        if not pairs:
            return
        params = [p for p, _ in pairs]
        grads = [g for _, g in pairs]
        if weight_decay:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
        torch._foreach_add_(params, grads, alpha=-lr)
