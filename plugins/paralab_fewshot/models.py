"""The standard few-shot backbone (Conv-4) and how methods find a model's embedding and head.

Episodic methods work with the spec's model, whatever plugin made it. They need two views of
it: the whole network as a classifier whose first ``ways`` logits score the episode's classes
(MAML, Reptile), and its embedding, the network without its last linear layer (ProtoNets,
ANIL, the fine-tuning baseline).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import nn

from paralab import AsImage, DatasetInfo


class BatchStatNorm2d(nn.Module):
    """Batch norm that always normalises with the statistics of the batch it sees.

    Numerically ``nn.BatchNorm2d(track_running_stats=False)``, but the affine part is plain
    tensor arithmetic after an affine-free ``F.batch_norm``: in torch 2.14, ``vmap`` over a
    second-order gradient through ``BatchNorm2d``'s own weight and bias gives wrong gradients
    (measured against a task-by-task loop), while this composition is exact; the vmap-versus-
    loop test in tests/test_fewshot_adaptation.py guards it.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normalised = F.batch_norm(x, None, None, training=True, eps=self.eps)
        return normalised * self.weight[:, None, None] + self.bias[:, None, None]

    def stacked_layer(self, k: int, tensors: dict[str, torch.Tensor], path: str
                      ) -> Callable[[torch.Tensor, str], tuple[torch.Tensor, str]]:
        """The stacked form (:mod:`paralab.stacked`'s extension point): every seed, and every
        episode of :func:`episode_rows`, normalised with its own batch statistics."""
        from paralab import STACKED_CHANNELS as CHANNELS
        from paralab import Unstackable

        weight, bias = tensors[f"{path}.weight"], tensors[f"{path}.bias"]
        eps = self.eps

        def apply(x: torch.Tensor, layout: str) -> tuple[torch.Tensor, str]:
            if layout != CHANNELS:
                raise Unstackable(f"{path}: BatchStatNorm2d on inputs that are not images")
            normalised = _grouped_batch_statistics(x, _EPISODE_ROWS.get(), eps)
            w, b = weight.reshape(-1), bias.reshape(-1)
            return normalised * w[:, None, None] + b[:, None, None], CHANNELS

        return apply


_EPISODE_ROWS: ContextVar[int | None] = ContextVar("paralab_fewshot_episode_rows", default=None)
"""Rows per episode of the stacked forward in progress (``None``: the batch is one group)."""


@contextmanager
def episode_rows(rows: int) -> Iterator[None]:
    """Within this block, stacked :class:`BatchStatNorm2d` layers take the batch as
    consecutive episodes of ``rows`` rows each and normalise each episode with its own
    statistics: what :func:`embed_episodes` does one episode at a time."""
    token = _EPISODE_ROWS.set(int(rows))
    try:
        yield
    finally:
        _EPISODE_ROWS.reset(token)


def _grouped_batch_statistics(x: torch.Tensor, rows: int | None, eps: float) -> torch.Tensor:
    """Affine-free batch norm of ``(batch, channels, H, W)`` with the statistics of each group
    of ``rows`` consecutive rows. The groups become channels of one ``F.batch_norm`` call over
    ``(rows, groups * channels, H, W)``: every (group, channel) is then reduced alone, by the
    same kernel and in the same order as ``vmap`` of the single model reduces an episode's."""
    batch, channels = x.shape[0], x.shape[1]
    if rows is None or rows == batch:
        return F.batch_norm(x, None, None, training=True, eps=eps)
    if batch % rows:
        raise ValueError(f"a batch of {batch} rows is not made of episodes of {rows} rows")
    groups = batch // rows
    spatial = x.shape[2:]
    folded = (x.reshape(groups, rows, channels, *spatial).transpose(0, 1)
              .reshape(rows, groups * channels, *spatial))
    out = F.batch_norm(folded, None, None, training=True, eps=eps)
    return (out.reshape(rows, groups, channels, *spatial).transpose(0, 1)
            .reshape(batch, channels, *spatial))


def conv4(
    info: DatasetInfo, hidden: int = 64, layers: int = 4, out_features: int = 0
) -> nn.Sequential:
    """Conv-4 (Vinyals et al. 2016; Snell et al. 2017; Finn et al. 2017).

    ``layers`` blocks of ``conv3x3(hidden) -> BatchNorm -> ReLU -> maxpool2``, flattened, then a
    linear head with ``out_features`` outputs (``0``: the dataset's class count). Batch norm
    uses the statistics of the batch it sees, train and test (:class:`BatchStatNorm2d`), as
    in MAML's reference code: it keeps no buffers, so ``torch.func.vmap`` can adapt a
    separate copy per task. A pool is skipped once the feature map is 1x1, so 8x8 digits work.
    """
    shape = info.image_shape or info.input_shape
    if len(shape) != 3:
        raise ValueError(
            f"conv4: dataset {info.name!r} has inputs of shape {info.input_shape} and no "
            "image_shape; use an image dataset (digits, mnist, omniglot) or the mlp model"
        )
    blocks: list[nn.Module] = [AsImage(tuple(shape))]
    channels, height, width = shape
    for _ in range(layers):
        blocks += [
            nn.Conv2d(channels, hidden, 3, padding=1),
            BatchStatNorm2d(hidden),
            nn.ReLU(),
        ]
        if min(height, width) >= 2:
            blocks.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        channels = hidden
    blocks += [nn.Flatten(), nn.Linear(channels * height * width, out_features or info.n_classes)]
    return nn.Sequential(*blocks)


def embed_episodes(encoder: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """``(tasks, rows, d)`` flattened embeddings of ``(tasks, rows, ...)``, one episode at a time:
    one ``vmap`` call for an encoder without buffers, a loop for one with them (running
    statistics update in place, which ``vmap`` cannot batch)."""
    if next(iter(encoder.buffers()), None) is None:
        return torch.func.vmap(encoder)(rows).flatten(2)
    return torch.stack([encoder(episode).flatten(1) for episode in rows])


def head_of(model: nn.Module) -> tuple[str, nn.Linear]:
    """The name and module of the model's last linear layer (its classification head)."""
    last: tuple[str, nn.Linear] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = (name, module)
    if last is None:
        raise ValueError(
            f"model {type(model).__name__} has no nn.Linear layer to use as a head; "
            "ANIL, ProtoNets and finetune need one (conv4, cnn and mlp have it)"
        )
    return last


def split_head(model: nn.Module) -> tuple[nn.Module, nn.Linear, str]:
    """``(embedding, head, head name)`` for a model whose last layer is a linear head.

    The embedding shares its modules (and so its parameters) with ``model``. Only sequential
    models are split; for others use :func:`head_of` and the whole model.
    """
    name, head = head_of(model)
    if not isinstance(model, nn.Sequential) or model[-1] is not head:
        raise ValueError(
            f"model {type(model).__name__} is not an nn.Sequential ending in its linear head; "
            "ProtoNets, ANIL and finetune need one (conv4, cnn and mlp are)"
        )
    return model[:-1], head, name


def check_outputs(model: nn.Module, sample: torch.Tensor, ways: int, method: str) -> None:
    """MAML-style methods score an episode's classes with the model's first ``ways`` logits."""
    with torch.no_grad():
        outputs = model(sample[:2]).shape[-1]
    if outputs < ways:
        raise ValueError(
            f"method {method!r}: the model has {outputs} outputs but episodes are {ways}-way; "
            f"use a model with >= {ways} outputs (conv4's out_features)"
        )
