"""Continual strategies, native: the method interface of the ``continual`` protocol.

Every strategy implements :class:`paralab.ContinualStrategy` (the interface the protocol drives)
and is a :class:`paralab.OptimizerMethod`, so its loss is the cross-entropy plus the spec's
loss terms (``run.extra_loss``: a fairness penalty, a semantic loss), and it trains whatever
model the spec names (an MLP, a CNN, a quantum classifier from another plugin). The protocol
calls ``check`` and ``bind`` once the stream is built, ``setup``, then per experience
``before_experience`` -> ``train_experience`` -> ``after_experience``.

Options are declared, with their constraints, in ``paralab_continual/__init__.py``; the spec
check rejects bad values before anything is built, so the constructors trust their
arguments. What depends on the stream (``heads = 'multi'`` without task labels, a memory
larger than the data) is checked in :meth:`ContinualStrategy.check`, before any run folder.

Why native: each experience's rows are gathered from the shared tensors once (its transform
applied once, on the device), then minibatches are slices of a permutation: no Dataset, no
DataLoader, no collate. Quadratic penalties (EWC, online EWC, SI) are added to the gradient in
closed form, ``2 * lambda * (A * theta - B)``, with ``A`` and ``B`` folded over all previous
experiences, so a step costs the same after 2 or 20 experiences and builds no autograd graph
for the penalty (tests check the gradient equals autograd's on Avalanche's formula).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from paralab import Batch, OptimizerMethod, adam
from paralab import ContinualStrategy as StrategyInterface
from paralab import clear_gradients as clear_optimizer_gradients
from paralab_continual.buffers import IndexBuffer
from paralab_continual.scenarios import Experience, ScenarioError, Stream

if TYPE_CHECKING:
    from collections.abc import Iterable

    from paralab import RunContext, SharedDataset


def _detached(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.detach().clone() for t in tensors]


def _on(tensors: list[torch.Tensor], like: list[torch.Tensor]) -> list[torch.Tensor]:
    """Checkpointed tensors back on the devices of the parameters they belong to."""
    return [t.to(p.device) for t, p in zip(tensors, like)]


def gather(
    dataset: SharedDataset, stream: Stream, rows: torch.Tensor, experience_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of ``rows``, each transformed as its experience dictates."""
    x = dataset.x[rows]
    y = dataset.y[rows]
    transformed = [e for e in stream if e.transform is not None]
    if not transformed:
        return x, y
    ids = experience_ids.to(x.device)
    first = int(ids[0]) if len(ids) else 0
    if len(ids) and bool((ids == first).all()):
        transform = stream[first].transform
        return (transform(x, rows) if transform is not None else x), y
    x = x.clone()
    for experience in transformed:
        where = (ids == experience.index).nonzero().flatten()
        if len(where):
            assert experience.transform is not None
            x[where] = experience.transform(x[where], rows[where])
    return x, y


def fused_sgd_step(parameters: list[torch.Tensor], lr: float, weight_decay: float) -> None:
    """Plain SGD as one fused ``_foreach_add_`` over the parameters that have gradients (the
    update ``torch.optim.SGD`` makes without momentum, minus its per-step dispatch)."""
    with torch.no_grad():
        pairs = [(p, p.grad) for p in parameters if p.grad is not None]
        if not pairs:
            return
        params = [p for p, _ in pairs]
        grads = [g for _, g in pairs]
        if weight_decay:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
        torch._foreach_add_(params, grads, alpha=-lr)


