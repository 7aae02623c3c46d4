"""The server's aggregate: the weighted mean of client deltas, masked or not.

Plain updates are averaged as ``sum_k w_k d_k / sum_k w_k`` (FedAvg's example weighting).
Updates that secure aggregation encoded carry ``info["secure_aggregation"]``: their deltas are
fixed-point residues of ``w_k d_k`` plus pairwise masks, modulo ``2**bits``. Summing the
residues modulo ``2**bits`` cancels the masks exactly; the sum is then decoded and divided by
``sum_k w_k``. The server never needs an individual unmasked delta.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from paralab import Update

SECURE_KEY = "secure_aggregation"


def decode_residue(total: torch.Tensor, bits: int) -> torch.Tensor:
    """Residues in ``[0, 2**bits)`` back to signed integers in ``[-2**(bits-1), 2**(bits-1))``."""
    modulus = 1 << bits
    return torch.where(total >= (1 << (bits - 1)), total - modulus, total)


def weighted_mean(updates: Sequence[Update]) -> dict[str, torch.Tensor]:
    """The aggregate delta of ``updates`` (masked by secure aggregation or not)."""
    if not updates:
        raise ValueError("no update to aggregate")
    encoded = [SECURE_KEY in u.info for u in updates]
    if any(encoded) and not all(encoded):
        raise ValueError(
            "some updates are masked by secure aggregation and some are not; every client of a "
            "round must go through the same middleware"
        )
    total_weight = float(sum(u.weight for u in updates))
    if total_weight <= 0:
        raise ValueError(f"the updates' weights sum to {total_weight}; weights must be positive")
    names = list(updates[0].delta)
    if all(encoded):
        encoding = updates[0].info[SECURE_KEY]
        bits, scale = int(encoding["bits"]), float(encoding["scale"])
        modulus = 1 << bits
        result = {}
        for n in names:
            total = torch.zeros_like(updates[0].delta[n])
            for u in updates:
                total = torch.remainder(total + u.delta[n], modulus)
            result[n] = decode_residue(total, bits).double().div(scale * total_weight)
        return {n: result[n].to(encoding["dtypes"][n]) for n in names}
    first = updates[0].delta[names[0]]
    weights = torch.tensor([u.weight / total_weight for u in updates], dtype=first.dtype,
                           device=first.device)
    # One stack and one contraction per tensor: no per-client scaled copies.
    return {n: torch.tensordot(weights, torch.stack([u.delta[n] for u in updates]), dims=1)
            for n in names}
