"""Client-side training: one client at a time (loop) or all of a round's clients at once (vmap).

Both do the same local SGD on the same minibatches: cross-entropy (plus FedProx's proximal
term ``mu/2 * ||w - w_global||^2``) minimized with SGD at the client learning rate, with
optional heavy-ball ``momentum`` (``torch.optim.SGD``'s: ``b <- momentum * b + g``, ``w <- w -
lr * b``, the buffer fresh each round) and an optional constant per-client gradient
``correction`` added to every step's gradient (SCAFFOLD's ``c - c_i``). The
loop uses ``torch.optim.SGD`` on a copy of the model; the vectorized path stacks the clients'
parameters along a new first dimension and takes every client's step in one
``torch.func.vmap(grad(functional_call(...)))`` call, the minibatches padded and masked to equal
length. The loop is the reference that the vmap path is tested against.

:meth:`VmapTrainer.train_from` is the same computation for clients that start from different
global models (the clients of several seeds' rounds, :mod:`paralab_federated.vectorized`):
each stacked client starts from, and with FedProx is anchored at, its own row of the stacked
starting parameters.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Params = dict[str, torch.Tensor]
ExtraLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, nn.Module],
                     torch.Tensor | float]
"""``extra(logits, x, y, rows, model)``: the spec's loss terms on one minibatch."""


def parameters_of(model: nn.Module) -> Params:
    """The model's trainable parameters, detached copies keyed by name."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def load_parameters(model: nn.Module, params: Params) -> None:
    with torch.no_grad():
        named = dict(model.named_parameters())
        for name, value in params.items():
            named[name].copy_(value)


def buffers_of(model: nn.Module) -> Params:
    """The model's buffers (batch-norm running statistics and counters), detached copies."""
    return {name: b.detach().clone() for name, b in model.named_buffers()}


def load_buffers(model: nn.Module, buffers: Params) -> None:
    with torch.no_grad():
        named = dict(model.named_buffers())
        for name, value in buffers.items():
            named[name].copy_(value)


def proximal(params: Params | dict[str, nn.Parameter], anchor: Params, mu: float) -> torch.Tensor:
    """FedProx's term ``mu/2 * sum ||w - w_global||^2`` (Li et al. 2020)."""
    return 0.5 * mu * sum(((params[n] - anchor[n]) ** 2).sum() for n in anchor)


def train_client(model: nn.Module, global_params: Params, x: torch.Tensor, y: torch.Tensor,
                 batches: list[torch.Tensor], lr: float, mu: float = 0.0,
                 extra: ExtraLoss | None = None, *, momentum: float = 0.0,
                 correction: Params | None = None) -> tuple[Params, float]:
    """Local SGD of one client from ``global_params``; returns ``(delta, mean batch loss)``.

    ``model`` is a scratch copy the caller owns: its parameters are overwritten.
    """
    delta, loss, _ = train_client_state(model, global_params, None, x, y, batches, lr, mu,
                                        extra, momentum=momentum, correction=correction)
    return delta, loss


def train_client_state(model: nn.Module, global_params: Params, start_buffers: Params | None,
                       x: torch.Tensor, y: torch.Tensor, batches: list[torch.Tensor], lr: float,
                       mu: float = 0.0, extra: ExtraLoss | None = None, *,
                       momentum: float = 0.0, correction: Params | None = None,
                       anchor: Params | None = None) -> tuple[Params, float, Params]:
    """:func:`train_client` for a model with buffers: the scratch model's buffers are set to
    ``start_buffers`` first (else one client would start from the statistics the previous
    client left in the scratch copy) and the client's buffers after training come back as a
    third value (``{}`` for a model without buffers). The proximal term is anchored at
    ``anchor`` (default: the start, ``global_params``; Ditto's personal model is anchored at
    the global model while starting from its own)."""
    load_parameters(model, global_params)
    if start_buffers:
        load_buffers(model, start_buffers)
    model.train()
    named = {n: p for n, p in model.named_parameters() if n in global_params}
    optimizer = torch.optim.SGD(named.values(), lr=lr, momentum=momentum)
    total = 0.0
    for rows in batches:
        rows = rows.to(x.device)
        xb, yb = x[rows], y[rows]
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        if extra is not None:
            loss = loss + extra(logits, xb, yb, rows, model)
        if mu:
            loss = loss + proximal(named, global_params if anchor is None else anchor, mu)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if correction is not None:  # SCAFFOLD: g + (c - c_i) at every step
            for n, p in named.items():
                p.grad.add_(correction[n])
        optimizer.step()
        total += float(loss.detach())
    delta = {n: named[n].detach() - global_params[n] for n in global_params}
    return delta, total / max(len(batches), 1), buffers_of(model) if start_buffers else {}


