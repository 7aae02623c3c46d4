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


def random_mlp(inputs: int, classes: int, hidden: int = 16, seed: int = 0) -> nn.Module:
    """An untrained tanh MLP with seeded weights: parity tests need a model, not a good one."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, classes))


def small_cnn(image_shape: tuple[int, int, int] = (1, 8, 8), classes: int = 10, seed: int = 0
              ) -> nn.Module:
    """A seeded LeNet-like network on flat rows: conv-ReLU-pool, conv-ReLU, linear head."""
    from paralab import AsImage

    torch.manual_seed(seed)
    channels, height, width = image_shape
    return nn.Sequential(
        AsImage(image_shape), nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * (height // 2) * (width // 2), classes),
    )
