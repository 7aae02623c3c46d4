"""The ``episodic`` protocol for K seeds at once: :func:`paralab.run_seeds` stacks them.

:class:`Episodic` is :class:`paralab_fewshot.protocol.Episodic` plus the seed axis
(``ProtocolSpec(seed_axis=True)``): ``seed_axis_why_not(runs)`` and ``execute_seeds(runs,
axis)``. Each seed keeps its own run, protocol object (samplers, Lake's runs), method, phases,
evaluations and folder; what is shared is the arithmetic of meta-training.

What each seed does is :meth:`Episodic.execute`'s loop, step for step: its method's
``setup``, then per outer step ``train.sample(meta_batch, run.generator)`` from its own
generator, :meth:`TaskBatch.gather`, one outer update; per phase the mean outer loss and a
meta-validation on the episodes of ``_generator(seed, 1)``; then a meta-test phase on those of
``_generator(seed, 2)`` (and Lake's runs when asked). Evaluation runs per seed, through the
seed's own method and ``run.model`` (a view of its slice of the stacked model): it is what
the separate run evaluates, with the same code.

The outer updates of the K seeds are one computation:

* ``protonet``: every seed's episodes go through the stacked model's embedding (its layers
  but the head, or all of them for ``embedding = "output"``) as one batch ``(K, tasks * rows,
  ...)``; Conv-4's :class:`~paralab_fewshot.models.BatchStatNorm2d` normalises each seed's
  episode with its own statistics (:func:`~paralab_fewshot.models.episode_rows`), as
  :func:`~paralab_fewshot.models.embed_episodes` does one episode at a time;
* ``maml`` and ``fomaml``: the seed's own functional MAML (``MAML.query_logits`` with explicit
  parameters: its inner loop, ``vmap`` over tasks, second order unless first-order) under
  ``torch.func.vmap`` over the seed dimension of the stacked parameters.

The K query losses are summed (each seed's parameters get exactly its own gradient) and one
optimizer over the stacked parameters steps them: the class and hyperparameters of the one
the seed's method built in ``setup`` (Adam), an elementwise update, so each seed's update.

Run one after another (``seed_axis_why_not`` says why): ``anil``, ``reptile``, ``finetune``,
``l2l_maml`` and any subclass of a stacked method; MAML's ``factored`` engine (its inner loop
is ``autograd.grad`` on layer outputs, which ``vmap`` cannot batch over seeds); models with
buffers (``embed_episodes`` runs them episode by episode, updating running statistics after
each) or without a stacked form; loss terms; a resumed run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from paralab import ELEMENTWISE_OPTIMIZERS, StackedModel
from paralab import STACKED_CHANNELS as CHANNELS
from paralab_fewshot.episodes import TaskBatch
from paralab_fewshot.evaluation import evaluate_episodes, record
from paralab_fewshot.lowrank import supports
from paralab_fewshot.methods.maml import FOMAML, MAML
from paralab_fewshot.methods.protonet import ProtoNet, prototype_logits
from paralab_fewshot.models import episode_rows
from paralab_fewshot.protocol import (
    _TEST_STREAM,
    _VALIDATION_STREAM,
    _generator,
    _untouched_rng,
)
from paralab_fewshot.protocol import Episodic as SingleEpisodic

if TYPE_CHECKING:
    from paralab import RunContext

STACKED_METHODS: tuple[type, ...] = (ProtoNet, MAML, FOMAML)
"""Methods whose outer step :class:`Episodic` reproduces stacked (the exact classes: a
subclass, ANIL included, changes the step)."""

NOT_STACKED: dict[str, str] = {
    "ANIL": "ANIL's embedding-then-head inner loop has no stacked step yet",
    "Reptile": "Reptile's outer step (SGD on parameters minus the mean adapted parameters) "
               "has no stacked step yet",
    "Finetune": "finetune pretrains on the dataset's labels and fits heads per episode: no "
                "stacked step yet",
    "L2LMAML": "learn2learn's MAML clones and adapts modules task by task, which cannot be "
               "stacked",
}
"""Why the other episodic methods run their seeds one after another."""


class Episodic(SingleEpisodic):
    """The ``episodic`` protocol; K seeds of ProtoNets or (FO)MAML can run stacked."""

    @property
    def batch_size(self) -> int:
        """Rows one outer step feeds the model (every episode's support and queries): what
        :func:`paralab.seeds.memory_per_seed` sizes one seed's activations by."""
        shape = self.train_shape
        return self.meta_batch * shape.ways * shape.per_class

    # ------------------------------------------------------------------------- checking

    def seed_axis_why_not(self, runs: list[RunContext]) -> str:
        """Why these runs cannot meta-train stacked (``""``: they can)."""
        for run in runs:
            why = _why_not_run(run)
            if why:
                return why
        return ""

    # -------------------------------------------------------------------------- running

    def execute_seeds(self, runs: list[RunContext], axis: Any) -> None:
        """:meth:`execute` for every run of ``axis`` at once (meta-training stacked)."""
        protocols = [_protocol_of(run) for run in runs]
        for k, run in axis.each():
            with axis.guard(k, "protocol", run.spec.protocol.name):
                if protocols[k]._prepared is None:
                    protocols[k].validate(run)
        for k, run in axis.each():
            with axis.guard(k, "method", run.spec.method.name):
                train = protocols[k]._prepared[0]["meta_train"]
                dataset = run.dataset
                with _untouched_rng(dataset.device):
                    run.method.setup(run, run.model, protocols[k].ways_needed(),
                                     dataset.x[train.table[:, 0][:2].to(dataset.device)])
        if not axis.active():
            return
        stacked = axis.model
        first = runs[axis.active()[0]]
        step = _ProtoNetStep(stacked, first) if isinstance(first.method, ProtoNet) \
            else _MAMLStep(stacked, first)
        stacked.train()
        for run in runs:
            run.model.train()
        phases = list(range(0, self.meta_iterations, self.eval_every))
        sizes = [_sizes(p) for p in protocols]
        axis.progress(len(phases))
        batches: list[TaskBatch | None] = [None] * len(runs)
        for index, start in enumerate(phases):
            stop = min(start + self.eval_every, self.meta_iterations)

            def info(k: int, start: int = start, stop: int = stop) -> dict[str, Any]:
                return {"steps": [start, stop], **sizes[k]}

            with axis.phases("meta_batch", index, info) as opened:
                losses: list[list[float]] = []
                for outer in range(start, stop):
                    self.schedule(step.optimizer, outer)  # one schedule: the seeds share lr
                    for k, run in axis.each():  # each seed's draws, in its own order
                        train = protocols[k]._prepared[0]["meta_train"]
                        indices = train.sample(self.meta_batch, run.generator)
                        batches[k] = TaskBatch.gather(run.dataset, indices, self.shape.shots)
                    losses.append(step(_fill(batches)).tolist())
                for k, phase in opened.items():
                    if k in axis.failed:
                        continue
                    with axis.guard(k, "protocol", runs[k].spec.protocol.name):
                        phase.metrics["meta_train/loss"] = sum(row[k] for row in losses) / len(
                            losses)
                        if self.lr_halving_every:
                            phase.metrics["meta_train/lr"] = step.optimizer.param_groups[0]["lr"]
                        validation = protocols[k]._prepared[0]["meta_val"]
                        if validation is not None:
                            accuracy, _ = evaluate_episodes(
                                runs[k], runs[k].method, validation,
                                episodes=self.val_episodes, meta_batch=self.eval_meta_batch,
                                name="meta_val",
                                generator=_generator(runs[k].seed, _VALIDATION_STREAM),
                            )
                            protocols[k].keep_if_best(runs[k], index, accuracy)
                        protocols[k]._phases_done = index + 1

        def test_info(k: int) -> dict[str, Any]:
            return {"ways": self.shape.ways, "shots": self.shape.shots,
                    "queries": self.shape.queries, **sizes[k]}

        for k, run in axis.each():  # each seed's best-on-validation model, as its run picks
            with axis.guard(k, "protocol", run.spec.protocol.name):
                protocols[k].restore_best(run)
        with axis.phases("meta_test", 0, test_info) as opened:
            for k in opened:
                if k in axis.failed:
                    continue
                run, protocol = runs[k], protocols[k]
                with axis.guard(k, "protocol", run.spec.protocol.name):
                    samplers, lake = protocol._prepared
                    evaluate_episodes(
                        run, run.method, samplers["meta_test"], episodes=self.eval_episodes,
                        meta_batch=self.eval_meta_batch, name="meta_test",
                        generator=_generator(run.seed, _TEST_STREAM),
                    )
                    if lake is not None:
                        record(run, run.method, [lake[1]], "lake_runs", dataset=lake[0])
                    protocol._phases_done = len(phases) + 1


# ------------------------------------------------------------------------------- checks


def _protocol_of(run: RunContext) -> SingleEpisodic:
    """The run's own protocol object (each seed has one, holding its samplers)."""
    protocol = run.protocol
    assert isinstance(protocol, SingleEpisodic)
    return protocol


def _why_not_run(run: RunContext) -> str:
    """Why this seed's run has no stacked meta-step (``""``: it has)."""
    method, model = run.method, run.model
    kind = type(method)
    if kind not in STACKED_METHODS:
        reason = NOT_STACKED.get(kind.__name__, f"{kind.__name__} is not one of them")
        return (f"method {run.spec.method.name!r}: {reason} (stacked: protonet, maml, "
                "fomaml)")
    if run.loss_terms:
        return (f"loss terms {sorted(run.loss_terms)} see one seed's query predictions at a "
                "time (not stacked yet)")
    if _protocol_of(run)._restored is not None:
        return "a resumed run continues one seed's checkpoint"
    if not isinstance(model, nn.Module):
        return f"the model is a {type(model).__name__}, not a torch module"
    if next(iter(model.buffers()), None) is not None:
        return ("the model has buffers: the single run embeds or adapts episode by episode, "
                "updating them after each, which a stacked step cannot replay")
    optimizer = getattr(method, "optimizer", None)
    if optimizer is not None and (type(optimizer) not in ELEMENTWISE_OPTIMIZERS
                                  or len(optimizer.param_groups) != 1):
        return (f"method {kind.__name__}'s optimizer {type(optimizer).__name__} is not one "
                "elementwise torch optimizer with one parameter group")
    if isinstance(method, ProtoNet):
        if method.embedding == "penultimate" and not (
                isinstance(model, nn.Sequential) and type(model[-1]) is nn.Linear):
            return ("protonet embeds with the model minus its head: stacked only for an "
                    "nn.Sequential ending in an nn.Linear")
        return ""
    if method.engine in ("auto", "factored") and supports(model):
        return (f"{kind.__name__.lower()} with engine = {method.engine!r} on this model uses "
                "the factored inner loop (autograd.grad on layer outputs), which vmap cannot "
                "batch over seeds; engine = 'vmap' stacks")
    return ""


def _sizes(protocol: SingleEpisodic) -> dict[str, int]:
    samplers = protocol._prepared[0]
    return {f"{key}_classes": int(s.classes.numel()) for key, s in samplers.items() if s}


def _fill(batches: list[TaskBatch | None]) -> list[TaskBatch]:
    """Every position's meta-batch: a failed seed (which draws no more) keeps its last one, so
    the stacked step keeps its shape; its slice is no run's any more."""
    last = next(b for b in batches if b is not None)
    filled = []
    for batch in batches:
        last = batch if batch is not None else last
        filled.append(last)
    return filled


# -------------------------------------------------------------------------------- steps


def stacked_optimizer(stacked: StackedModel, run: RunContext) -> torch.optim.Optimizer:
    """The optimizer ``run``'s method built in ``setup``, made again over the stacked
    tensors of the same parameters, with the same hyperparameters."""
    own = run.method.optimizer
    names = {id(p): name for name, p in run.model.named_parameters()}
    group = own.param_groups[0]
    params = [stacked.tensors[names[id(p)]] for p in group["params"]]
    options = {key: value for key, value in group.items() if key != "params"}
    return type(own)(params, **options)


def _module_layout(stacked: StackedModel, name: str) -> torch.Tensor:
    """A stacked tensor ``(K, *shape)`` with each seed's slice in its module's layout."""
    tensor = stacked.tensors[name]
    return tensor.transpose(1, 2) if name in stacked.transposed else tensor


class _ProtoNetStep:
    """One outer step of every seed's ProtoNet: the stacked embedding, per-seed prototypes,
    the summed query losses, one optimizer step."""

    def __init__(self, stacked: StackedModel, run: RunContext) -> None:
        self.stacked = stacked
        method: ProtoNet = run.method
        self.layers = stacked.layers[:-1] if method.embedding == "penultimate" \
            else stacked.layers
        self.optimizer = stacked_optimizer(stacked, run)

    def embed(self, rows: torch.Tensor) -> torch.Tensor:
        """``(K, tasks, rows, d)`` embeddings of ``(K, tasks, rows, ...)``, each seed's
        episode normalised on its own."""
        k, tasks, per_task = rows.shape[:3]
        x, layout = rows.reshape(k, tasks * per_task, *rows.shape[3:]), "rows"
        with episode_rows(per_task):
            for layer in self.layers:
                x, layout = layer.apply(x, layout)
        if layout == CHANNELS:
            x = x.reshape(x.shape[0], k, -1).transpose(0, 1)
        return x.reshape(k, tasks, per_task, -1)

    def __call__(self, batches: list[TaskBatch]) -> torch.Tensor:
        first = batches[0]
        n_support, ways = first.support_x.shape[1], first.ways
        rows = torch.stack([torch.cat([b.support_x, b.query_x], dim=1) for b in batches])
        embedded = self.embed(rows)
        k, tasks = embedded.shape[:2]
        flat = embedded.flatten(0, 1)
        logits = prototype_logits(flat[:, :n_support], flat[:, n_support:], ways)
        targets = torch.stack([b.query_y for b in batches])
        losses = torch.stack([
            F.cross_entropy(logits[i * tasks:(i + 1) * tasks].flatten(0, 1),
                            targets[i].flatten()) for i in range(k)])
        return _update(self.optimizer, losses)


class _MAMLStep:
    """One outer step of every seed's (FO)MAML: the seed's functional MAML under ``vmap``
    over the seed dimension of the stacked parameters."""

    def __init__(self, stacked: StackedModel, run: RunContext) -> None:
        self.stacked = stacked
        self.method: MAML = run.method
        self.model = run.model
        self.names = [name for name, _ in run.model.named_parameters()]
        self.optimizer = stacked_optimizer(stacked, run)

    def __call__(self, batches: list[TaskBatch]) -> torch.Tensor:
        method, model, ways = self.method, self.model, batches[0].ways

        def one_seed(params: dict[str, torch.Tensor], support_x: torch.Tensor,
                     support_y: torch.Tensor, query_x: torch.Tensor,
                     query_y: torch.Tensor) -> torch.Tensor:
            batch = TaskBatch(support_x, support_y, support_y, query_x, query_y, query_y, ways)
            logits = method.query_logits(model, batch, steps=method.inner_steps,
                                         first_order=method.first_order, params=params)
            return F.cross_entropy(logits.flatten(0, 1), query_y.flatten())

        params = {name: _module_layout(self.stacked, name) for name in self.names}
        fields: Callable[[str], torch.Tensor] = lambda f: torch.stack(  # noqa: E731
            [getattr(b, f) for b in batches])
        losses = vmap(one_seed, randomness="different")(
            params, fields("support_x"), fields("support_y"), fields("query_x"),
            fields("query_y"))
        return _update(self.optimizer, losses)


def _update(optimizer: torch.optim.Optimizer, losses: torch.Tensor) -> torch.Tensor:
    """Backpropagate the sum of the ``(K,)`` per-seed losses, step; the losses, detached."""
    optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()
    optimizer.step()
    return losses.detach()
