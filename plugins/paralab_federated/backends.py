"""Where a round's client updates are computed: ``vmap`` (one computation), ``loop``, ``ray``.

A backend takes a :class:`RoundPlan` and the global parameters and returns each client's delta,
its local loss, and the clients whose update raised (with the error), so that the protocol can
report them, aggregate the rest, and fail the run when too many of a round's clients failed
(``max_client_failures``).

:class:`SeedsVmapBackend` is the seed axis's backend: the rounds of several seeds (one plan
and one global model each) as one vectorized computation, returning each seed's
:class:`ClientResults`.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from paralab_federated import BACKENDS
from paralab_federated.local_training import ExtraLoss, Params, VmapTrainer, train_client_state
from paralab_federated.schedule import RoundPlan, padded

__all__ = ["BACKENDS", "ClientResults", "LoopBackend", "SeedsVmapBackend", "VmapBackend",
           "describe"]


@dataclass
class ClientResults:
    """One round's client outcomes: deltas and losses of the clients that trained, and for
    those that raised, the error as text (``failures``, recorded in ``result.json``) and the
    exception itself (``errors``: the protocol re-raises the first one's origin when the round
    fails, so the run names the component that raised, e.g. a loss term)."""

    deltas: dict[int, Params] = field(default_factory=dict)
    losses: dict[int, float] = field(default_factory=dict)
    buffers: dict[int, Params] = field(default_factory=dict)
    """Client id -> its buffers after training (models with buffers only; they are
    aggregated beside the deltas: :mod:`paralab_federated.buffers`)."""
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
              clients: list[int] | None = None,
              buffers: dict[int, Params] | None = None, *, momentum: float = 0.0,
              corrections: dict[int, Params] | None = None,
              starts: dict[int, Params] | None = None) -> ClientResults:
        """``buffers``: client id -> the buffers that client starts from (the global ones,
        or under FedBN its own); None or empty: the model has none. ``corrections``: client
        id -> the constant added to its every gradient (SCAFFOLD's ``c - c_i``). ``starts``:
        client id -> the parameters it starts from (FedBN: its own local layers put in),
        else ``global_params``; its delta is taken from its start."""
        results = ClientResults()
        for k in plan.clients if clients is None else clients:
            start = start_buffers(buffers, k)
            try:
                delta, loss, final = train_client_state(
                    self.model, global_params if starts is None else starts[k], start,
                    self.x, self.y, plan.batches[k], lr, mu,
                    self.extra, momentum=momentum,
                    correction=None if corrections is None else corrections[k])
            except Exception as error:  # noqa: BLE001 - reported with the client id, round goes on
                results.fail(k, error)
                continue
            results.deltas[k], results.losses[k] = delta, loss
            if final:
                results.buffers[k] = final
        return results


def start_buffers(buffers: dict[int, Params] | None, client: int) -> Params | None:
    """The buffers ``client`` starts from (None: the model has none)."""
    return buffers.get(client) if buffers else None


class VmapBackend:
    """The sampled clients train as one vectorized computation; a round whose vectorized step
    raises is rerun client by client, so that the failing client is found and skipped."""

    name = "vmap"

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.trainer = VmapTrainer(model)
        self.loop = LoopBackend(model, x, y)
        self.x, self.y = x, y

    def train(self, plan: RoundPlan, global_params: Params, lr: float, mu: float,
              buffers: dict[int, Params] | None = None, *, momentum: float = 0.0,
              corrections: dict[int, Params] | None = None,
              starts: dict[int, Params] | None = None) -> ClientResults:
        clients = plan.clients
        if not clients:
            return ClientResults()
        options = {"momentum": momentum, "corrections": corrections}
        if buffers or starts is not None:  # models with buffers (and FedBN's) train on the
            return self.loop.train(plan, global_params, lr, mu,  # loop; never vmap them
                                   buffers=buffers, starts=starts, **options)
        try:
            rows, mask = padded(plan, clients)
            rows, mask = rows.to(self.x.device), mask.to(self.x.device)
            stacked = None if corrections is None else {
                n: torch.stack([corrections[k][n] for k in clients]) for n in global_params}
            deltas, losses = self.trainer.train(global_params, self.x, self.y, rows, mask, lr, mu,
                                                momentum=momentum, corrections=stacked)
        except Exception:  # noqa: BLE001 - isolate the failing client on the loop path
            return self.loop.train(plan, global_params, lr, mu, **options)
        results = ClientResults()
        for c, k in enumerate(clients):
            results.deltas[k] = {n: d[c] for n, d in deltas.items()}
            results.losses[k] = float(losses[c])
        return results


class SeedsVmapBackend:
    """The clients of several seeds' rounds (one plan and one global model per seed) train as
    one vectorized computation over ``K * C`` stacked client parameters, each client from its
    own seed's global parameters (and anchored there with FedProx).

    When the joint computation raises, each seed's round is rerun as its separate run would
    run it: on that seed's own :class:`VmapBackend` (``fallback(k)``), which itself falls back
    to the loop to find and skip the failing client.
    """

    name = "vmap"

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 fallback: Callable[[int], VmapBackend]) -> None:
        self.trainer = VmapTrainer(model)
        self.x, self.y = x, y
        self.fallback = fallback
        self._fallbacks: dict[int, VmapBackend] = {}

    def train(self, plans: Mapping[int, RoundPlan], params: Mapping[int, Params], lr: float,
              mu: float, momentum: float = 0.0) -> dict[int, ClientResults]:
        """Seed position -> its round's :class:`ClientResults` (what its own
        :meth:`VmapBackend.train` returns)."""
        slots = [(k, c) for k, plan in plans.items() for c in plan.clients]
        if not slots:
            return {k: ClientResults() for k in plans}
        try:
            deltas, losses = self._train_slots(slots, plans, params, lr, mu, momentum)
        except Exception:  # noqa: BLE001 - each seed as its separate run: vmap, then the loop
            return {k: self._fallback(k).train(plan, params[k], lr, mu, momentum=momentum)
                    for k, plan in plans.items()}
        results = {k: ClientResults() for k in plans}
        for i, ((k, c), loss) in enumerate(zip(slots, losses.tolist())):
            results[k].deltas[c] = {n: d[i] for n, d in deltas.items()}
            results[k].losses[c] = loss
        return results

    def _train_slots(self, slots: list[tuple[int, int]], plans: Mapping[int, RoundPlan],
                     params: Mapping[int, Params], lr: float, mu: float,
                     momentum: float = 0.0) -> tuple[Params, torch.Tensor]:
        """One :meth:`VmapTrainer.train_from` over every ``(seed, client)`` slot, in order."""
        joint = RoundPlan(-1, [], list(range(len(slots))), [],
                          batches={i: plans[k].batches[c] for i, (k, c) in enumerate(slots)})
        rows, mask = padded(joint, joint.clients)
        rows, mask = rows.to(self.x.device), mask.to(self.x.device)
        counts = {k: len(plan.clients) for k, plan in plans.items() if plan.clients}
        names = list(params[next(iter(counts))])
        starts = {n: torch.cat([params[k][n].unsqueeze(0).expand(count, *params[k][n].shape)
                                for k, count in counts.items()])
                  for n in names}
        return self.trainer.train_from(starts, self.x, self.y, rows, mask, lr, mu,
                                       momentum=momentum)

    def _fallback(self, k: int) -> VmapBackend:
        if k not in self._fallbacks:
            self._fallbacks[k] = self.fallback(k)
        return self._fallbacks[k]
