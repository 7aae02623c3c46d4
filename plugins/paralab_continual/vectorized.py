"""The ``continual`` protocol for K seeds at once: :func:`paralab.run_seeds` stacks them.

:class:`Continual` is the protocol of :mod:`paralab_continual.protocol` plus the seed axis
(``ProtocolSpec(seed_axis=True)``): ``seed_axis_why_not(runs)`` and ``execute_seeds(runs,
axis)``. Each seed keeps its own run: its stream, its strategy object (memories, importances,
its generator's draws), its phases, evaluations, accuracy matrix and folder. What is shared
is the arithmetic of training: every seed's minibatch goes through one stacked model
(``axis.model``, each run's ``run.model`` a view of its slice) and one optimizer over the
stacked parameters, so K seeds cost one batched step instead of K small ones.

What each seed does is what :meth:`ContinualStrategy.train_experience` does, step for step:
an epoch order from ``torch.randperm(n, generator=run.generator)``, minibatches in that
order, the replay memory's rows appended by the seed's own strategy (``augment``, its own
draws), cross-entropy on the outputs as the strategy reads them, the quadratic penalty's
gradient ``2 * lambda * (A * theta - B)`` added after the backward pass (EWC, online EWC, with
``A`` and ``B`` stacked from each seed's strategy), and the same update (the fused plain-SGD
step, or the torch optimizer, fresh at each experience when ``reset_optimizer``). EWC's
Fisher is computed stacked too, in the row order and minibatches of
:meth:`~paralab_continual.regularization.EWCPlugin.importance`.

SI's path integral is kept stacked (``omega``, the task gradient and the parameters before
each step) and handed to each seed's strategy when the experience ends; LwF's teachers are
stacked into one frozen model whose outputs each seed's distillation reads (its own units);
A-GEM draws each seed's memory sample with the seed's generator, computes the K reference
gradients in one stacked pass and projects each seed's gradient by its own dot product.

Stacked: ``naive``, ``joint``, ``cumulative``, ``ewc``, ``online_ewc``, ``si``, ``lwf``,
``replay``, ``agem``, each with its own plugin only. A composed strategy (``plugins = [...]``
listing any), the Avalanche adapter and any subclass of a native strategy (which may change
the step) run their seeds one after another, and ``seed_axis_why_not`` says so.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from paralab import Predictions
from paralab_continual import metrics
from paralab_continual.memory import PeakMemory, strategy_figures
from paralab_continual.protocol import Continual as SingleContinual
from paralab_continual.regularization import EWCPlugin, LwFPlugin, QuadraticPenalty, SIPlugin
from paralab_continual.rehearsal import AGEMPlugin, ReplayPlugin
from paralab_continual.rows import fused_sgd_step, gather
from paralab_continual.strategies import (
    AGEM,
    EWC,
    SI,
    ContinualStrategy,
    Cumulative,
    Joint,
    LwF,
    Naive,
    OnlineEWC,
    Replay,
)

if TYPE_CHECKING:
    from paralab import RunContext
    from paralab_continual.scenarios import Experience, Stream

STACKED_STRATEGIES: tuple[type[ContinualStrategy], ...] = (
    Naive, Joint, Cumulative, EWC, OnlineEWC, SI, LwF, Replay, AGEM)
"""Strategies whose step :class:`Continual` reproduces stacked (the exact classes: a subclass
may change the step)."""


class Continual(SingleContinual):
    """The ``continual`` protocol; K seeds of one configuration can run stacked."""

    # ------------------------------------------------------------------------- checking

    def seed_axis_why_not(self, runs: list[RunContext]) -> str:
        """Why these runs cannot train stacked (``""``: they can)."""
        for run in runs:
            if self_of(run).online:
                return "online streams (online = true) have no stacked step yet"
            if type(run.method) not in STACKED_STRATEGIES:
                names = ", ".join(s.name for s in STACKED_STRATEGIES)
                return (f"method {run.spec.method.name!r} ({type(run.method).__name__}) has no "
                        f"stacked step yet (stacked: {names})")
            method = run.method
            if len(method.resolve_plugins()) > method.own_count:
                return (f"method {run.spec.method.name!r} composes strategy plugins "
                        f"{method.plugin_names()}: composed strategies have no stacked step "
                        f"yet (each seed runs on its own, with every plugin)")
            if run.loss_terms:
                return f"loss terms {sorted(run.loss_terms)} are not stacked yet"
        streams = [self_of(run).stream_of(run) for run in runs]
        sizes = [[len(e.train) for e in stream] for stream in streams]
        if any(size != sizes[0] for size in sizes):
            return ("the seeds' streams have experiences of different sizes, so their epochs "
                    "take different numbers of steps")
        return ""

    # -------------------------------------------------------------------------- running

    def execute_seeds(self, runs: list[RunContext], axis: Any) -> None:
        """:meth:`execute` for every run of ``axis`` at once (training stacked)."""
        protocols = [self_of(run) for run in runs]
        streams = [protocol.stream_of(run) for protocol, run in zip(protocols, runs)]
        methods: list[ContinualStrategy] = [run.method for run in runs]
        for k, run in axis.each():
            with axis.guard(k, "method", run.spec.method.name):
                methods[k].bind(streams[k])
                methods[k].setup(run, run.model)
        trainer = _StackedTrainer(axis, runs, methods, streams)
        size = len(streams[0])
        initial: dict[int, list[float]] = {}  # position -> the untrained model's row
        if self.forward_transfer:
            with axis.phases("initial", 0, lambda k: {"scenario": streams[k].scenario}):
                initial = self.evaluate_streams(axis, runs, streams)
        matrices = {k: [[math.nan] * size for _ in range(size)] for k in range(len(runs))}
        axis.progress(size)
        for i in range(size):
            def info(k: int, i: int = i) -> dict[str, Any]:
                return {"scenario": streams[k].scenario, **streams[k][i].describe()}

            with axis.phases("experience", i, info) as phases:
                for k in list(phases):
                    with axis.guard(k, "method", runs[k].spec.method.name):
                        methods[k].before_experience(runs[k], streams[k][i])
                peak = PeakMemory(runs[0].device)
                peak.start()
                losses = trainer.train_experience(i, self.epochs, self.batch_size)
                trainer.after_experience(i)
                for k, phase in phases.items():
                    if k in axis.failed:
                        continue
                    if losses[k] is not None:
                        phase.metrics["train/loss"] = losses[k]
                    phase.metrics.update(strategy_figures(methods[k], runs[k].dataset))
                    # One process trains the stacked chunk: its peak is every seed's.
                    peak.record(runs[k], i, stacked=len(runs))
                for k, row in self.evaluate_streams(axis, runs, streams).items():
                    with axis.guard(k, "protocol", runs[k].spec.protocol.name):
                        matrix = matrices[k]
                        matrix[i] = row
                        runs[k].record("average_accuracy",
                                       metrics.average_accuracy(matrix, after=i))
                        runs[k].record("accuracy_matrix_row", matrix[i])
        for k, run in axis.each():
            with axis.guard(k, "protocol", run.spec.protocol.name):
                protocols[k].finish(run, matrices[k], initial.get(k))

    def evaluate_streams(self, axis: Any, runs: list[RunContext],
                         streams: list[Stream]) -> dict[int, list[float]]:
        """Each running seed's :meth:`evaluate_stream` (a row of its R), by position.

        Without per-experience transforms every seed's test rows go through the stacked model
        in one pass (``eval_batch_size`` rows per seed at a time, as :func:`paralab.predict`
        batches them), and each experience's predictions are a slice of it, handed to the
        seed's own :meth:`evaluate` (its metrics, auditors and hooks); otherwise each seed
        evaluates alone."""
        rows_of = [torch.cat([e.test for e in stream]) for stream in streams]
        shared = (all(e.transform is None for stream in streams for e in stream)
                  and len({len(r) for r in rows_of}) == 1
                  and all(run.dataset is runs[0].dataset for run in runs))
        rows: dict[int, list[float]] = {}
        if not shared:
            for k, run in axis.each():
                with axis.guard(k, "protocol", run.spec.protocol.name):
                    rows[k] = self_of(run).evaluate_stream(run, streams[k])
            return rows
        dataset = runs[0].dataset
        index = torch.stack(rows_of).to(dataset.device)
        model = axis.model
        model.eval()
        batch = runs[0].spec.eval_batch_size
        try:
            with torch.inference_mode():
                logits = torch.cat([model(dataset.x[index[:, start:start + batch]])
                                    for start in range(0, index.shape[1], batch)], dim=1)
        finally:
            model.train()
        for k, run in axis.each():
            with axis.guard(k, "protocol", run.spec.protocol.name):
                accuracies, start = [], 0
                for experience in streams[k]:
                    stop = start + len(experience.test)
                    piece = Predictions(logits=logits[k, start:stop],
                                        targets=dataset.y[index[k, start:stop]],
                                        indices=index[k, start:stop], dataset=dataset)
                    accuracies.append(self_of(run).evaluate(run, streams[k], experience, piece))
                    start = stop
                rows[k] = accuracies
        return rows


def self_of(run: RunContext) -> Continual:
    """The run's own protocol object (each seed has one, holding its stream)."""
    protocol = run.protocol
    assert isinstance(protocol, SingleContinual)
    return protocol  # type: ignore[return-value]


