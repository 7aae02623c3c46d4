"""The ``supervised`` protocol for K seeds at once (``ProtocolSpec.seed_axis``).

What each seed does is :meth:`paralab.protocols.supervised.Supervised.execute`'s plain path,
step for step: per epoch ``torch.randperm`` of the train split from the seed's own
``run.generator`` (the order :meth:`DataView.batches` draws), minibatches of ``batch_size``
in that order, cross-entropy, one optimizer step, and the epoch phase with ``train/loss`` and
the evaluations every ``eval_every`` epochs. The K seeds' steps are one stacked step: the
inputs ``(K, batch, ...)`` through :class:`~paralab.stacked.StackedModel`, the K mean losses
summed (so each seed's parameters get exactly its own gradient) and one optimizer over the
stacked parameters, built by the run's own method (``make_optimizer``): SGD and Adam update
each element alone, so the stacked update is each seed's update.

Stacked only where that is the whole of the step: an :class:`~paralab.OptimizerMethod` that
changes neither ``step``, ``loss`` nor ``setup`` (``sgd``, ``adam``) with an elementwise torch
optimizer, no loss terms, no middleware on gradients, shuffled (not Poisson) batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from paralab.methods import GRADIENT_HOOK, OptimizerMethod, clear_gradients

if TYPE_CHECKING:
    from paralab.context import RunContext
    from paralab.protocols.supervised import Supervised
    from paralab.seed_axis import SeedAxis

ELEMENTWISE_OPTIMIZERS: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop,
    torch.optim.Adagrad, torch.optim.Adamax, torch.optim.NAdam, torch.optim.RAdam,
)
"""Optimizers whose update of a parameter element reads only that element's gradient and
state: stacking seeds along a new first dimension leaves each seed's update unchanged."""


def plain_optimizer_method(method: Any) -> str:
    """Why ``method``'s step is not a plain optimizer step (``""`` when it is)."""
    if not isinstance(method, OptimizerMethod):
        return f"method {type(method).__name__} is not a paralab.OptimizerMethod"
    kind = type(method)
    for member in ("step", "loss", "setup", "private_step"):
        if getattr(kind, member) is not getattr(OptimizerMethod, member):
            return (f"method {kind.__name__} overrides OptimizerMethod.{member}, so its step "
                    "is not only the optimizer's")
    probe = torch.nn.Parameter(torch.zeros(1))
    try:
        optimizer = method.make_optimizer([probe])
    except Exception as error:  # noqa: BLE001 - any failure: not stackable, say why
        return f"method {kind.__name__}.make_optimizer raised {type(error).__name__}: {error}"
    if type(optimizer) not in ELEMENTWISE_OPTIMIZERS:
        return (f"method {kind.__name__} uses {type(optimizer).__name__}, which is not an "
                f"elementwise optimizer ({', '.join(o.__name__ for o in ELEMENTWISE_OPTIMIZERS)})")
    return ""


class SupervisedSeeds:
    """``seed_axis_why_not`` and ``execute_seeds`` of a :class:`Supervised` protocol."""

    def __init__(self, protocol: Supervised) -> None:
        self.protocol = protocol

    def seed_axis_why_not(self, runs: list[RunContext]) -> str:
        protocol = self.protocol
        if protocol.sampling == "poisson":
            return "sampling = 'poisson' draws batches of random size per seed"
        for run in runs:
            if run.hooks.has_middleware_for(GRADIENT_HOOK):
                return (f"{', '.join(run.hooks.middleware_for(GRADIENT_HOOK))} acts on "
                        "per-example gradients")
            if run.loss_terms:
                return (f"loss terms {sorted(run.loss_terms)} see one seed's batch at a time "
                        "(not stacked yet)")
            why = plain_optimizer_method(run.method)
            if why:
                return why
        return ""

    def execute_seeds(self, runs: list[RunContext], axis: SeedAxis) -> None:
        protocol = self.protocol
        stacked = axis.model
        first = runs[0]
        train = first.dataset.split(protocol.train_split)
        n, batch_size = len(train), protocol.batch_size
        dataset = first.dataset
        stacked.train()
        for run in runs:
            run.model.train()
        optimizer = first.method.make_optimizer(stacked.parameters)
        axis.progress(protocol.epochs)
        for epoch in range(protocol.epochs):
            with axis.phases("epoch", epoch) as phases:
                # Each seed's epoch order, drawn as DataView.batches draws it.
                orders = torch.stack([
                    train.indices[torch.randperm(n, generator=run.generator, device="cpu")
                                  .to(train.indices.device)]
                    for run in runs
                ])
                losses = []
                for start in range(0, n, batch_size):
                    index = orders[:, start:start + batch_size]
                    losses.append(_step(stacked, optimizer, dataset.x[index], dataset.y[index]))
                table = torch.stack(losses).tolist() if losses else []
                evaluate = (epoch + 1) % protocol.eval_every == 0 or epoch + 1 == protocol.epochs
                for k, phase in phases.items():
                    with axis.guard(k, "protocol", runs[k].spec.protocol.name):
                        total = 0.0
                        for row in table:  # the single run's float sum, step by step
                            total += row[k]
                        phase.metrics["train/loss"] = total / max(len(table), 1)
                        if evaluate:
                            for split in protocol.eval_splits:
                                runs[k].evaluate(split)


def _step(stacked: Any, optimizer: torch.optim.Optimizer, x: torch.Tensor,
          y: torch.Tensor) -> torch.Tensor:
    """One optimizer step of every seed: ``(K,)`` mean cross-entropies (no device sync)."""
    logits = stacked(x)
    k, batch = logits.shape[0], logits.shape[1]
    per_seed = F.cross_entropy(logits.reshape(k * batch, -1), y.reshape(-1),
                               reduction="none").view(k, batch).mean(1)
    clear_gradients(optimizer)
    per_seed.sum().backward()
    optimizer.step()
    return per_seed.detach()
