"""Secure aggregation by pairwise masking (Bonawitz et al. 2017), as middleware.

Each client encodes its weighted delta ``w_k d_k`` in fixed point (``precision`` fractional
bits) as residues modulo ``2**bits``, then adds a mask ``m_kj`` for every other client ``j`` of
the round with ``k < j`` and subtracts it when ``k > j``. Every mask appears once with each sign,
so the sum of the masked residues modulo ``2**bits`` equals the sum of the unmasked ones exactly:
the server learns the aggregate and nothing about one client's delta.

The pairwise mask seeds stand in for the Diffie-Hellman key agreement of the real protocol (a
secret of this middleware, ``seed``); clients that drop out before masking are simply left out
of the round's mask set (the protocol passes the clients that report). Dropout *after* masking
(the protocol's secret-sharing recovery) is not simulated: the federated protocol re-masks the
survivors instead.
"""

from __future__ import annotations

from typing import Any

import torch

from paralab.context import RunContext, Update
from paralab.hookspecs import hookimpl
from paralab_federated.aggregation import SECURE_KEY
from paralab_federated.schedule import seeded


def encode(value: torch.Tensor, weight: float, precision: int, bits: int) -> torch.Tensor:
    """``weight * value`` in fixed point as residues in ``[0, 2**bits)``."""
    fixed = torch.round(value.double() * weight * (1 << precision)).long()
    return torch.remainder(fixed, 1 << bits)


def pair_mask(shape: torch.Size, secret: int, round_index: int, low: int, high: int,
              tensor: int, bits: int, device: torch.device) -> torch.Tensor:
    generator = seeded(secret, round_index, low, high, tensor)
    return torch.randint(0, 1 << bits, shape, generator=generator, dtype=torch.long).to(device)


class SecureAggregation:
    """Middleware: the update leaves masked; only the round's sum can be decoded."""

    def __init__(self, precision: int = 24, bits: int = 62, seed: int = 0) -> None:
        if not 8 <= bits <= 62:
            raise ValueError(f"secure_aggregation: bits = {bits} must be in 8..62")
        if not 0 <= precision < bits - 8:
            raise ValueError(
                f"secure_aggregation: precision = {precision} must be in 0..{bits - 9} "
                f"(bits = {bits} leaves room for the integer part)"
            )
        self.precision, self.bits, self.seed = int(precision), int(bits), int(seed)

    # tryfirst: the outermost wrapper, so it masks after every other middleware (DP) has acted.
    @hookimpl(wrapper=True, tryfirst=True)
    def paralab_process_update(self, run: RunContext, update: Update) -> Any:
        update = yield
        info = dict(update.info)
        me = update.source
        peers = [k for k in info.get("round_clients", [me]) if k != me]
        round_index = int(info.get("round", -1))
        modulus = 1 << self.bits
        masked = {}
        for position, (name, value) in enumerate(update.delta.items()):
            residue = encode(value, update.weight, self.precision, self.bits)
            for peer in peers:
                low, high = min(me, peer), max(me, peer)
                mask = pair_mask(value.shape, self.seed, round_index, low, high, position,
                                 self.bits, value.device)
                residue = torch.remainder(residue + (mask if me < peer else modulus - mask),
                                          modulus)
            masked[name] = residue
        info[SECURE_KEY] = {
            "bits": self.bits,
            "scale": float(1 << self.precision),
            "dtypes": {name: value.dtype for name, value in update.delta.items()},
            "clients": sorted([me, *peers]),
        }
        return update.replace(delta=masked, info=info)
