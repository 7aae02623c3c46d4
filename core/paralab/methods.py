"""Gradient methods: the ready implementation of :class:`paralab.interfaces.GradientMethod`.

An :class:`OptimizerMethod` owns a torch optimizer and takes one step on a batch; its loss is
the protocol's objective (cross-entropy by default) plus the spec's loss terms
(``run.extra_loss``), so a fairness penalty or a semantic loss applies under every protocol
that steps through a gradient method. Plugins subclass it (continual strategies) and override
:meth:`~OptimizerMethod.loss` or :meth:`~OptimizerMethod.step`.

Options are declared in the method's spec (``paralab.builtin``), so a bad ``lr`` is a spec
error before anything is built; the constructors here trust their arguments.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from paralab.context import Batch
from paralab.interfaces import GradientMethod

if TYPE_CHECKING:
    from paralab.context import RunContext


_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def adam(parameters: Iterable[torch.nn.Parameter], **options: float) -> torch.optim.Adam:
    """``torch.optim.Adam``, fused into one kernel per step wherever torch has one for every
    parameter (CPU and CUDA, real floating point); torch's own default on a CPU is a Python
    loop over the parameters, measured at a third of a small network's training step (MNIST
    addition at batch 2: 0.30 of 0.92 ms). Same update; ``tests/test_methods.py`` checks it."""
    params = list(parameters)
    fused = bool(params) and all(
        p.device.type in ("cpu", "cuda") and p.dtype in _FUSED_DTYPES for p in params
    )
    return torch.optim.Adam(params, fused=True if fused else None, **options)


def clear_gradients(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.zero_grad(set_to_none=True)`` without its profiler hooks: the same effect,
    measured at ~40 us of a ~0.7 ms small-network step on a CPU."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            parameter.grad = None


class OptimizerMethod(GradientMethod):
    """Minibatch training with a torch optimizer: subclasses say which (:meth:`make_optimizer`)."""

    def __init__(self, lr: float = 0.05, weight_decay: float = 0.0) -> None:
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer: torch.optim.Optimizer | None = None

    def make_optimizer(self, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        raise NotImplementedError

    def setup(self, run: RunContext | None, model: torch.nn.Module) -> None:
        """Create the optimizer for ``model`` (called by the protocol before training)."""
        self.optimizer = self.make_optimizer(model.parameters())

    def loss(self, run: RunContext | None, batch: Batch) -> torch.Tensor:
        """The protocol's objective (cross-entropy unless ``batch.objective`` says otherwise)
        plus the spec's loss terms."""
        if batch.objective is not None:
            value = batch.objective(batch)
        else:
            value = F.cross_entropy(batch.logits, batch.targets)
        if run is not None:
            value = value + run.extra_loss(batch)
        return value

    def step(
        self,
        run: RunContext | None,
        model: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        indices: torch.Tensor,
        objective: Any = None,
    ) -> float:
        """One optimizer step on a batch; returns the batch loss."""
        if self.optimizer is None:
            self.setup(run, model)
        assert self.optimizer is not None
        logits = model(x)
        loss = self.loss(run, Batch(x, y, indices, logits, model, run, objective=objective))
        clear_gradients(self.optimizer)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


class SGD(OptimizerMethod):
    """Stochastic gradient descent (with optional momentum)."""

    def __init__(self, lr: float = 0.05, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.momentum = momentum

    def make_optimizer(self, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            parameters, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )


class Adam(OptimizerMethod):
    """Adam."""

    def __init__(self, lr: float = 0.001, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)

    def make_optimizer(self, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return adam(parameters, lr=self.lr, weight_decay=self.weight_decay)
