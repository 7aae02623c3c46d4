"""The ``federated`` protocol for K seeds at once (seeds x clients): :func:`paralab.run_seeds`.

:class:`Federated` is the protocol of :mod:`paralab_federated.protocol` plus the seed axis
(``ProtocolSpec(seed_axis=True)``): ``seed_axis_why_not(runs)`` and ``execute_seeds(runs,
axis)``. Each seed keeps all of its own run: its partition (made by its own protocol object
from its seed), each round's sampled clients, stragglers and minibatches (``plan_round`` with
its seed), its global parameters, its method object (the server step and, for FedAdam and
FedYogi, the server optimizer's moments), its aggregation, evaluations (global and per
client), target-accuracy stop, client failures, phases and folder. What is shared is the
local training: in every round the sampled clients of all running seeds train as one
vectorized computation over ``K * C`` stacked client parameters
(:class:`~paralab_federated.backends.SeedsVmapBackend`), each client starting from its own
seed's global parameters and, with FedProx, anchored at them. A seed that reaches its target
accuracy (or fails) leaves that computation; the others go on.

Per seed this is the run its ``backend = "vmap"`` separate run makes: the same plans, the
same per-client arithmetic (one ``vmap`` of the same gradient step, now over more clients;
the padded minibatches are wider or longer where another seed's client has more rows, and the
batched kernels may sum in another order: the tests measure the difference), and everything
after the clients' training goes through the single run's own code
(:meth:`~paralab_federated.protocol.Federated.conclude_round`).

Stacked: ``fedsgd``, ``fedavg``, ``fedavgm``, ``fedprox``, ``fedadam``, ``fedyogi`` and
``fedadagrad``, with or without ``client_momentum`` (the exact classes:
their client step is the shared local SGD and their server step is each seed's own) on the
``vmap`` backend. Seeds run one after another (``seed_axis_why_not`` says why) with the
``loop`` or ``ray`` backend, a model the vmap backend would train on the loop, loss terms,
middleware on client updates (DP-FedAvg, secure aggregation), or any other method.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from paralab_federated.backends import ClientResults, SeedsVmapBackend, VmapBackend
from paralab_federated.local_training import Params, vmap_unsupported
from paralab_federated.methods import (
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedProx,
    FedSGD,
    FedYogi,
)
from paralab_federated.protocol import STATE_KEY, _bytes, _untouched_rng
from paralab_federated.protocol import Federated as SingleFederated

if TYPE_CHECKING:
    from paralab import Phase, RunContext, SeedAxis
    from paralab_federated.schedule import RoundPlan

UPDATE_HOOK = "paralab_process_update"

STACKED_METHODS = (FedSGD, FedAvg, FedAvgM, FedProx, FedAdam, FedYogi, FedAdagrad)
"""Strategies whose client step is the shared local SGD at ``lr`` (FedProx: plus its proximal
term at ``mu``) and whose server step reads only that seed's own state (the exact classes: a
subclass may change either)."""

BACKEND_REASONS = {
    "loop": ("backend = 'loop' trains one client at a time (the reference path): it has no "
             "vectorized form to stack seeds into; use backend = 'vmap'"),
    "ray": ("backend = 'ray' trains each client in a Ray worker, one task per client: there "
            "is no shared computation to stack seeds into; use backend = 'vmap'"),
    "flower": ("backend = 'flower' trains each client on its own SuperNode: there is no "
               "shared computation to stack seeds into; use backend = 'vmap'"),
}


@dataclass
class _Seat:
    """One seed's server side between rounds."""

    seed: int
    epochs: int
    batch_size: int | None
    params: Params
    model_bytes: int


class Federated(SingleFederated):
    """The ``federated`` protocol; K seeds of one configuration can run stacked."""

    # ------------------------------------------------------------------------- checking

    def seed_axis_why_not(self, runs: list[RunContext]) -> str:
        """Why these runs cannot train stacked (``""``: they can)."""
        first = runs[0]
        for run in runs:
            why = _why_not_run(run, first)
            if why:
                return why
        with _untouched_rng(first.dataset.x.device):
            reason = vmap_unsupported(first.model, first.dataset.x, first.dataset.y)
        if reason:
            return (f"the vmap backend cannot train model {first.spec.model.name!r} ({reason}) "
                    f"and trains its clients on the loop, one at a time")
        return ""

    # -------------------------------------------------------------------------- running

    def execute_seeds(self, runs: list[RunContext], axis: SeedAxis) -> None:
        """:meth:`execute` for every run of ``axis`` at once (client training stacked)."""
        protocols = [self_of(run) for run in runs]
        seats: dict[int, _Seat] = {}
        for k in range(len(runs)):
            seat = _seat(axis, k, protocols[k])
            if seat is not None:  # else seed k failed (as its run would fail) before round 0
                seats[k] = seat
        first = runs[0]
        x, y = first.dataset.x, first.dataset.y
        backend = SeedsVmapBackend(first.model, x, y,
                                   lambda k: VmapBackend(_own_copy(runs[k].model), x, y))
        lr, mu = first.method.lr, first.method.mu
        momentum = float(getattr(first.method, "client_momentum", 0.0))
        running = set(seats)
        axis.progress(self.rounds)
        for r in range(self.rounds):
            plans = _plans(axis, protocols, seats, [k for k in axis.active() if k in running], r)
            if not plans:
                break

            def info(k: int, plans: dict[int, RoundPlan] = plans) -> dict[str, Any]:
                return {"clients": plans[k].clients, "dropped": plans[k].dropped}

            with axis.phases("round", r, info, positions=list(plans)) as phases:
                results = backend.train({k: plans[k] for k in phases},
                                        {k: seats[k].params for k in phases}, lr, mu,
                                        momentum)
                for k, phase in phases.items():
                    if self_of(runs[k])._conclude(axis, k, phase, plans[k], results[k],
                                                  seats[k]):
                        running.discard(k)
        for k, run in axis.each():
            with axis.guard(k, "protocol", run.spec.protocol.name):
                protocols[k].finish(run)

    def _conclude(self, axis: SeedAxis, k: int, phase: Phase, plan: RoundPlan,
                  results: ClientResults, seat: _Seat) -> bool:
        """Seed ``k``'s round after its clients trained (its own run's code); True when it
        reached its target accuracy (it then leaves the stacked computation)."""
        run = axis.runs[k]
        reached = False
        with axis.guard(k, "protocol", run.spec.protocol.name):
            seat.params, reached = self.conclude_round(run, phase.metrics, plan, results,
                                                       seat.params, seat.model_bytes)
        return reached and k not in axis.failed