class ContinualStrategy(OptimizerMethod, StrategyInterface):
    """Fine-tuning on each experience in turn: the base every strategy refines.

    A strategy's constructor names its own options, with their defaults, and passes the rest
    (``**options``) on to its base, down to this one: the options declared for the method are
    that chain's parameters, names and defaults (the conformance kit checks it). A shared base
    between a strategy and this class takes its arguments without defaults, so that the
    strategy alone says what they default to (``_Quadratic``, ``_FisherPenalty``).

    :param lr: learning rate.
    :param optimizer: ``sgd`` or ``adam``.
    :param momentum: SGD momentum.
    :param weight_decay: L2 weight decay of the optimizer.
    :param reset_optimizer: start each experience with fresh optimizer state (Avalanche does).
    :param heads: ``multi`` trains with the output units masked to the experience's classes
        (multi-head), which needs task labels at test time; ``shared`` trains all units;
        ``auto`` is ``multi`` in a task-incremental stream and ``shared`` otherwise.
    """

    name = "naive"

    def __init__(
        self,
        lr: float = 0.05,
        optimizer: str = "sgd",
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        reset_optimizer: bool = True,
        heads: str = "auto",
    ) -> None:
        super().__init__(lr, weight_decay)
        self.optimizer_name = optimizer
        self.momentum = momentum
        self.reset_optimizer = reset_optimizer
        self.heads = heads
        self.stream: Stream | None = None
        self.train_masked = False
        self.parameters: list[torch.nn.Parameter] = []

    # ------------------------------------------------------------------------- checking

    def check(self, stream: Stream, dataset: SharedDataset) -> None:
        """Raise a clear error, before training, when this strategy cannot run on ``stream``."""
        if self.heads == "multi" and not stream.has_task_labels:
            raise ScenarioError(
                f"method {self.name!r}: heads = 'multi' needs task labels at test time, but "
                f"scenario {stream.scenario!r} has none; use scenario = 'task_incremental' or "
                "heads = 'shared'"
            )

    # ------------------------------------------------------------------------ lifecycle

    def make_optimizer(self, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.optimizer_name == "adam":
            return adam(parameters, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(
            parameters, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )

    def setup(self, run: RunContext | None, model: torch.nn.Module) -> None:
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = self.make_optimizer(self.parameters)

    def state_dict(self) -> dict[str, Any]:
        """What the strategy learned between experiences (its optimizer's state, and what
        each strategy adds: penalty terms, a teacher, memories), for the protocol's
        checkpoints; tensors and plain data only. Checkpoints close experiences, so what lives
        only inside one (SI's running path integral, a gathered replay batch) is not in it."""
        return super().state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back :meth:`state_dict` after :meth:`setup` (and after the model's weights)."""
        super().load_state_dict(state)

    @property
    def device(self) -> torch.device:
        """Where the model (and so the run's data) lives: checkpoints are read on the CPU."""
        return self.parameters[0].device if self.parameters else torch.device("cpu")

    def bind(self, stream: Stream) -> None:
        """Remember the stream and decide how training reads the outputs."""
        self.stream = stream
        multi = self.heads == "multi" or (self.heads == "auto" and stream.has_task_labels)
        self.train_masked = stream.remapped or (multi and stream.masked)

    def before_experience(self, run: RunContext, experience: Experience) -> None:
        if self.reset_optimizer and experience.index > 0:
            self.optimizer = self.make_optimizer(self.parameters)

    def after_experience(self, run: RunContext, experience: Experience) -> None:
        """Consolidate what was learned (importances, memories, a teacher)."""

    # ------------------------------------------------------------------------- training

    def training_rows(self, experience: Experience) -> tuple[torch.Tensor, torch.Tensor]:
        """The shared-dataset rows to train on in ``experience`` and their experience ids."""
        rows = experience.train
        return rows, torch.full_like(rows, experience.index)

    def train_experience(
        self, run: RunContext, experience: Experience, epochs: int, batch_size: int
    ) -> float:
        """Minibatch epochs over the experience's pre-gathered rows; returns the mean loss."""
        assert self.stream is not None, "bind(stream) before training"
        model = run.model
        model.train()
        rows, ids = self.training_rows(experience)
        x_all, y_all = gather(run.dataset, self.stream, rows, ids)
        n = len(rows)
        losses: list[torch.Tensor] = []
        for _ in range(epochs):
            # One gather per epoch; the minibatches are then contiguous slices (views).
            order = torch.randperm(n, generator=run.generator).to(x_all.device)
            x_epoch, y_epoch, rows_epoch, ids_epoch = x_all[order], y_all[order], rows[order], ids[order]
            for start in range(0, n, batch_size):
                stop = start + batch_size
                losses.append(
                    self.train_step(
                        run, model, x_epoch[start:stop], y_epoch[start:stop],
                        rows_epoch[start:stop], ids_epoch[start:stop],
                    )
                )
        total = torch.stack(losses).sum() if losses else torch.zeros(())
        steps = len(losses)
        return float(total) / max(steps, 1)

    def augment(
        self,
        run: RunContext,
        x: torch.Tensor,
        y: torch.Tensor,
        rows: torch.Tensor,
        ids: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch to train on (replay appends memory rows here)."""
        return x, y, rows, ids

    def forward(
        self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and targets as training reads them (masked/relabelled when it must)."""
        return self.read_outputs(model(x), y, ids)

    def read_outputs(
        self, logits: torch.Tensor, y: torch.Tensor, ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's raw ``logits`` as training reads them, with their targets."""
        if self.train_masked:
            assert self.stream is not None
            return self.stream.read_outputs(logits, y, ids)
        return logits, y

    def regularizer(self, x: torch.Tensor, raw: torch.Tensor,
                    model: torch.nn.Module) -> torch.Tensor | None:
        """A term added to the batch loss from the inputs and the model's raw (unmasked)
        outputs, such as LwF's distillation; None: nothing."""
        return None

    def train_step(
        self,
        run: RunContext,
        model: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        rows: torch.Tensor,
        ids: torch.Tensor,
    ) -> torch.Tensor:
        """One optimizer step; returns the batch loss as a tensor (no device sync)."""
        x, y, rows, ids = self.augment(run, x, y, rows, ids)
        raw = model(x)
        logits, targets = self.read_outputs(raw, y, ids)
        loss = self.loss(run, Batch(x, targets, rows, logits, model, run))
        extra = self.regularizer(x, raw, model)
        if extra is not None:
            loss = loss + extra
        self.clear_gradients()
        loss.backward()
        self.after_backward(run, model)
        self.apply_update()
        self.after_step(run, model)
        return loss.detach()

    def clear_gradients(self) -> None:
        """``optimizer.zero_grad(set_to_none=True)`` without its profiler hooks."""
        assert self.optimizer is not None
        clear_optimizer_gradients(self.optimizer)

    def apply_update(self) -> None:
        """The optimizer step. Plain SGD (no momentum) is one fused ``_foreach_add_`` over the
        parameters: the same update as ``torch.optim.SGD`` (a test checks it) without its
        per-step dispatch overhead, which is a third of a small model's step on a CPU."""
        assert self.optimizer is not None
        if self.optimizer_name != "sgd" or self.momentum:
            self.optimizer.step()
            return
        fused_sgd_step(self.parameters, self.lr, self.weight_decay)

    def after_backward(self, run: RunContext, model: torch.nn.Module) -> None:
        """Change the gradients before the optimizer applies them (penalties, projections)."""

    def after_step(self, run: RunContext, model: torch.nn.Module) -> None:
        """Observe the parameters after the optimizer step (SI's path integral)."""

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, "optimizer": self.optimizer_name, "lr": self.lr}


class Naive(ContinualStrategy):
    """Fine-tuning: train on each experience in turn, nothing against forgetting (lower bound)."""

    name = "naive"


class Joint(ContinualStrategy):
    """Train on the union of every experience seen so far at each experience (upper bound)."""

    name = "joint"

    def training_rows(self, experience: Experience) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.stream is not None
        seen = self.stream.experiences[: experience.index + 1]
        rows = torch.cat([e.train for e in seen])
        ids = torch.cat([torch.full_like(e.train, e.index) for e in seen])
        return rows, ids


class _Quadratic(ContinualStrategy):
    """A penalty ``strength * sum_k A_k (theta_k - anchor)^2`` folded into ``A`` and ``B``:
    its gradient ``2 * strength * (A * theta - B)`` is added after the backward pass."""

    strength_name = "strength"

    def __init__(self, strength: float, **options: Any) -> None:
        super().__init__(**options)
        self.strength = float(strength)
        self.curvature: list[torch.Tensor] = []  # A
        self.pull: list[torch.Tensor] = []  # B = A * anchor (summed)
        self.offset = 0.0  # C = sum A * anchor^2, only to report the penalty's value

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "curvature": _detached(self.curvature),
                "pull": _detached(self.pull), "offset": self.offset}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.curvature = _on(state["curvature"], self.parameters)
        self.pull = _on(state["pull"], self.parameters)
        self.offset = float(state["offset"])

    def after_backward(self, run: RunContext, model: torch.nn.Module) -> None:
        if not self.curvature or self.strength == 0:
            return
        with torch.no_grad():
            # 2 * strength * (A * theta - B), added to the gradients in four fused calls.
            params = [p.detach() for p in self.parameters]
            penalty_grads = torch._foreach_mul(self.curvature, params)
            torch._foreach_sub_(penalty_grads, self.pull)
            torch._foreach_mul_(penalty_grads, 2.0 * self.strength)
            missing = [i for i, p in enumerate(self.parameters) if p.grad is None]
            for i in missing:
                self.parameters[i].grad = torch.zeros_like(self.parameters[i])
            torch._foreach_add_([p.grad for p in self.parameters], penalty_grads)

    def penalty(self) -> torch.Tensor:
        """The penalty's value ``strength * sum A theta^2 - 2 B theta + C``."""
        if not self.curvature:
            return torch.zeros(())
        value = sum(
            (a * p.detach() ** 2 - 2 * b * p.detach()).sum()
            for p, a, b in zip(self.parameters, self.curvature, self.pull)
        )
        return self.strength * (value + self.offset)

    def _fold(self, importance: list[torch.Tensor], anchor: list[torch.Tensor], decay: float | None) -> None:
        """Add ``importance`` around ``anchor``; with ``decay``, replace by one online penalty."""
        if decay is None and self.curvature:
            self.curvature = [a + imp for a, imp in zip(self.curvature, importance)]
            self.pull = [b + imp * t for b, imp, t in zip(self.pull, importance, anchor)]
            self.offset += float(sum((imp * t * t).sum() for imp, t in zip(importance, anchor)))
            return
        if decay is not None and self.curvature:
            # Online: the old importance decays and moves to the newest anchor.
            importance = [decay * a + imp for a, imp in zip(self.curvature, importance)]
        self.curvature = list(importance)
        self.pull = [imp * t for imp, t in zip(importance, anchor)]
        self.offset = float(sum((imp * t * t).sum() for imp, t in zip(importance, anchor)))


class _FisherPenalty(_Quadratic):
    """The empirical-Fisher penalty that ``ewc`` and ``online_ewc`` share.

    After each experience the empirical Fisher is the mean over minibatches (in row order, of
    ``fisher_batch_size``) of the squared gradient of the mean cross-entropy; ``mode =
    'separate'`` adds one penalty per experience, ``'online'`` keeps one penalty around the
    newest parameters with ``F <- decay * F + F_new`` (Schwarz et al. 2018). No defaults here:
    each method's constructor supplies them."""

    strength_name = "ewc_lambda"

    def __init__(self, ewc_lambda: float, mode: str, decay: float, fisher_batch_size: int,
                 **options: Any) -> None:
        super().__init__(ewc_lambda, **options)
        self.mode = mode
        self.decay = float(decay)
        self.fisher_batch_size = int(fisher_batch_size)

    def importance(self, run: RunContext, experience: Experience) -> list[torch.Tensor]:
        """The empirical Fisher of ``experience``'s training rows.

        One backward per minibatch, as Avalanche. (A ``torch.func.vmap`` over the minibatches
        was measured 2x slower on a CPU: its batched matmuls lose to plain ones.)"""
        assert self.stream is not None
        model = run.model
        was_training = model.training
        model.eval()
        rows = experience.train
        ids = torch.full_like(rows, experience.index)
        x_all, y_all = gather(run.dataset, self.stream, rows, ids)
        size = self.fisher_batch_size
        fisher = [torch.zeros_like(p) for p in self.parameters]
        batches = 0
        for start in range(0, len(rows), size):
            x, y = x_all[start : start + size], y_all[start : start + size]
            logits, targets = self.forward(model, x, y, ids[start : start + size])
            grads = torch.autograd.grad(
                F.cross_entropy(logits, targets), self.parameters, allow_unused=True
            )
            for total, grad in zip(fisher, grads):
                if grad is not None:
                    total.add_(grad.detach() ** 2)
            batches += 1
        model.train(was_training)
        return [total / max(batches, 1) for total in fisher]

    def after_experience(self, run: RunContext, experience: Experience) -> None:
        fisher = self.importance(run, experience)
        anchor = [p.detach().clone() for p in self.parameters]
        self._fold(fisher, anchor, self.decay if self.mode == "online" else None)


class EWC(_FisherPenalty):
    """Elastic weight consolidation (Kirkpatrick et al. 2017), Avalanche's formulation: the
    penalty is ``ewc_lambda * sum_e sum_k F_e,k (theta_k - theta*_e,k)^2`` (``mode =
    'separate'``) or one decayed penalty (``mode = 'online'``, as ``online_ewc``)."""

    name = "ewc"

    def __init__(
        self,
        ewc_lambda: float = 100.0,
        mode: str = "separate",
        decay: float = 1.0,
        fisher_batch_size: int = 32,
        **options: Any,
    ) -> None:
        super().__init__(ewc_lambda, mode, decay, fisher_batch_size, **options)


class OnlineEWC(_FisherPenalty):
    """Online EWC (Schwarz et al. 2018): one running Fisher, decayed, around the newest weights."""

    name = "online_ewc"

    def __init__(
        self,
        ewc_lambda: float = 100.0,
        decay: float = 1.0,
        fisher_batch_size: int = 32,
        **options: Any,
    ) -> None:
        super().__init__(ewc_lambda, "online", decay, fisher_batch_size, **options)


class SI(_Quadratic):
    """Synaptic intelligence (Zenke et al. 2017).

    During an experience each parameter's contribution to the drop of the task loss is summed
    along the optimisation path, ``omega -= grad * delta``; at its end
    ``Omega += omega / (total_delta^2 + damping)`` and the penalty is
    ``si_lambda * sum Omega (theta - theta_end)^2``.
    """

    name = "si"
    strength_name = "si_lambda"

    def __init__(self, si_lambda: float = 1.0, damping: float = 0.1, **options: Any) -> None:
        super().__init__(si_lambda, **options)
        self.damping = float(damping)
        self.omega: list[torch.Tensor] = []
        self.start: list[torch.Tensor] = []
        self.before: list[torch.Tensor] = []
        self.task_grad: list[torch.Tensor] = []
        self.total_importance: list[torch.Tensor] = []

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "total_importance": _detached(self.total_importance)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.total_importance = _on(state["total_importance"], self.parameters)

    def before_experience(self, run: RunContext, experience: Experience) -> None:
        super().before_experience(run, experience)
        self.omega = [torch.zeros_like(p) for p in self.parameters]
        self.start = [p.detach().clone() for p in self.parameters]

    def after_backward(self, run: RunContext, model: torch.nn.Module) -> None:
        # The task loss's gradient and the parameters before the step, for the path integral.
        self.task_grad = [
            p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
            for p in self.parameters
        ]
        self.before = [p.detach().clone() for p in self.parameters]
        super().after_backward(run, model)

    def after_step(self, run: RunContext, model: torch.nn.Module) -> None:
        for omega, grad, before, p in zip(self.omega, self.task_grad, self.before, self.parameters):
            omega.sub_(grad * (p.detach() - before))

    def after_experience(self, run: RunContext, experience: Experience) -> None:
        end = [p.detach().clone() for p in self.parameters]
        importance = [
            omega / ((e - s) ** 2 + self.damping)
            for omega, e, s in zip(self.omega, end, self.start)
        ]
        if self.total_importance:
            importance = [old + new for old, new in zip(self.total_importance, importance)]
        self.total_importance = importance
        # One penalty around the newest parameters with the accumulated importance.
        self._fold(importance, end, decay=0.0)


class LwF(ContinualStrategy):
    """Learning without forgetting (Li and Hoiem 2016), as in Avalanche: a frozen copy of the
    model after the previous experience teaches the current one on the current inputs, by
    ``alpha * KL(teacher || student)`` at ``temperature`` over the previously seen output units
    (per previous task's units in a task-incremental stream)."""

    name = "lwf"

    def __init__(self, alpha: float = 1.0, temperature: float = 2.0, **options: Any) -> None:
        super().__init__(**options)
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.teacher: torch.nn.Module | None = None
        self.unit_groups: list[torch.Tensor] = []
        self.model: torch.nn.Module | None = None

    def setup(self, run: RunContext | None, model: torch.nn.Module) -> None:
        super().setup(run, model)
        self.model = model  # the teacher is a frozen copy of it

    def state_dict(self) -> dict[str, Any]:
        teacher = None if self.teacher is None else self.teacher.state_dict()
        return {**super().state_dict(), "teacher": teacher,
                "unit_groups": [u.clone() for u in self.unit_groups]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.teacher = None
        if state["teacher"] is not None:
            assert self.model is not None, "setup(run, model) before load_state_dict"
            self.teacher = self._freeze(copy.deepcopy(self.model))
            self.teacher.load_state_dict(state["teacher"])
        self.unit_groups = [units.to(self.device) for units in state["unit_groups"]]

    @staticmethod
    def _freeze(model: torch.nn.Module) -> torch.nn.Module:
        model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        return model

    def after_experience(self, run: RunContext, experience: Experience) -> None:
        assert self.stream is not None
        self.teacher = self._freeze(copy.deepcopy(run.model))
        seen = self.stream.experiences[: experience.index + 1]
        if self.stream.has_task_labels:
            self.unit_groups = [self.stream.unit_mask[e.index].nonzero().flatten() for e in seen]
        else:
            active = self.stream.unit_mask[[e.index for e in seen]].any(dim=0)
            if not self.stream.masked:
                # Class-incremental: only the units of classes seen so far carry knowledge.
                active = torch.zeros_like(active)
                active[[c for e in seen for c in e.classes]] = True
            self.unit_groups = [active.nonzero().flatten()]

    def distillation(self, x: torch.Tensor, logits: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
        assert self.teacher is not None
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        total = torch.zeros((), device=logits.device)
        for units in self.unit_groups:
            units = units.to(logits.device)
            log_p = F.log_softmax(logits[:, units] / self.temperature, dim=1)
            q = F.softmax(teacher_logits[:, units] / self.temperature, dim=1)
            total = total + F.kl_div(log_p, q, reduction="batchmean")
        return self.alpha * total

    def regularizer(self, x: torch.Tensor, raw: torch.Tensor,
                    model: torch.nn.Module) -> torch.Tensor | None:
        """The distillation from the previous experience's model (none before it ends)."""
        return None if self.teacher is None else self.distillation(x, raw, model)


class Replay(ContinualStrategy):
    """Experience replay: each minibatch is joined by as many rows drawn from a memory of
    indices into the shared data (``reservoir``, ``class_balanced`` or
    ``experience_balanced``), updated when an experience ends."""

    name = "replay"

    def __init__(
        self,
        buffer_size: int = 200,
        policy: str = "reservoir",
        memory_batch_size: int = 0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.buffer = IndexBuffer(buffer_size, policy)
        self.memory_batch_size = int(memory_batch_size)
        self.memory: tuple[torch.Tensor, torch.Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        """The memory as index tensors (rows of the shared data and their experience ids)
        and where its shuffled pass stands; the gathered rows are rebuilt from them."""
        return {**super().state_dict(), "buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.buffer.load_state_dict(state["buffer"], self.device)

    def check(self, stream: Stream, dataset: SharedDataset) -> None:
        super().check(stream, dataset)
        available = sum(len(e.train) for e in stream)
        if self.buffer.size > available:
            raise ScenarioError(
                f"method {self.name!r}: buffer_size = {self.buffer.size} is larger than the "
                f"{available} training rows of the whole stream; use buffer_size <= {available}"
            )

    def augment(
        self,
        run: RunContext,
        x: torch.Tensor,
        y: torch.Tensor,
        rows: torch.Tensor,
        ids: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.memory is None:
            return x, y, rows, ids
        memory_x, memory_y = self.memory
        slots = self.buffer.next_slots(self.memory_batch_size or len(rows), run.generator)
        return (
            torch.cat([x, memory_x[slots]]),
            torch.cat([y, memory_y[slots]]),
            torch.cat([rows, self.buffer.indices[slots]]),
            torch.cat([ids, self.buffer.experiences[slots]]),
        )

    def before_experience(self, run: RunContext, experience: Experience) -> None:
        """Gather the memory's rows (transformed as their experience) once per experience:
        the memory changes only between experiences, so each step is one slice of them."""
        super().before_experience(run, experience)
        self.memory = None
        if len(self.buffer):
            assert self.stream is not None
            self.memory = gather(run.dataset, self.stream, self.buffer.indices, self.buffer.experiences)

    def after_experience(self, run: RunContext, experience: Experience) -> None:
        rows = experience.train
        self.buffer.add_experience(rows, experience.index, run.dataset.y[rows], run.generator)


class AGEM(ContinualStrategy):
    """Averaged gradient episodic memory (Chaudhry et al. 2019): when the minibatch gradient
    points against the gradient on a memory sample, project it onto the sample's half-space.
    The memory keeps ``patterns_per_experience`` random rows of each experience (indices)."""

    name = "agem"

    def __init__(self, patterns_per_experience: int = 100, sample_size: int = 64, **options: Any) -> None:
        super().__init__(**options)
        self.patterns_per_experience = int(patterns_per_experience)
        self.sample_size = int(sample_size)
        self.memory_rows = torch.empty(0, dtype=torch.long)
        self.memory_ids = torch.empty(0, dtype=torch.long)
        self.reference: list[torch.Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "memory_rows": self.memory_rows.clone(),
                "memory_ids": self.memory_ids.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.memory_rows = state["memory_rows"].to(self.device)
        self.memory_ids = state["memory_ids"].to(self.device)

    def check(self, stream: Stream, dataset: SharedDataset) -> None:
        super().check(stream, dataset)
        smallest = min(len(e.train) for e in stream)
        if self.patterns_per_experience > smallest:
            raise ScenarioError(
                f"method {self.name!r}: patterns_per_experience = {self.patterns_per_experience} "
                f"is larger than the smallest experience ({smallest} training rows); use "
                f"patterns_per_experience <= {smallest}"
            )

    def train_step(
        self,
        run: RunContext,
        model: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        rows: torch.Tensor,
        ids: torch.Tensor,
    ) -> torch.Tensor:
        self.reference = None
        if len(self.memory_rows):
            assert self.stream is not None
            pick = torch.randint(
                len(self.memory_rows), (self.sample_size,), generator=run.generator
            ).to(self.memory_rows.device)
            memory_rows, memory_ids = self.memory_rows[pick], self.memory_ids[pick]
            memory_x, memory_y = gather(run.dataset, self.stream, memory_rows, memory_ids)
            logits, targets = self.forward(model, memory_x, memory_y, memory_ids)
            grads = torch.autograd.grad(
                F.cross_entropy(logits, targets), self.parameters, allow_unused=True
            )
            self.reference = [
                g.detach() if g is not None else torch.zeros_like(p)
                for g, p in zip(grads, self.parameters)
            ]
        return super().train_step(run, model, x, y, rows, ids)

    @torch.no_grad()
    def after_backward(self, run: RunContext, model: torch.nn.Module) -> None:
        if self.reference is None:
            return
        current = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.parameters]
        dot = sum((g * r).sum() for g, r in zip(current, self.reference))
        if float(dot) < 0:
            norm = sum((r * r).sum() for r in self.reference)
            scale = dot / norm
            for p, g, r in zip(self.parameters, current, self.reference):
                p.grad = g - scale * r

    def after_experience(self, run: RunContext, experience: Experience) -> None:
        rows = experience.train
        pick = torch.randperm(len(rows), generator=run.generator)[: self.patterns_per_experience]
        chosen = rows[pick.to(rows.device)]
        self.memory_rows = torch.cat([self.memory_rows.to(rows.device), chosen])
        self.memory_ids = torch.cat(
            [self.memory_ids.to(rows.device), torch.full_like(chosen, experience.index)]
        )
