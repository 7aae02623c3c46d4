"""MAML (Finn, Abbeel and Levine, ICML 2017), its first-order variant, and ANIL.

MAML adapts every parameter on each task's support set with a few gradient steps and trains
the initial parameters so that the adapted ones do well on the task's queries. The inner loop
runs for all tasks of a meta-batch at once (:mod:`paralab_fewshot.adaptation`). ANIL (Raghu
et al., ICLR 2020) adapts only the linear head: the embedding of every task is computed in a
single forward pass, and only the small head is adapted per task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from paralab_fewshot.adaptation import (
    TaskMap,
    adapted_query_logits,
    linear_forward,
    model_forward,
)
from paralab_fewshot.lowrank import FactoredMAML, supports
from paralab_fewshot.methods.base import EpisodicMethod, query_loss
from paralab_fewshot.models import check_outputs, embed_episodes, split_head

if TYPE_CHECKING:
    from paralab import RunContext
    from paralab_fewshot.episodes import TaskBatch


class MAML(EpisodicMethod):
    """Model-agnostic meta-learning, second order unless ``first_order``.

    ``inner_steps`` gradient steps of size ``inner_lr`` adapt the model during meta-training,
    ``eval_inner_steps`` (0: the same) at evaluation; the outer optimizer is Adam(``meta_lr``).
    The model's first ``ways`` logits score an episode's classes. ``engine`` is one of
    ``paralab_fewshot.MAML_ENGINES`` (declared there; the spec check refuses others).
    """

    name = "maml"

    def __init__(
        self,
        inner_lr: float = 0.4,
        inner_steps: int = 1,
        eval_inner_steps: int = 0,
        meta_lr: float = 0.001,
        first_order: bool = False,
        engine: str = "auto",
    ) -> None:
        super().__init__(meta_lr)
        self.set_inner_loop(inner_lr, inner_steps, eval_inner_steps)
        self.first_order = first_order
        self.engine = engine
        self.task_map = TaskMap(engine != "loop")
        self.factored: FactoredMAML | None = None

    def setup(
        self, run: RunContext | None, model: nn.Module, ways: int, sample: torch.Tensor
    ) -> None:
        check_outputs(model, sample, ways, self.name)
        if self.engine == "factored" and not supports(model):
            raise ValueError(
                f"{self.name}: engine = 'factored' needs an nn.Sequential of Linear layers and "
                f"element-wise activations (like mlp), not {type(model).__name__}; use 'auto'"
            )
        if self.engine in ("auto", "factored") and supports(model):
            self.factored = FactoredMAML(model)  # type: ignore[arg-type]
        super().setup(run, model, ways, sample)

    def validate(self, run: RunContext) -> None:
        """An evaluation with more ways than meta-training would read head outputs whose
        initialisation meta-training never learned (a 5-way MAML evaluated 20-way adapts 15
        random outputs from scratch in a few inner steps): refuse it, naming the options."""
        protocol = run.protocol
        train, evaluated = getattr(protocol, "train_shape", None), getattr(protocol, "shape", None)
        if train is not None and evaluated is not None:
            lake = 20 if getattr(protocol, "lake_runs", False) else 0
            ways = max(evaluated.ways, lake)
            if ways > train.ways:
                where = "lake_runs = true (20-way)" if lake > evaluated.ways else \
                    f"ways = {evaluated.ways}"
                raise ValueError(
                    f"{self.name} meta-trains {train.ways}-way, so its head's outputs beyond "
                    f"{train.ways} are never meta-learned, but {where} evaluates {ways}-way "
                    f"with them; meta-train with train_ways = {ways} (or evaluate at most "
                    f"{train.ways}-way), or use protonet, whose prototypes need no head"
                )
        super().validate(run)

    def query_logits(
        self,
        model: nn.Module,
        batch: TaskBatch,
        *,
        steps: int,
        first_order: bool,
        params: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Adapt on each support set; ``(tasks, queries, ways)`` logits of the queries."""
        if params is None:
            params = dict(model.named_parameters())
        if self.factored is not None and self.factored.model is model:
            return self.factored.query_logits(
                params,
                batch.support_x,
                batch.support_y,
                batch.query_x,
                batch.ways,
                steps=steps,
                lr=self.inner_lr,
                first_order=first_order,
            )
        buffers = dict(model.named_buffers())
        return adapted_query_logits(
            model_forward(model, batch.ways, buffers),
            params,
            batch.support_x,
            batch.support_y,
            batch.query_x,
            steps=steps,
            lr=self.inner_lr,
            first_order=first_order,
            task_map=self.task_map,
        )

    def meta_step(self, run: RunContext | None, model: nn.Module, batch: TaskBatch) -> float:
        logits = self.query_logits(
            model, batch, steps=self.inner_steps, first_order=self.first_order
        )
        return self.apply(run, query_loss(logits, batch), batch, logits, model)

    def predict(self, run: RunContext | None, model: nn.Module, batch: TaskBatch) -> torch.Tensor:
        params = {key: value.detach() for key, value in model.named_parameters()}
        with torch.no_grad():  # torch.func.grad still differentiates the inner loop
            return self.query_logits(
                model, batch, steps=self.eval_inner_steps, first_order=True, params=params
            )


class FOMAML(MAML):
    """First-order MAML: the same inner loop, its gradients treated as constants."""

    name = "fomaml"

    def __init__(
        self,
        inner_lr: float = 0.4,
        inner_steps: int = 1,
        eval_inner_steps: int = 0,
        meta_lr: float = 0.001,
        engine: str = "auto",
    ) -> None:
        super().__init__(inner_lr, inner_steps, eval_inner_steps, meta_lr, True, engine)


class ANIL(MAML):
    """Almost No Inner Loop: MAML that adapts only the last linear layer (second order).

    The heads of a meta-batch adapt under ``vmap`` (or a loop): there is no factored engine,
    so its spec declares only ``auto``, ``vmap`` and ``loop``."""

    name = "anil"

    def setup(
        self, run: RunContext | None, model: nn.Module, ways: int, sample: torch.Tensor
    ) -> None:
        self.encoder, self.head, _ = split_head(model)
        if self.head.out_features < ways:
            raise ValueError(
                f"anil: the model's head has {self.head.out_features} outputs but episodes are "
                f"{ways}-way; use a model with >= {ways} outputs (conv4's out_features)"
            )
        EpisodicMethod.setup(self, run, model, ways, sample)

    def query_logits(
        self,
        model: nn.Module,
        batch: TaskBatch,
        *,
        steps: int,
        first_order: bool,
        params: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        n_support = batch.support_x.shape[1]
        # each episode embedded on its own (batch statistics never mix episodes)
        features = embed_episodes(self.encoder, torch.cat([batch.support_x, batch.query_x], 1))
        support, query = features[:, :n_support], features[:, n_support:]
        head = {"weight": self.head.weight, "bias": self.head.bias}
        if params is not None:
            head = {key: value.detach() for key, value in head.items()}
        return adapted_query_logits(
            linear_forward(batch.ways),
            head,
            support,
            batch.support_y,
            query,
            steps=steps,
            lr=self.inner_lr,
            first_order=first_order,
            task_map=self.task_map,
        )