class _StackedTrainer:
    """The stacked training of one chunk of seeds: steps, penalties, optimizer, Fisher."""

    def __init__(self, axis: Any, runs: list[RunContext], methods: list[ContinualStrategy],
                 streams: list[Stream]) -> None:
        self.axis = axis
        self.model = axis.model
        self.runs = runs
        self.methods = methods
        self.streams = streams
        self.first = methods[0]
        # Each seed's own plugin (the strategies stacked have at most one, their own).
        self.plugins: list[Any] = [m.plugin for m in methods]
        self.plugin = self.plugins[0]
        self.parameters: list[torch.Tensor] = self.model.parameters
        self.optimizer = self.first.make_optimizer(self.parameters)
        self.curvature: list[torch.Tensor] = []
        self.pull: list[torch.Tensor] = []
        self.omega: list[torch.Tensor] = []  # SI's path integral, stacked
        self.teacher: Any = None  # LwF's teachers, stacked

    def experiences(self, i: int) -> list[Experience]:
        return [stream[i] for stream in self.streams]

    # ------------------------------------------------------------------------- training

    def train_experience(self, i: int, epochs: int, batch_size: int) -> list[float | None]:
        """Every seed's :meth:`ContinualStrategy.train_experience` of experience ``i``;
        returns each seed's mean batch loss."""
        first = self.first
        for method in self.methods:  # as each single run's train_experience records it
            method.batch_size = batch_size
        if first.reset_optimizer and i > 0:
            self.optimizer = first.make_optimizer(self.parameters)
        self._stack_penalty()
        if isinstance(self.plugin, SIPlugin):
            self.omega = [torch.zeros_like(p) for p in self.parameters]
        if isinstance(self.plugin, LwFPlugin):
            teachers = [p.teacher for p in self.plugins]
            self.teacher = None
            if all(t is not None for t in teachers):
                self.teacher = self.axis.stack(teachers).eval()
        self.model.train()
        for run in self.runs:
            run.model.train()
        experiences = self.experiences(i)
        # Without per-experience transforms a gathered row is the shared row itself, so each
        # epoch's stacked inputs are one gather from the shared data in every seed's order
        # (the single run's ``x_all[order]`` is ``x[rows][order]`` = ``x[rows[order]]``)
        # instead of a gather per seed, a reordering per seed and a stack.
        dataset = self.runs[0].dataset
        direct = (all(run.dataset is dataset for run in self.runs)
                  and all(e.transform is None for stream in self.streams for e in stream))
        rows, ids, xs, ys = [], [], [], []
        for method, run, experience, stream in zip(self.methods, self.runs, experiences,
                                                   self.streams):
            r, e = method.training_rows(experience)
            rows.append(r)
            ids.append(e)
            if not direct:
                x, y = gather(run.dataset, stream, r, e)
                xs.append(x)
                ys.append(y)
        n = len(rows[0])
        device = dataset.x.device if direct else xs[0].device
        augments = bool(first.callbacks["augment"])
        memory = self._stacked_memory() if isinstance(self.plugin, ReplayPlugin) else None
        losses: list[torch.Tensor] = []
        for _ in range(epochs):
            orders = [torch.randperm(n, generator=run.generator).to(device) for run in self.runs]
            rows_epoch = torch.stack([r[o] for r, o in zip(rows, orders)])
            ids_epoch = torch.stack([e[o] for e, o in zip(ids, orders)])
            if direct:
                x_epoch, y_epoch = dataset.x[rows_epoch], dataset.y[rows_epoch]
            else:
                x_epoch = torch.stack([x[o] for x, o in zip(xs, orders)])
                y_epoch = torch.stack([y[o] for y, o in zip(ys, orders)])
            replayed = self._replay_epoch(memory, n, batch_size) if memory is not None else None
            used = 0  # memory rows of this epoch already joined to a batch
            for start in range(0, n, batch_size):
                stop = start + batch_size
                x, y = x_epoch[:, start:stop], y_epoch[:, start:stop]
                r, e = rows_epoch[:, start:stop], ids_epoch[:, start:stop]
                if replayed is not None:
                    x, y, e, used = self._join(replayed, used, x, y, e)
                elif augments:
                    x, y, r, e = self._augment(x, y, r, e)
                losses.append(self._step(x, y, e))
        if not losses:  # no rows to train on (joint after its offline phase)
            return [None] * len(self.runs)
        table = torch.stack(losses)
        # Each seed's sum as its single run sums it: one contiguous column, summed.
        return [float(table[:, k].contiguous().sum()) / len(losses)
                for k in range(len(self.runs))]

    def _stacked_memory(self) -> tuple[torch.Tensor, ...] | None:
        """Every seed's gathered replay memory (``Replay.before_experience`` gathered it),
        stacked ``(K, M, ...)``: a step then takes each seed's slots in one gather. None
        before any memory, or when the seeds' memories differ in size (then each seed's
        ``augment`` runs on its own)."""
        plugins = self.plugins
        if not all(isinstance(p, ReplayPlugin) and p.memory is not None for p in plugins):
            return None
        sizes = {len(p.buffer) for p in plugins}
        if len(sizes) != 1:
            return None
        return (torch.stack([p.memory[0] for p in plugins]),
                torch.stack([p.memory[1] for p in plugins]),
                torch.stack([p.buffer.experiences for p in plugins]))

    def _replay_epoch(self, memory: tuple[torch.Tensor, ...], n: int,
                      batch_size: int) -> tuple[torch.Tensor | None, ...]:
        """:meth:`Replay.augment`'s memory rows for every step of one epoch, gathered at once:
        each seed's slots of its shuffled pass over its memory (its own generator) for all the
        epoch's batches, in step order, then one stacked gather ``(K, rows, ...)`` instead of
        one per step. Nothing else draws from a replay seed's generator during an epoch (its
        order was drawn before), and ``next_slots(a + b)`` is ``next_slots(a)`` then
        ``next_slots(b)`` (the same reshuffles at the same places), so every seed draws what
        its single run draws."""
        size = self.plugin.memory_batch_size
        total = sum(size or min(batch_size, n - start) for start in range(0, n, batch_size))
        slots = torch.stack([plugin.buffer.next_slots(total, run.generator)
                             for plugin, run in zip(self.plugins, self.runs)])
        seeds = torch.arange(len(self.methods), device=slots.device).unsqueeze(1)
        memory_x, memory_y, memory_ids = memory
        ids = memory_ids[seeds, slots] if self.first.train_masked else None
        return memory_x[seeds, slots], memory_y[seeds, slots], ids

    def _join(self, replayed: tuple[torch.Tensor | None, ...], used: int, x: torch.Tensor,
              y: torch.Tensor, ids: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """The next step's memory rows (as many as ``memory_batch_size``, or as the batch)
        appended to every seed's batch; returns the batch and the memory rows used so far."""
        size = self.plugin.memory_batch_size or x.shape[1]
        memory_x, memory_y, memory_ids = replayed
        assert memory_x is not None and memory_y is not None
        stop = used + size
        x = torch.cat([x, memory_x[:, used:stop]], dim=1)
        y = torch.cat([y, memory_y[:, used:stop]], dim=1)
        if memory_ids is not None:  # the experience ids only matter to masked outputs
            ids = torch.cat([ids, memory_ids[:, used:stop]], dim=1)
        return x, y, ids, stop

    def _augment(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
                 ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each seed's strategy joins its own memory rows to its batch (its own draws)."""
        axis = self.axis
        parts: dict[int, tuple[torch.Tensor, ...]] = {}
        for k in axis.active():
            with axis.guard(k, "method", self.runs[k].spec.method.name):
                parts[k] = self.methods[k].augment(self.runs[k], x[k], y[k], rows[k], ids[k])
        if not parts:
            return x, y, rows, ids
        stand_in = next(iter(parts.values()))  # a failed seed's slice: computed, ignored
        ordered = [parts.get(k, stand_in) for k in range(len(self.runs))]
        return tuple(torch.stack([part[j] for part in ordered]) for j in range(4))

    def _outputs(self, raw: torch.Tensor, y: torch.Tensor,
                 ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and targets as each seed's strategy reads them for training."""
        if not self.first.train_masked:
            return raw, y
        read = [method.read_outputs(raw[k], y[k], ids[k]) for k, method in enumerate(self.methods)]
        return torch.stack([r[0] for r in read]), torch.stack([r[1] for r in read])

    def _step(self, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """One training step of every seed (:meth:`ContinualStrategy.train_step`); ``(K,)``
        batch losses (no device sync)."""
        reference = self._reference() if isinstance(self.plugin, AGEMPlugin) else None
        raw = self.model(x)
        logits, targets = self._outputs(raw, y, ids)
        per_seed = _mean_cross_entropy(logits, targets)
        if self.teacher is not None:
            per_seed = per_seed + self._distillation(x, raw)
        for parameter in self.parameters:
            parameter.grad = None
        per_seed.sum().backward()
        if isinstance(self.plugin, SIPlugin):  # the task gradient and the weights before the step
            task_grad = [p.grad.detach().clone() for p in self.parameters]
            before = [p.detach().clone() for p in self.parameters]
        if reference is not None:
            self._project(reference)
        self._penalty_gradient()
        self._update()
        if isinstance(self.plugin, SIPlugin):
            for omega, grad, old, p in zip(self.omega, task_grad, before, self.parameters):
                omega.sub_(grad * (p.detach() - old))
        return per_seed.detach()

    def _distillation(self, x: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """Each seed's :meth:`LwF.distillation` from the stacked teachers' outputs: ``(K,)``."""
        with torch.no_grad():
            teacher = self.teacher(x)
        values = []
        for k, method in enumerate(self.plugins):
            assert isinstance(method, LwFPlugin)
            total = torch.zeros((), device=raw.device)
            for units in method.unit_groups:
                units = units.to(raw.device)
                log_p = F.log_softmax(raw[k][:, units] / method.temperature, dim=1)
                q = F.softmax(teacher[k][:, units] / method.temperature, dim=1)
                total = total + F.kl_div(log_p, q, reduction="batchmean")
            values.append(method.alpha * total)
        return torch.stack(values)

    def _reference(self) -> list[torch.Tensor] | None:
        """A-GEM's reference gradients: each seed's memory sample (its own draw), one
        stacked pass; None before any memory."""
        plugins = self.plugins
        if not all(len(p.memory_rows) for p in plugins):
            return None
        xs, ys, ids = [], [], []
        for method, run, stream in zip(plugins, self.runs, self.streams):
            assert isinstance(method, AGEMPlugin)
            pick = torch.randint(len(method.memory_rows), (method.sample_size,),
                                 generator=run.generator).to(method.memory_rows.device)
            rows, experience_ids = method.memory_rows[pick], method.memory_ids[pick]
            x, y = gather(run.dataset, stream, rows, experience_ids)
            xs.append(x)
            ys.append(y)
            ids.append(experience_ids)
        logits, targets = self._outputs(self.model(torch.stack(xs)), torch.stack(ys),
                                        torch.stack(ids))
        grads = torch.autograd.grad(_mean_cross_entropy(logits, targets).sum(),
                                    self.parameters, allow_unused=True)
        return [g.detach() if g is not None else torch.zeros_like(p)
                for g, p in zip(grads, self.parameters)]

    @torch.no_grad()
    def _project(self, reference: list[torch.Tensor]) -> None:
        """:meth:`AGEM.after_backward` per seed: where a seed's gradient points against its
        reference, project it onto the reference's half-space."""
        k = self.model.k
        current = [p.grad if p.grad is not None else torch.zeros_like(p)
                   for p in self.parameters]
        dot = sum((g * r).reshape(k, -1).sum(1) for g, r in zip(current, reference))
        norm = sum((r * r).reshape(k, -1).sum(1) for r in reference)
        assert isinstance(dot, torch.Tensor) and isinstance(norm, torch.Tensor)
        scale = torch.where(dot < 0, dot / norm, torch.zeros_like(dot))
        if not bool((dot < 0).any()):
            return
        for p, g, r in zip(self.parameters, current, reference):
            p.grad = g - scale.view(k, *([1] * (g.dim() - 1))) * r

    def _stack_penalty(self) -> None:
        """``A`` and ``B`` of every seed's quadratic penalty, stacked (empty: no penalty)."""
        self.curvature, self.pull = [], []
        active = self.axis.active()
        if (not active or not isinstance(self.plugin, QuadraticPenalty)
                or self.plugin.strength == 0):
            return
        reference = self.plugins[active[0]]
        assert isinstance(reference, QuadraticPenalty)
        if not reference.curvature:
            return
        zeros = [torch.zeros_like(a) for a in reference.curvature]
        # A failed seed's slice is still computed (and ignored): give it no penalty.
        self.curvature = self.model.stack(
            [p.curvature if k in active else zeros for k, p in enumerate(self.plugins)])
        self.pull = self.model.stack(
            [p.pull if k in active else zeros for k, p in enumerate(self.plugins)])

    def _penalty_gradient(self) -> None:
        """:meth:`QuadraticPenalty.after_backward`, stacked: the same four fused calls, in the same
        order, so each element's penalty gradient is rounded as its single run rounds it
        (Adam turns last-bit differences of near-zero gradients into steps of ``lr``; measured
        1e-3 apart with ``grad += (2 lambda A) theta - 2 lambda B`` instead)."""
        if not self.curvature:
            return
        with torch.no_grad():
            params = [p.detach() for p in self.parameters]
            penalty = torch._foreach_mul(self.curvature, params)
            torch._foreach_sub_(penalty, self.pull)
            torch._foreach_mul_(penalty, 2.0 * self.plugin.strength)
            for p in self.parameters:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            torch._foreach_add_([p.grad for p in self.parameters], penalty)

    def _update(self) -> None:
        """:meth:`ContinualStrategy.apply_update`, stacked."""
        first = self.first
        if first.optimizer_name != "sgd" or first.momentum:
            self.optimizer.step()
            return
        fused_sgd_step(self.parameters, first.lr, first.weight_decay)

    # ---------------------------------------------------------------------- consolidation

    def after_experience(self, i: int) -> None:
        """Each seed's ``after_experience``; EWC's Fisher computed stacked."""
        axis = self.axis
        experiences = self.experiences(i)
        fisher: list[list[torch.Tensor]] | None = None
        omega = self.model.unstack(self.omega) if isinstance(self.plugin, SIPlugin) else []
        if isinstance(self.plugin, EWCPlugin):
            fisher = self._fisher(experiences)
        for k, run in axis.each():
            method, plugin = self.methods[k], self.plugins[k]
            with axis.guard(k, "method", run.spec.method.name):
                if isinstance(plugin, SIPlugin):  # the path integral, this seed's slice
                    plugin.omega = omega[k]
                if fisher is None:
                    method.after_experience(run, experiences[k])
                    continue
                assert isinstance(plugin, EWCPlugin)
                plugin.consolidate(method, fisher[k])

    def _fisher(self, experiences: list[Experience]) -> list[list[torch.Tensor]]:
        """Every seed's :meth:`EWCPlugin.importance`: the mean over row-order minibatches
        of the squared gradient of the mean cross-entropy, in eval mode."""
        first = self.plugin
        assert isinstance(first, EWCPlugin)
        self.model.eval()
        rows = [e.train for e in experiences]
        ids = [torch.full_like(r, e.index) for r, e in zip(rows, experiences)]
        gathered = [gather(run.dataset, stream, r, e)
                    for run, stream, r, e in zip(self.runs, self.streams, rows, ids)]
        x_all = torch.stack([g[0] for g in gathered])
        y_all = torch.stack([g[1] for g in gathered])
        id_all = torch.stack(ids)
        size = first.fisher_batch(self.first)
        fisher = [torch.zeros_like(p) for p in self.parameters]
        batches = 0
        n = len(rows[0])
        for start in range(0, n, size):
            stop = start + size
            raw = self.model(x_all[:, start:stop])
            logits, targets = self._outputs(raw, y_all[:, start:stop], id_all[:, start:stop])
            grads = torch.autograd.grad(_mean_cross_entropy(logits, targets).sum(),
                                        self.parameters, allow_unused=True)
            for total, grad in zip(fisher, grads):
                if grad is not None:
                    total.add_(grad.detach() ** 2)
            batches += 1
        self.model.train()
        return self.model.unstack([total / max(batches, 1) for total in fisher])


def _mean_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each seed's mean cross-entropy over its batch: ``(K,)`` from ``(K, batch, classes)``."""
    k, batch = logits.shape[0], logits.shape[1]
    return F.cross_entropy(logits.reshape(k * batch, -1), targets.reshape(-1),
                           reduction="none").view(k, batch).mean(1)
