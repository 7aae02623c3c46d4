"""The fine-tuning baseline (Chen et al., "A Closer Look at Few-shot Classification", 2019).

Meta-training is plain supervised learning: the whole model is trained with cross-entropy on
the dataset's own labels of every example the meta-batch's episodes hold (all meta-train
classes, so the model needs an output per dataset class). At evaluation the embedding is
frozen and a fresh linear head per episode is fitted to the support set, for all episodes at
once: the heads are one ``(tasks, ways, dim)`` tensor trained by full-batch gradient descent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from paralab import Batch
from paralab_fewshot.methods.base import EpisodicMethod
from paralab_fewshot.models import embed_episodes, split_head

if TYPE_CHECKING:
    from paralab import RunContext
    from paralab_fewshot.episodes import TaskBatch


def fit_linear_heads(
    support: torch.Tensor, labels: torch.Tensor, ways: int, *, steps: int, lr: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax-regression heads ``(tasks, ways, d)``, ``(tasks, ways)`` on each task's support.

    Features are L2-normalised first (what makes a single learning rate work for any
    backbone); the tasks' heads are trained together by gradient descent from zero.
    """
    tasks, _, dim = support.shape
    weight = torch.zeros(tasks, ways, dim, device=support.device, requires_grad=True)
    bias = torch.zeros(tasks, ways, device=support.device, requires_grad=True)
    optimizer = torch.optim.SGD([weight, bias], lr=lr, momentum=0.9)
    with torch.enable_grad():
        for _ in range(steps):
            logits = torch.einsum("tnd,twd->tnw", support, weight) + bias[:, None]
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten()) * tasks
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return weight.detach(), bias.detach()


class Finetune(EpisodicMethod):
    """Pretrain on meta-train classes, then fit a linear head on each episode's support set."""

    name = "finetune"

    def __init__(self, meta_lr: float = 0.001, head_steps: int = 100, head_lr: float = 1.0) -> None:
        super().__init__(meta_lr)
        self.head_steps = head_steps
        self.head_lr = head_lr
        self.encoder: nn.Module | None = None

    def setup(
        self, run: RunContext | None, model: nn.Module, ways: int, sample: torch.Tensor
    ) -> None:
        self.encoder, head, _ = split_head(model)
        if run is not None and head.out_features < run.dataset.info.n_classes:
            raise ValueError(
                f"finetune: pretraining classifies all {run.dataset.info.n_classes} dataset "
                f"classes but the model's head has {head.out_features} outputs; use "
                "out_features = 0 (one per dataset class)"
            )
        super().setup(run, model, ways, sample)

    def meta_step(self, run: RunContext | None, model: nn.Module, batch: TaskBatch) -> float:
        if run is None:
            raise ValueError("finetune: meta_step needs the run to read the dataset's labels")
        x = torch.cat([batch.support_x.flatten(0, 1), batch.query_x.flatten(0, 1)])
        index = torch.cat([batch.support_indices.flatten(), batch.query_indices.flatten()])
        targets = run.dataset.y[index]
        logits = model(x)
        loss = F.cross_entropy(logits, targets)
        if run.loss_terms:
            loss = loss + run.extra_loss(Batch(x, targets, index, logits, model, run))
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def predict(self, run: RunContext | None, model: nn.Module, batch: TaskBatch) -> torch.Tensor:
        assert self.encoder is not None, "setup() first"
        n_support = batch.support_x.shape[1]
        with torch.no_grad():  # each episode embedded on its own
            rows = torch.cat([batch.support_x, batch.query_x], dim=1)
            features = F.normalize(embed_episodes(self.encoder, rows), dim=2)
        support, query = features[:, :n_support], features[:, n_support:]
        weight, bias = fit_linear_heads(
            support, batch.support_y, batch.ways, steps=self.head_steps, lr=self.head_lr
        )
        return torch.einsum("tnd,twd->tnw", query, weight) + bias[:, None]
