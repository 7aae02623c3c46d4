"""learn2learn interop: ``learn2learn.algorithms.MAML`` run on paralab episodes.

For users moving from learn2learn, and the reference that paralab's vectorised MAML is
tested against (same initial weights and episode -> same adapted query loss). learn2learn is
an optional dependency: its 0.2.0 sdist does not build on Python 3.11 as published
(learn2learn #413), ``scripts/build_learn2learn.sh`` builds a working wheel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from paralab import Batch
from paralab_fewshot.methods.base import EpisodicMethod
from paralab_fewshot.models import check_outputs

if TYPE_CHECKING:
    from paralab import RunContext
    from paralab_fewshot.episodes import TaskBatch

INSTALL_HINT = (
    "learn2learn is not installed (the l2l_maml method needs it). Its 0.2.0 release does not "
    "compile on Python >= 3.11 from PyPI; build a wheel with `scripts/build_learn2learn.sh` and "
    'install it: `pip install "$(scripts/build_learn2learn.sh)"`'
)


def import_learn2learn() -> Any:
    """The ``learn2learn`` module, or an ImportError that says how to install it."""
    try:
        import learn2learn
    except ImportError as error:
        raise ImportError(f"{INSTALL_HINT} ({error})") from error
    return learn2learn


def l2l_query_logits(maml: Any, batch: TaskBatch, steps: int, *, task: int) -> torch.Tensor:
    """One task the learn2learn way: ``clone()``, ``adapt()`` ``steps`` times, score queries."""
    learner = maml.clone()
    for _ in range(steps):
        support = learner(batch.support_x[task])[:, : batch.ways]
        learner.adapt(F.cross_entropy(support, batch.support_y[task]))
    return learner(batch.query_x[task])[:, : batch.ways]


class L2LMAML(EpisodicMethod):
    """MAML as learn2learn runs it: a loop of ``clone()``/``adapt()`` per task."""

    name = "l2l_maml"

    def __init__(
        self,
        inner_lr: float = 0.4,
        inner_steps: int = 1,
        eval_inner_steps: int = 0,
        meta_lr: float = 0.001,
        first_order: bool = False,
    ) -> None:
        super().__init__(meta_lr)
        self.set_inner_loop(inner_lr, inner_steps, eval_inner_steps)
        self.l2l = import_learn2learn()
        self.first_order = first_order
        self.maml: Any = None

    def wrap(self, model: nn.Module) -> Any:
        """The model wrapped in ``learn2learn.algorithms.MAML`` (it shares the parameters)."""
        if self.maml is None or self.maml.module is not model:
            self.maml = self.l2l.algorithms.MAML(
                model, lr=self.inner_lr, first_order=self.first_order
            )
        return self.maml

    def setup(
        self, run: RunContext | None, model: nn.Module, ways: int, sample: torch.Tensor
    ) -> None:
        check_outputs(model, sample, ways, self.name)
        self.wrap(model)
        super().setup(run, model, ways, sample)

    def query_logits(self, model: nn.Module, batch: TaskBatch, steps: int) -> torch.Tensor:
        maml = self.wrap(model)
        return torch.stack(
            [l2l_query_logits(maml, batch, steps, task=t) for t in range(batch.tasks)]
        )

    def meta_step(self, run: RunContext | None, model: nn.Module, batch: TaskBatch) -> float:
        """learn2learn's own recipe: per task, adapt a clone and backpropagate its query loss
        (accumulating into the shared parameters), then one optimizer step."""
        maml = self.wrap(model)
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for task in range(batch.tasks):
            logits = l2l_query_logits(maml, batch, self.inner_steps, task=task)
            loss = F.cross_entropy(logits, batch.query_y[task])
            if run is not None and run.loss_terms:
                loss = loss + run.extra_loss(
                    Batch(
                        batch.query_x[task],
                        batch.query_y[task],
                        batch.query_indices[task],
                        logits,
                        model,
                        run,
                    )
                )
            (loss / batch.tasks).backward()
            total += float(loss.detach())
        self.optimizer.step()
        return total / batch.tasks

    def predict(self, run: RunContext | None, model: nn.Module, batch: TaskBatch) -> torch.Tensor:
        return self.query_logits(model, batch, self.eval_inner_steps).detach()
