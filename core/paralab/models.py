"""The built-in model zoo: an MLP, a small CNN and a linear model, each ``factory(info, ...)``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from paralab.data.shared import DatasetInfo

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


def mlp(
    info: DatasetInfo,
    hidden: Sequence[int] = (256, 256),
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Module:
    """Flatten, then ``Linear -> activation`` per hidden width, then a linear head;
    ``batch_norm`` puts a ``BatchNorm1d`` after each hidden ``Linear`` (what FedBN keeps local,
    and a model with running statistics to federate)."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"mlp: activation {activation!r} unknown; choose from {sorted(_ACTIVATIONS)}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = info.n_features
    for size in hidden:
        layers.append(nn.Linear(width, int(size)))
        if batch_norm:
            layers.append(nn.BatchNorm1d(int(size)))
        layers.append(_ACTIVATIONS[activation]())
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = int(size)
    layers.append(nn.Linear(width, info.n_classes))
    return nn.Sequential(*layers)


def linear(info: DatasetInfo) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(info.n_features, info.n_classes))


class AsImage(nn.Module):
    """Reshape flat rows back into ``(channels, height, width)`` images (shared datasets keep
    images flat; convolutional models start with this)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


def cnn(info: DatasetInfo, channels: Sequence[int] = (32, 64), hidden: int = 128) -> nn.Module:
    """Two ``conv3x3 -> ReLU -> maxpool`` blocks and a linear head, for image inputs."""
    shape = info.image_shape or info.input_shape
    if len(shape) != 3:
        raise ValueError(
            f"cnn: dataset {info.name!r} has inputs of shape {info.input_shape} and no "
            "image_shape; use an image dataset or the mlp model"
        )
    layers: list[nn.Module] = [AsImage(tuple(shape))]
    in_channels, size = shape[0], shape[1]
    for out_channels in channels:
        layers += [
            nn.Conv2d(in_channels, int(out_channels), 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        in_channels, size = int(out_channels), size // 2
    layers += [
        nn.Flatten(),
        nn.Linear(in_channels * size * size, hidden),
        nn.ReLU(),
        nn.Linear(hidden, info.n_classes),
    ]
    return nn.Sequential(*layers)
