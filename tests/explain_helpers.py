"""Small trained models shared by the explain tests (trained once per session, in a second)."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from paralab.data import load_dataset
from paralab.models import mlp


@lru_cache(maxsize=4)
def trained_mlp(dataset: str = "wine", hidden: tuple[int, ...] = (32,), epochs: int = 150):
    """A full-batch Adam-trained MLP on an embedded dataset, and the dataset."""
    data = load_dataset(dataset)
    torch.manual_seed(0)
    model = mlp(data.info, hidden=list(hidden), activation="tanh")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    train = data.splits["train"]
    for _ in range(epochs):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(data.x[train]), data.y[train]).backward()
        optimizer.step()
    model.eval()
    return model, data


def linear_model(weights: torch.Tensor, bias: float = 0.0) -> nn.Module:
    """A two-class logit model ``[0, w.x + b]`` whose attributions are known in closed form."""
    layer = nn.Linear(len(weights), 2)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[1] = weights
        layer.bias.zero_()
        layer.bias[1] = bias
    return layer
