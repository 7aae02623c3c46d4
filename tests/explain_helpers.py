"""Small trained models shared by the explain tests (trained once per session, in a second)."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from paralab_explain.training import train_mlp


@lru_cache(maxsize=4)
def trained_mlp(dataset: str = "wine", hidden: tuple[int, ...] = (32,), epochs: int = 150):
    """A full-batch Adam-trained MLP on an embedded dataset, and the dataset."""
    return train_mlp(dataset, hidden, epochs=epochs)


def linear_model(weights: torch.Tensor, bias: float = 0.0) -> nn.Module:
    """A two-class logit model ``[0, w.x + b]`` whose attributions are known in closed form."""
    layer = nn.Linear(len(weights), 2)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[1] = weights
        layer.bias.zero_()
        layer.bias[1] = bias
    return layer
