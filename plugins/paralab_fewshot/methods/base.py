"""The method interface of the ``episodic`` protocol.

A method sees meta-batches of episodes (:class:`~paralab_fewshot.episodes.TaskBatch`) and
does two things: one outer update from a meta-batch (:meth:`EpisodicMethod.meta_step`) and
query logits for a meta-batch without learning from it (:meth:`EpisodicMethod.predict`).
Everything else (sampling, phases, evaluation with confidence intervals) is the protocol's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from paralab.context import Batch

if TYPE_CHECKING:
    from paralab.context import RunContext
    from paralab_fewshot.episodes import TaskBatch


class EpisodicMethod:
    """Base class: an optimizer over the model's parameters and the loss-term hook-up."""

    name = "episodic"

    def __init__(self, meta_lr: float = 0.001) -> None:
        if meta_lr <= 0:
            raise ValueError(f"{self.name}: meta_lr must be positive, got {meta_lr}")
        self.meta_lr = meta_lr
        self.optimizer: torch.optim.Optimizer | None = None

    def set_inner_loop(self, inner_lr: float, inner_steps: int, eval_inner_steps: int) -> None:
        """Check and keep the inner-loop options shared by the gradient-based methods
        (MAML and its variants, Reptile, learn2learn's MAML); ``eval_inner_steps`` 0 means
        ``inner_steps``."""
        if inner_lr <= 0 or inner_steps < 1 or eval_inner_steps < 0:
            raise ValueError(
                f"{self.name}: inner_lr must be positive and inner_steps >= 1, eval_inner_steps "
                f">= 0 (0 = inner_steps); got {inner_lr}, {inner_steps}, {eval_inner_steps}"
            )
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.eval_inner_steps = eval_inner_steps or inner_steps

    def setup(
        self, run: RunContext | None, model: nn.Module, ways: int, sample: torch.Tensor
    ) -> None:
        """Prepare for episodes of up to ``ways`` classes; ``sample`` is a few dataset inputs.

        Called by the protocol before training; raise here (not midway) when the model
        cannot serve this method.
        """
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.meta_lr)

    def validate(self, run: RunContext) -> None:
        """Before training, check that the run's model serves this method (the host reports a
        ``ValueError`` here as a spec error naming the method)."""
        ways_needed = getattr(run.protocol, "ways_needed", None)
        if callable(ways_needed) and run.model is not None:
            self.setup(run, run.model, ways_needed(), run.dataset.x[:2])

    def meta_step(self, run: RunContext | None, model: nn.Module, batch: TaskBatch) -> float:
        """One outer update from a meta-batch; returns the mean query loss."""
        raise NotImplementedError

    def predict(self, run: RunContext | None, model: nn.Module, batch: TaskBatch) -> torch.Tensor:
        """Query logits ``(tasks, ways * queries, ways)`` after learning from each support set."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------ helpers

    def apply(
        self,
        run: RunContext | None,
        loss: torch.Tensor,
        batch: TaskBatch,
        logits: torch.Tensor,
        model: nn.Module,
    ) -> float:
        """Add the spec's loss terms on the query predictions, then take the optimizer step."""
        if run is not None and run.loss_terms:
            flat = Batch(
                inputs=batch.query_x.flatten(0, 1),
                targets=batch.query_y.flatten(),
                indices=batch.query_indices.flatten(),
                logits=logits.flatten(0, 1),
                model=model,
                run=run,
            )
            loss = loss + run.extra_loss(flat)
        if self.optimizer is None:
            raise RuntimeError(f"{self.name}: setup() must run before meta_step()")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def query_loss(logits: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """Mean cross-entropy over every query of every task."""
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.query_y.flatten())
