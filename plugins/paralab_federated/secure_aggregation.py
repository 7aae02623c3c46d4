"""Secure aggregation by pairwise masking (Bonawitz et al. 2017), as middleware.

Each client encodes its weighted delta ``w_k d_k`` in fixed point (``precision`` fractional
bits) as residues modulo ``2**bits``, then adds a mask ``m_kj`` for every other client ``j`` of
the round with ``k < j`` and subtracts it when ``k > j``. Every mask appears once with each sign,
so the sum of the masked residues modulo ``2**bits`` equals the sum of the unmasked ones exactly:
the server learns the aggregate and nothing about one client's delta.

The pairwise mask seeds stand in for the Diffie-Hellman key agreement of the real protocol (a
secret of this middleware, drawn from the operating system when the run starts, so that no one
who knows the spec or the run's seed can regenerate the masks; ``seed`` fixes it, for
reproducible masks that are then not secret). The sum, and so every result, is the same
whatever the secret: the masks cancel exactly. Clients that drop out before masking are simply left out
of the round's mask set (the protocol passes the clients that report). Dropout *after* masking
(the protocol's secret-sharing recovery) is not simulated: the federated protocol re-masks the
survivors instead.

Masking needs company: with one client per round the "sum" is that client's update, so
:meth:`SecureAggregation.validate` rejects a federated spec that samples fewer than two clients
per round. It acts only on client updates (``paralab_process_update``): under a protocol with
nothing to aggregate (``supervised``) the spec check rejects it.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import torch

from paralab import Middleware, hookimpl
from paralab_federated.aggregation import SECURE_KEY
from paralab_federated.schedule import seeded

if TYPE_CHECKING:
    from paralab import RunContext, Update


def encode(value: torch.Tensor, weight: float, precision: int, bits: int) -> torch.Tensor:
    """``weight * value`` in fixed point as residues in ``[0, 2**bits)``."""
    fixed = torch.round(value.double() * weight * (1 << precision)).long()
    return torch.remainder(fixed, 1 << bits)


def pair_mask(shape: torch.Size, secret: int, round_index: int, low: int, high: int,
              tensor: int, bits: int, device: torch.device) -> torch.Tensor:
    generator = seeded(secret, round_index, low, high, tensor)
    return torch.randint(0, 1 << bits, shape, generator=generator, dtype=torch.long).to(device)


class SecureAggregation(Middleware):
    """Middleware: the update leaves masked; only the round's sum can be decoded.

    Options are declared in the plugin's spec (``8 <= bits <= 62``, ``precision >= 0``);
    ``precision <= bits - 9`` (room for the integer part) is checked in :meth:`validate`.
    """

    def __init__(self, precision: int = 24, bits: int = 62, seed: int | None = None) -> None:
        self.precision, self.bits, self.seed = int(precision), int(bits), seed
        self._secret: int | None = None

    def validate(self, run: RunContext) -> None:
        """``precision`` must leave ``bits`` room for the integer part, and a round must have
        at least two clients for masks to hide anyone."""
        if self.precision > self.bits - 9:
            raise ValueError(
                f"precision = {self.precision} must be at most bits - 9 = {self.bits - 9} "
                f"(bits = {self.bits} leaves room for the integer part); lower precision or "
                f"raise bits"
            )
        per_round = getattr(run.protocol, "clients_per_round", None)
        if per_round is not None and per_round < 2:
            raise ValueError(
                f"the federated protocol samples {per_round} client per round, so the masked "
                f"sum would be that client's update; sample at least 2 (raise fraction or "
                f"clients)"
            )

    def mask_secret(self, run: RunContext | None) -> int:
        """``seed`` when set, else a secret from the operating system, drawn once per run
        (every client of a round must derive the same pairwise masks)."""
        if self.seed is not None:
            return int(self.seed)
        if self._secret is None:
            self._secret = secrets.randbits(63)
        return self._secret

    # tryfirst: the outermost wrapper, so it masks after every other middleware (DP) has acted.
    @hookimpl(wrapper=True, tryfirst=True)
    def paralab_process_update(self, run: RunContext, update: Update) -> Any:
        update = yield
        info = dict(update.info)
        me = update.source
        peers = [k for k in info.get("round_clients", [me]) if k != me]
        round_index = int(info.get("round", -1))
        modulus = 1 << self.bits
        secret = self.mask_secret(run)
        masked = {}
        for position, (name, value) in enumerate(update.delta.items()):
            residue = encode(value, update.weight, self.precision, self.bits)
            for peer in peers:
                low, high = min(me, peer), max(me, peer)
                mask = pair_mask(value.shape, secret, round_index, low, high, position,
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
