"""Gradient methods: the ready implementation of :class:`paralab.interfaces.GradientMethod`.

An :class:`OptimizerMethod` owns a torch optimizer and takes one step on a batch; its loss is
the protocol's objective (cross-entropy by default) plus the spec's loss terms
(``run.extra_loss``), so a fairness penalty or a semantic loss applies under every protocol
that steps through a gradient method. Plugins subclass it (continual strategies) and override
:meth:`~OptimizerMethod.loss` or :meth:`~OptimizerMethod.step`.

When the run's middleware acts on per-example gradients (``paralab_process_gradients``, the
``dp`` middleware's DP-SGD), :meth:`OptimizerMethod.step` computes each example's gradient with
``torch.func`` (``vmap`` of ``grad`` of a ``functional_call``, as Opacus does), passes them
through the middleware as :class:`PerExampleGradients` and applies what comes back; otherwise it
takes the plain batched step, unchanged.

Options are declared in the method's spec (``paralab.builtin``), so a bad ``lr`` is a spec
error before anything is built; the constructors here trust their arguments.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from paralab.context import Batch, ComponentFailure
from paralab.interfaces import GradientMethod

if TYPE_CHECKING:
    from paralab.context import RunContext


_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

GRADIENT_HOOK = "paralab_process_gradients"
"""The middleware hook that sees each example's gradient before the optimizer applies them."""


@dataclass(frozen=True)
class PerExampleGradients:
    """One batch's gradients, example by example, on their way to the optimizer (the value of
    ``paralab_process_gradients``).

    The optimizer applies :meth:`gradient`: ``summed`` (or, while no middleware has set it, the
    sum of ``per_example`` over its first dimension) divided by ``batch_size``. DP-SGD clips each
    row of ``per_example``, sets ``summed`` to the clipped sum plus Gaussian noise, and keeps
    ``batch_size`` (the expected batch size under Poisson sampling, so that the divisor does not
    depend on who was sampled).

    >>> import torch
    >>> g = PerExampleGradients({"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]])}, batch_size=2)
    >>> g.rows, g.gradient()["w"].tolist()
    (2, [2.0, 3.0])
    """

    per_example: dict[str, torch.Tensor]
    """Parameter name -> ``(rows, *parameter shape)``: row ``i`` is the gradient of example
    ``i``'s term of the loss (the method's :meth:`~OptimizerMethod.loss` on a batch of one)."""
    batch_size: float
    """What the summed gradient is divided by: the number of rows for fixed batches, the
    expected batch size when the protocol samples batches by Poisson (``info["sampling"]``)."""
    summed: dict[str, torch.Tensor] | None = None
    """The sum to apply, once a middleware has replaced the plain sum of ``per_example``."""
    info: dict[str, Any] = field(default_factory=dict)
    """``sampling`` (the protocol's ``{"scheme", "sample_rate", "expected_batch_size"}``, from the
    open phase's ``info``), ``phase`` (``(kind, index)``) and what middleware adds."""

    @property
    def rows(self) -> int:
        """Examples in this batch (0 is possible under Poisson sampling)."""
        first = next(iter(self.per_example.values()), None)
        return 0 if first is None else int(first.shape[0])

    def total(self) -> dict[str, torch.Tensor]:
        """``summed``, or the plain sum of ``per_example`` over the examples."""
        if self.summed is not None:
            return self.summed
        return {name: rows.sum(0) for name, rows in self.per_example.items()}

    def gradient(self) -> dict[str, torch.Tensor]:
        """What the optimizer applies: :meth:`total` divided by ``batch_size``."""
        divisor = max(float(self.batch_size), 1.0)
        return {name: value / divisor for name, value in self.total().items()}

    def replace(self, **changes: Any) -> PerExampleGradients:
        return replace(self, **changes)


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