class VmapTrainer:
    """Every client of a round trains as one computation over stacked parameters."""

    def __init__(self, model: nn.Module) -> None:
        from torch.func import functional_call, grad_and_value, vmap

        self.model = copy.deepcopy(model)
        self.model.train()
        self._functional_call = functional_call
        self._grad_and_value = grad_and_value
        self._vmap = vmap
        self._step_fns: dict[tuple[float, bool], Callable[..., tuple[Params, torch.Tensor]]] = {}

    def _step_fn(self, mu: float, per_client_anchor: bool = False
                 ) -> Callable[..., tuple[Params, torch.Tensor]]:
        """The vmapped gradient step; FedProx's anchor is shared by every client (one round
        of one run) or, with ``per_client_anchor``, stacked like the clients' parameters
        (clients of several seeds, each anchored at its own seed's global model)."""
        key = (mu, per_client_anchor)
        if key not in self._step_fns:
            model, call = self.model, self._functional_call

            def loss(params: Params, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                     anchor: Params) -> torch.Tensor:
                logits = call(model, params, (x,))
                per_row = F.cross_entropy(logits, y, reduction="none")
                weights = mask.to(per_row.dtype)
                value = (per_row * weights).sum() / weights.sum().clamp(min=1.0)
                if mu:
                    value = value + proximal(params, anchor, mu)
                return value

            anchor_dim = 0 if per_client_anchor else None
            self._step_fns[key] = self._vmap(
                self._grad_and_value(loss), in_dims=(0, 0, 0, 0, anchor_dim),
                randomness="different"
            )
        return self._step_fns[key]

    def train(self, global_params: Params, x: torch.Tensor, y: torch.Tensor,
              rows: torch.Tensor, mask: torch.Tensor, lr: float,
              mu: float = 0.0, *, momentum: float = 0.0,
              corrections: Params | None = None) -> tuple[Params, torch.Tensor]:
        """Train ``C`` clients on ``rows``/``mask`` of shape ``(C, steps, batch)``;
        ``corrections[name]`` (``(C, *shape)``, optional) is added to client ``c``'s gradient
        at each of its steps (SCAFFOLD).

        Returns the stacked deltas (first dimension the client) and each client's mean loss.
        """
        n_clients = rows.shape[0]
        stacked = {n: p.unsqueeze(0).repeat(n_clients, *([1] * p.dim()))
                   for n, p in global_params.items()}
        losses = self._descend(stacked, global_params, self._step_fn(mu), x, y, rows, mask, lr,
                               momentum, corrections)
        deltas = {n: stacked[n].sub_(global_params[n].unsqueeze(0)) for n in stacked}
        return deltas, losses

    def train_from(self, starts: Params, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
                   mask: torch.Tensor, lr: float,
                   mu: float = 0.0, *, momentum: float = 0.0) -> tuple[Params, torch.Tensor]:
        """Train ``N`` clients, each from its own starting parameters: ``starts[name]`` is
        ``(N, *shape)``, row ``i`` the global model client ``i`` starts from and, with FedProx,
        the anchor of its proximal term. The clients of several seeds' rounds train this way
        as one computation (:mod:`paralab_federated.vectorized`), each seed's clients from
        that seed's global model; each client's arithmetic is that of :meth:`train`.

        Returns the stacked deltas and each client's mean loss, as :meth:`train` does.
        """
        stacked = {n: p.clone() for n, p in starts.items()}
        step = self._step_fn(mu, per_client_anchor=True)
        losses = self._descend(stacked, starts, step, x, y, rows, mask, lr, momentum)
        deltas = {n: stacked[n].sub_(starts[n]) for n in stacked}
        return deltas, losses

    @staticmethod
    def _descend(stacked: Params, anchor: Params, step: Callable[..., tuple[Params, torch.Tensor]],
                 x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, mask: torch.Tensor,
                 lr: float, momentum: float = 0.0,
                 corrections: Params | None = None) -> torch.Tensor:
        """The local SGD steps of every client, in place on ``stacked``; each client's mean
        loss over the steps it took (a padded step moves no parameter and, with
        ``momentum``, leaves its buffer as it was)."""
        n_clients, steps = rows.shape[0], rows.shape[1]
        active = mask.any(dim=2)
        losses = torch.zeros(n_clients, dtype=torch.float64, device=rows.device)
        buffers: Params = {}
        for s in range(steps):
            index = rows[:, s]
            grads, values = step(stacked, x[index], y[index], mask[:, s], anchor)
            moving = active[:, s]
            scale = -lr * moving.to(next(iter(stacked.values())).dtype)
            for n in stacked:
                shape = (-1, *([1] * (stacked[n].dim() - 1)))
                g = grads[n] if corrections is None else grads[n] + corrections[n]
                if momentum:
                    # torch.optim.SGD: the first step's buffer is the gradient itself.
                    previous = buffers.get(n)
                    fresh = g if previous is None else momentum * previous + g
                    g = fresh if previous is None else torch.where(
                        moving.view(shape), fresh, previous)
                    buffers[n] = g
                stacked[n].addcmul_(scale.view(shape), g)
            losses += torch.where(moving, values.detach().double(), 0.0)
        counts = active.sum(dim=1).clamp(min=1).double()
        return losses / counts


def vmap_unsupported(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> str:
    """Why this model cannot train under vmap (``""`` when it can), from one tiny probe step.

    A model with buffers (batch-norm running statistics) trains on the loop: the vmap path
    pads short minibatches with masked rows, which batch norm would count in its batch
    statistics and running averages, so its clients would not train as the loop's do."""
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        return (f"the model has buffers ({', '.join(buffers[:3])}{', ...' if len(buffers) > 3 else ''}"
                f"), whose batch statistics would count the padded rows of the vmap path")
    try:
        probe = VmapTrainer(model)
        params = parameters_of(probe.model)
        rows = torch.zeros(2, 1, 2, dtype=torch.long, device=x.device)
        rows[1, 0, 1] = min(1, len(x) - 1)
        mask = torch.ones(2, 1, 2, dtype=torch.bool, device=x.device)
        probe.train(params, x, y, rows, mask, lr=0.01, mu=0.01)
    except Exception as error:  # noqa: BLE001 - any failure means: use the loop
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return ""
