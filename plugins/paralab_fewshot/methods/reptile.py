"""Reptile (Nichol, Achiam and Schulman, 2018): first-order meta-learning without a query loss.

Each task adapts a copy of the parameters with ``inner_steps`` SGD steps on all its examples;
the initial parameters then move towards the mean adapted parameters. The tasks of a
meta-batch adapt together under ``vmap``; the outer step is an optimizer step whose
"gradient" is ``parameters - mean(adapted)`` (SGD with ``meta_lr`` = Reptile's epsilon).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from paralab_fewshot.adaptation import (
    TaskMap,
    adapted_params,
    adapted_query_logits,
    model_forward,
)
from paralab_fewshot.methods.base import EpisodicMethod, query_loss
from paralab_fewshot.models import check_outputs

if TYPE_CHECKING:
    from paralab import RunContext
    from paralab_fewshot.episodes import TaskBatch


class Reptile(EpisodicMethod):
    """Reptile with SGD in the inner loop and SGD(``meta_lr``) as the outer step.

    Its outer "gradient" is a difference of parameters, not the gradient of a loss, so it
    adds no loss terms; its spec says ``applies_losses=False`` and the spec check refuses a
    spec pairing it with ``losses``."""

    name = "reptile"

    def __init__(
        self,
        inner_lr: float = 0.1,
        inner_steps: int = 5,
        eval_inner_steps: int = 0,
        meta_lr: float = 1.0,
        engine: str = "auto",
    ) -> None:
        super().__init__(meta_lr)
        self.set_inner_loop(inner_lr, inner_steps, eval_inner_steps)
        self.task_map = TaskMap(engine != "loop")

    def setup(
        self, run: RunContext | None, model: nn.Module, ways: int, sample: torch.Tensor
    ) -> None:
        check_outputs(model, sample, ways, self.name)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=self.meta_lr)

    def meta_step(self, run: RunContext | None, model: nn.Module, batch: TaskBatch) -> float:
        params = {key: value.detach() for key, value in model.named_parameters()}
        forward = model_forward(model, batch.ways, dict(model.named_buffers()))
        x = torch.cat([batch.support_x, batch.query_x], dim=1)
        y = torch.cat([batch.support_y, batch.query_y], dim=1)
        with torch.no_grad():
            adapted = adapted_params(
                forward,
                params,
                x,
                y,
                steps=self.inner_steps,
                lr=self.inner_lr,
                task_map=self.task_map,
            )
            logits = forward(params, batch.query_x.flatten(0, 1)).reshape(
                batch.tasks, -1, batch.ways
            )
            loss = query_loss(logits, batch)
        for key, parameter in model.named_parameters():
            parameter.grad = params[key] - adapted[key].mean(dim=0)
        assert self.optimizer is not None
        self.optimizer.step()
        return float(loss)

    def predict(self, run: RunContext | None, model: nn.Module, batch: TaskBatch) -> torch.Tensor:
        params = {key: value.detach() for key, value in model.named_parameters()}
        with torch.no_grad():
            return adapted_query_logits(
                model_forward(model, batch.ways, dict(model.named_buffers())),
                params,
                batch.support_x,
                batch.support_y,
                batch.query_x,
                steps=self.eval_inner_steps,
                lr=self.inner_lr,
                first_order=True,
                task_map=self.task_map,
            )