def self_of(run: RunContext) -> Federated:
    """The run's own protocol object (each seed has one, holding its partition)."""
    protocol = run.protocol
    assert isinstance(protocol, Federated)
    return protocol


def _why_not_run(run: RunContext, first: RunContext) -> str:
    """Why ``run`` cannot train stacked with ``first``'s (``""``: it can)."""
    protocol = run.protocol
    if type(protocol) is not Federated:
        return (f"protocol object {type(protocol).__name__} is not paralab_federated's "
                f"Federated (a subclass may change a round)")
    if protocol.backend != "vmap":
        return BACKEND_REASONS.get(protocol.backend, f"backend = {protocol.backend!r}")
    if run.loss_terms:
        return (f"loss terms {sorted(run.loss_terms)}: the vmap backend trains a spec with loss "
                f"terms on the loop, one client at a time (they see one run's batch)")
    acting = run.hooks.middleware_for(UPDATE_HOOK)
    if acting:
        return (f"middleware {list(acting)} processes each client update of one run "
                f"(DP-FedAvg's clipping and noise, secure aggregation's pairwise masks)")
    method = run.method
    if type(method) not in STACKED_METHODS:
        names = ", ".join(m.__name__ for m in STACKED_METHODS)
        return (f"method {run.spec.method.name!r} ({type(method).__name__}) is not one whose "
                f"client step is the shared local SGD and whose server step is its own "
                f"(stacked: the exact classes {names})")
    if (method.lr, method.mu, method.client_momentum, type(method)) != (
            first.method.lr, first.method.mu, first.method.client_momentum,
            type(first.method)):
        return ("the seeds' methods differ (client lr, mu or client_momentum): one stacked "
                "step needs one")
    if run.dataset.x is not first.dataset.x or run.dataset.y is not first.dataset.y:
        return ("the seeds' datasets are different tensors (the clients of one stacked step "
                "index one dataset)")
    return ""


def _seat(axis: SeedAxis, k: int, protocol: Federated) -> _Seat | None:
    """Seed ``k``'s start, as :meth:`Federated.execute` starts a run (None: it failed)."""
    run = axis.runs[k]
    seat = None
    with axis.guard(k, "protocol", run.spec.protocol.name):
        partition = protocol.make_partition(run)
        protocol._begin(run, partition, SeedsVmapBackend.name)
        epochs, batch_size = run.method.client_settings(protocol.local_epochs,
                                                        protocol.batch_size)
        # Contiguous copies, as the separate run's parameters_of gives: the seed's module
        # holds transposed views of the stacked model's tensors.
        params = {name: p.detach().clone(memory_format=torch.contiguous_format)
                  for name, p in run.model.named_parameters() if p.requires_grad}
        run.method.setup(params)
        protocol._live = {"rounds_done": 0, "stopped": False,
                          "totals": {"sent": 0, "received": 0}}
        seat = _Seat(protocol._seed(run), epochs, batch_size, params, _bytes(params))
    return seat


def _plans(axis: SeedAxis, protocols: list[Federated], seats: dict[int, _Seat],
           positions: list[int], r: int) -> dict[int, RoundPlan]:
    """Round ``r``'s plan of each seed at ``positions``, from its own partition and seed."""
    plans = {}
    for k in positions:
        run, seat = axis.runs[k], seats[k]
        with axis.guard(k, "protocol", run.spec.protocol.name):
            partition = run.state[STATE_KEY]["partition"]
            plans[k] = protocols[k].plan(partition, r, seat.seed, seat.epochs, seat.batch_size)
    return plans


def _own_copy(model: nn.Module) -> nn.Module:
    """A copy of a seed's module with contiguous parameters of its own (the module itself
    holds views of the stacked model): what that seed's separate run trains on its loop."""
    clone = copy.deepcopy(model)
    for parameter in clone.parameters():
        parameter.data = parameter.data.contiguous()
    return clone
