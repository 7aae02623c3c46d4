"""Attacks for testing defences: the ``byzantine`` middleware.

A fixed set of clients, ``round(fraction * clients)`` of them drawn once from the seed chain
(``seed``, else the run's seed), misbehave in every round they are sampled:

* ``sign_flip``: the client sends ``-scale * delta`` (its honest delta, reversed and scaled);
* ``scale``: the client sends ``scale * delta`` (a boosted update that dominates a mean);
* ``label_flip``: the client trains on flipped labels ``n_classes - 1 - y`` (its update is
  the honest result of poisoned data; the protocol hands the backend the flipped labels of
  those clients' rows, evaluation keeps the true ones).

The attack acts on the client's raw update, innermost of the update middleware
(``trylast``), so DP clipping or secure aggregation, where listed, see the attacker's update as
a server would. ``result.json`` records the attacking clients in ``byzantine/clients``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from paralab import Middleware, hookimpl
from paralab_federated import ATTACKS
from paralab_federated.schedule import seeded

if TYPE_CHECKING:
    from paralab import RunContext, Update

__all__ = ["ATTACKS", "Byzantine", "attackers", "flipped_labels"]

BYZANTINE_STREAM = -3
"""Tag of the attackers' draw in the seed chain (``seeded(seed, BYZANTINE_STREAM)``)."""
STATE_KEY = "paralab_federated"


def attackers(n_clients: int, fraction: float, seed: int) -> list[int]:
    """The ``round(fraction * n_clients)`` Byzantine clients of a run, sorted."""
    count = round(fraction * n_clients)
    order = torch.randperm(n_clients, generator=seeded(seed, BYZANTINE_STREAM))
    return sorted(order[:count].tolist())


def flipped_labels(y: torch.Tensor, rows: torch.Tensor, n_classes: int) -> torch.Tensor:
    """A copy of ``y`` with ``rows`` relabelled ``n_classes - 1 - y``."""
    poisoned = y.clone()
    index = rows.to(y.device)
    poisoned[index] = n_classes - 1 - y[index]
    return poisoned


class Byzantine(Middleware):
    """Middleware: a chosen fraction of clients attack (see the module docstring)."""

    def __init__(self, attack: str = "sign_flip", fraction: float = 0.2, scale: float = 5.0,
                 seed: int | None = None) -> None:
        self.attack = attack
        self.fraction = float(fraction)
        self.scale = float(scale)
        self.seed = seed
        self.clients: list[int] | None = None

    def validate(self, run: RunContext) -> None:
        """Register with the protocol (it chooses the label-flipping rows); the attack needs
        at least one attacker, else it is a no-op that looks like a robustness result."""
        protocol = run.protocol
        n_clients = int(getattr(protocol, "clients", 0))
        if round(self.fraction * n_clients) < 1:
            raise ValueError(
                f"fraction = {self.fraction:g} of {n_clients} clients is no attacker "
                f"(round({self.fraction:g} * {n_clients}) = 0): raise fraction or clients"
            )
        run.state.setdefault(STATE_KEY, {})["byzantine"] = self

    def attacking(self, run: RunContext | None, n_clients: int) -> list[int]:
        if self.clients is None:
            seed = self.seed if self.seed is not None else (run.seed if run is not None else 0)
            self.clients = attackers(n_clients, self.fraction, int(seed))
            if run is not None:
                run.record("byzantine/clients", list(self.clients))
        return self.clients

    @hookimpl(wrapper=True, trylast=True)
    def paralab_process_update(self, run: RunContext, update: Update) -> Any:
        update = yield
        n_clients = int(update.info.get("num_clients", 0))
        if self.attack == "label_flip" or update.source not in self.attacking(run, n_clients):
            return update
        factor = -self.scale if self.attack == "sign_flip" else self.scale
        info = {**update.info, "byzantine": self.attack}
        return update.replace(delta={n: v * factor for n, v in update.delta.items()},
                              info=info)
