"""The base of the episodic methods, on the ``episodic`` protocol's method interface.

A method sees meta-batches of episodes (:class:`~paralab_fewshot.episodes.TaskBatch`) and
does two things: one outer update from a meta-batch (:meth:`EpisodicMethod.meta_step`) and
query logits for a meta-batch without learning from it (:meth:`EpisodicMethod.predict`).
Everything else (sampling, phases, evaluation with confidence intervals) is the protocol's.
The contract is :class:`paralab.EpisodicMethod`; this base adds an Adam optimizer, the
inner-loop options and the loss-term hook-up. Options are declared, with their ranges, in
``paralab_fewshot/__init__.py``; the host checks a spec against them before building.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from paralab import Batch
from paralab import EpisodicMethod as EpisodicInterface

if TYPE_CHECKING:
    from paralab import RunContext
    from paralab_fewshot.episodes import TaskBatch


class EpisodicMethod(EpisodicInterface):
    """Base class: an optimizer over the model's parameters and the loss-term hook-up.

    Subclasses implement :meth:`meta_step` and :meth:`predict` (abstract in
    :class:`paralab.EpisodicMethod`); a method whose ``meta_step`` optimizes a loss adds the
    spec's loss terms through :meth:`apply` (or ``run.extra_loss``), one that cannot says
    ``applies_losses=False`` in its ``MethodSpec``.
    """

    name = "episodic"

    def __init__(self, meta_lr: float = 0.001) -> None:
        self.meta_lr = meta_lr
        self.optimizer: torch.optim.Optimizer | None = None

    def set_inner_loop(self, inner_lr: float, inner_steps: int, eval_inner_steps: int) -> None:
        """Keep the inner-loop options shared by the gradient-based methods (MAML and its
        variants, Reptile, learn2learn's MAML); ``eval_inner_steps`` 0 means ``inner_steps``."""
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

    def state_dict(self) -> dict[str, Any]:
        """The outer optimizer's state (Adam's moments), for the protocol's checkpoints; the
        inner loops start afresh from the model's weights at every meta-batch."""
        return {"optimizer": None if self.optimizer is None else self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back :meth:`state_dict` after :meth:`setup`."""
        if state["optimizer"] is not None:
            if self.optimizer is None:
                raise RuntimeError(f"{self.name}: setup() must run before load_state_dict()")
            self.optimizer.load_state_dict(state["optimizer"])

    def validate(self, run: RunContext) -> None:
        """Before training, check that the run's model serves this method (the host reports a
        ``ValueError`` here as a spec error naming the method)."""
        ways_needed = getattr(run.protocol, "ways_needed", None)
        if callable(ways_needed) and run.model is not None:
            self.setup(run, run.model, ways_needed(), run.dataset.x[:2])

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
