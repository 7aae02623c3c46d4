"""Where a round's client updates are computed: ``vmap`` (one computation), ``loop``, ``ray``.

A backend takes a :class:`RoundPlan` and the global parameters and returns each client's delta,
its local loss, and the clients whose update raised (with the error), so that the protocol can
report them, aggregate the rest, and fail the run when too many of a round's clients failed
(``max_client_failures``).
"""

from __future__ import annotations

import copy
import traceback
from dataclasses import dataclass, field

import torch
from torch import nn

from paralab_federated import BACKENDS
from paralab_federated.local_training import ExtraLoss, Params, VmapTrainer, train_client
from paralab_federated.schedule import RoundPlan, padded

__all__ = ["BACKENDS", "ClientResults", "LoopBackend", "VmapBackend", "describe"]


@dataclass
class ClientResults:
    """One round's client outcomes: deltas and losses of the clients that trained, and for
    those that raised, the error as text (``failures``, recorded in ``result.json``) and the
    exception itself (``errors``: the protocol re-raises the first one's origin when the round
    fails, so the run names the component that raised, e.g. a loss term)."""

    deltas: dict[int, Params] = field(default_factory=dict)
    losses: dict[int, float] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)
    errors: dict[int, BaseException] = field(default_factory=dict)

    def fail(self, client: int, error: BaseException) -> None:
        """Record that ``client``'s local training raised ``error``."""
        self.failures[client] = describe(error)
        self.errors[client] = error


def describe(error: BaseException) -> str:
    return traceback.format_exception_only(type(error), error)[-1].strip()


class LoopBackend:
    """Clients one after another on a scratch copy of the model (the reference path)."""

    name = "loop"

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 extra: ExtraLoss | None = None) -> None:
        self.model = copy.deepcopy(model)
        self.x, self.y, self.extra = x, y, extra

    def train(self, plan: RoundPlan, global_params: Params, lr: float, mu: float,
              clients: list[int] | None = None) -> ClientResults:
        results = ClientResults()
        for k in plan.clients if clients is None else clients:
            try:
                delta, loss = train_client(self.model, global_params, self.x, self.y,
                                           plan.batches[k], lr, mu, self.extra)
            except Exception as error:  # noqa: BLE001 - reported with the client id, round goes on
                results.fail(k, error)
                continue
            results.deltas[k], results.losses[k] = delta, loss
        return results


class VmapBackend:
    """The sampled clients train as one vectorized computation; a round whose vectorized step
    raises is rerun client by client, so that the failing client is found and skipped."""

    name = "vmap"

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.trainer = VmapTrainer(model)
        self.loop = LoopBackend(model, x, y)
        self.x, self.y = x, y

    def train(self, plan: RoundPlan, global_params: Params, lr: float, mu: float) -> ClientResults:
        clients = plan.clients
        if not clients:
            return ClientResults()
        try:
            rows, mask = padded(plan, clients)
            rows, mask = rows.to(self.x.device), mask.to(self.x.device)
            deltas, losses = self.trainer.train(global_params, self.x, self.y, rows, mask, lr, mu)
        except Exception:  # noqa: BLE001 - isolate the failing client on the loop path
            return self.loop.train(plan, global_params, lr, mu)
        results = ClientResults()
        for c, k in enumerate(clients):
            results.deltas[k] = {n: d[c] for n, d in deltas.items()}
            results.losses[k] = float(losses[c])
        return results