class _LossOfOne(torch.nn.Module):
    """The method's loss on a batch as one module, so that ``functional_call`` swaps the model's
    parameters for the whole loss: logits, loss terms and any penalty a subclass's
    :meth:`~OptimizerMethod.loss` reads from ``model.parameters()``."""

    def __init__(self, method: OptimizerMethod, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        object.__setattr__(self, "method", method)  # not a submodule: no parameters of its own

    def forward(self, run: RunContext, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor,
                objective: Any) -> torch.Tensor:
        logits = self.model(x)
        batch = Batch(x, y, indices, logits, self.model, run, objective=objective)
        return self.method.loss(run, batch)


def per_example_gradients(
    method: OptimizerMethod,
    run: RunContext | None,
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    indices: torch.Tensor,
    objective: Any = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``({name: (rows, *shape)}, per-example losses (rows,))`` of ``method.loss`` on each
    example as a batch of one, for every trainable parameter of ``model``.

    One ``vmap(grad_and_value(functional_call(...)))`` over the examples (the functional
    per-sample gradients of Opacus' ``GradSampleModule`` with ``grad_sample_mode="functorch"``);
    dropout draws a mask per example (``randomness="different"``), as in a batch. Models whose
    layers mix the examples of a batch (batch norm) have no per-example gradient.
    """
    from torch.func import functional_call, grad_and_value, vmap

    names = [name for name, p in model.named_parameters() if p.requires_grad]
    params = {f"model.{name}": p.detach() for name, p in model.named_parameters()
              if p.requires_grad}
    if len(x) == 0:  # an empty Poisson batch: no example, no gradient (the noise still counts)
        zeros = {name: torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
                 for name, p in model.named_parameters() if p.requires_grad}
        return zeros, torch.zeros(0, device=x.device)
    whole = _LossOfOne(method, model)

    def loss_of_one(weights: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor,
                    ii: torch.Tensor) -> torch.Tensor:
        args = (run, xi.unsqueeze(0), yi.unsqueeze(0), ii.unsqueeze(0), objective)
        return functional_call(whole, weights, args)

    try:
        grads, losses = vmap(grad_and_value(loss_of_one), in_dims=(None, 0, 0, 0),
                             randomness="different")(params, x, y, indices)
    except ComponentFailure as failure:  # a loss term that cannot see one example alone
        cause = failure.__cause__ or failure
        explained = RuntimeError(
            f"per-example gradients (DP-SGD) evaluate the loss, with its loss terms, on each "
            f"example alone under torch.func.vmap, which this term does not support "
            f"({type(cause).__name__}: {cause}); a term that couples the examples of a batch "
            f"(a group-fairness penalty) has no per-example gradient to clip"
        )
        explained.__cause__ = cause
        raise ComponentFailure(failure.kind, failure.name, explained) from explained
    return {name: grads[f"model.{name}"] for name in names}, losses.detach()


class OptimizerMethod(GradientMethod):
    """Minibatch training with a torch optimizer: subclasses say which (:meth:`make_optimizer`).

    :meth:`step` takes the plain batched step unless the run's middleware acts on
    ``paralab_process_gradients`` (DP-SGD): then it computes per-example gradients, passes them
    through that middleware and applies the result (:meth:`private_step`).
    """

    def __init__(self, lr: float = 0.05, weight_decay: float = 0.0) -> None:
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer: torch.optim.Optimizer | None = None

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state (momentum, Adam's moments), for checkpoints."""
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back :meth:`state_dict` after :meth:`setup`."""
        self.optimizer.load_state_dict(state["optimizer"])

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
        if run is not None and getattr(run, "loss_terms", True):  # no "+ 0.0" node without terms
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
        if run is not None and run.hooks.has_middleware_for(GRADIENT_HOOK):
            return self.private_step(run, model, x, y, indices, objective)
        logits = model(x)
        loss = self.loss(run, Batch(x, y, indices, logits, model, run, objective=objective))
        clear_gradients(self.optimizer)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def private_step(
        self,
        run: RunContext,
        model: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        indices: torch.Tensor,
        objective: Any = None,
    ) -> float:
        """One step from per-example gradients passed through ``paralab_process_gradients``;
        returns the mean per-example loss (0.0 for an empty batch).

        The divisor is the number of rows, or the protocol's expected batch size when it says
        it samples by Poisson (``run.current_phase.info["sampling"]``): the unbiased mean of
        DP-SGD, whose denominator must not reveal how many examples were sampled.
        """
        assert self.optimizer is not None
        grads, losses = per_example_gradients(self, run, model, x, y, indices, objective)
        phase = run.current_phase
        sampling = dict(phase.info.get("sampling", {})) if phase is not None else {}
        rows = len(x)
        divisor = (float(sampling["expected_batch_size"])
                   if sampling.get("scheme") == "poisson" else float(rows))
        info: dict[str, Any] = {"sampling": sampling}
        if phase is not None:
            info["phase"] = (phase.kind, phase.index)
        value = PerExampleGradients(grads, batch_size=divisor, info=info)
        applied = run.hooks.process_gradients(run, value).gradient()
        clear_gradients(self.optimizer)
        for name, parameter in model.named_parameters():
            if name in applied:
                parameter.grad = applied[name].to(parameter.dtype)
        self.optimizer.step()
        return float(losses.mean()) if rows else 0.0


class SGD(OptimizerMethod):
    """Stochastic gradient descent (with optional momentum)."""

    def __init__(self, lr: float = 0.05, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.momentum = momentum

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state (momentum, Adam's moments), for checkpoints."""
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back :meth:`state_dict` after :meth:`setup`."""
        self.optimizer.load_state_dict(state["optimizer"])

    def make_optimizer(self, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            parameters, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )


class Adam(OptimizerMethod):
    """Adam."""

    def __init__(self, lr: float = 0.001, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state (momentum, Adam's moments), for checkpoints."""
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back :meth:`state_dict` after :meth:`setup`."""
        self.optimizer.load_state_dict(state["optimizer"])

    def make_optimizer(self, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return adam(parameters, lr=self.lr, weight_decay=self.weight_decay)
