"""Baselines: the reference input that stands for "feature absent".

Integrated gradients integrate from it, Shapley-style methods put its values where a player is
absent, deletion curves delete towards it. A wrong shape is caught here, before any attribution
is computed, with the expected shape in the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from paralab_explain.errors import ExplainError


def resolve_baseline(
    baseline: Any, n_features: int, reference: torch.Tensor | None = None, device: Any = None
) -> torch.Tensor:
    """A flat baseline row of ``n_features`` values.

    ``"zeros"``; ``"mean"`` (the mean of ``reference`` rows, for example the training split);
    a number (every feature); a sequence or tensor of ``n_features`` values.
    """
    if isinstance(baseline, str):
        if baseline == "zeros":
            return torch.zeros(n_features, device=device)
        if baseline == "mean":
            if reference is None or len(reference) == 0:
                raise ExplainError("baseline: 'mean' needs reference rows (the training split)")
            return reference.reshape(len(reference), -1).float().mean(dim=0).to(device)
        raise ExplainError(
            f"baseline: {baseline!r} unknown; valid: 'zeros', 'mean', a number, or "
            f"{n_features} values (one per input feature)"
        )
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full((n_features,), float(baseline), device=device)
    if isinstance(baseline, (torch.Tensor, Sequence)):
        values = torch.as_tensor(baseline, dtype=torch.float32, device=device)
        return check_baseline(values, n_features)
    raise ExplainError(f"baseline: cannot read {baseline!r}; valid: 'zeros', 'mean', a number or values")


def check_baseline(baseline: torch.Tensor, n_features: int) -> torch.Tensor:
    """``baseline`` flattened to ``(n_features,)``; a clear error when it has another size."""
    if baseline.numel() != n_features:
        raise ExplainError(
            f"baseline has shape {tuple(baseline.shape)} ({baseline.numel()} values) but the "
            f"inputs have {n_features} features per row; give one value per feature, "
            "'zeros' or 'mean'"
        )
    return baseline.reshape(n_features)
