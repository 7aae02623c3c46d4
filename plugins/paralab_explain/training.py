"""A small model to explain, trained the same way wherever one is needed (tests, the
benchmark, the paper reproductions): a tanh MLP, full-batch Adam on the train split."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from paralab import SharedDataset, load_dataset, mlp


def train_mlp(
    dataset: str,
    hidden: Sequence[int] = (64,),
    *,
    epochs: int = 300,
    lr: float = 0.01,
    activation: str = "tanh",
    seed: int = 0,
) -> tuple[nn.Module, SharedDataset]:
    """The MLP (in eval mode) after ``epochs`` full-batch Adam steps, and the dataset."""
    data = load_dataset(dataset)
    torch.manual_seed(seed)
    model = mlp(data.info, hidden=list(hidden), activation=activation)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    train = data.splits["train"]
    for _ in range(epochs):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(data.x[train]), data.y[train]).backward()
        optimizer.step()
    return model.eval(), data
