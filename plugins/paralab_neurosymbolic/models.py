"""The LeNet of DeepProbLog's MNIST experiments (its ``MNIST_Net``), as a paralab model.

Two ``conv5x5 -> maxpool2 -> ReLU`` blocks (6 and 16 channels), then 120 -> 84 -> classes.
On 28x28 inputs it is exactly DeepProbLog's network without the final softmax (paralab models
return logits); inputs smaller than 28x28 (the 8x8 digits, the conformance kit's 4x4) get
2-pixel padding in the convolutions so the blocks still fit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from paralab import DatasetInfo


class LeNet(nn.Module):
    def __init__(self, image_shape: tuple[int, ...], n_classes: int) -> None:
        super().__init__()
        channels, height, _ = image_shape
        padding = 0 if height >= 28 else 2
        self.image_shape = tuple(image_shape)
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=padding),
            nn.MaxPool2d(2, 2),
            nn.ReLU(True),
            nn.Conv2d(6, 16, 5, padding=padding),
            nn.MaxPool2d(2, 2),
            nn.ReLU(True),
        )
        with torch.no_grad():
            size = self.encoder(torch.zeros(1, *image_shape)).numel()
        self.classifier = nn.Sequential(
            nn.Linear(size, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *self.image_shape)
        return self.classifier(self.encoder(x).flatten(1))


def lenet(info: DatasetInfo) -> nn.Module:
    """The model factory: needs an image dataset (``info.image_shape``)."""
    shape = info.image_shape or info.input_shape
    if len(shape) != 3:
        raise ValueError(
            f"lenet: dataset {info.name!r} has inputs of shape {info.input_shape} and no "
            "image_shape; use an image dataset (digits, mnist) or the mlp model"
        )
    return LeNet(tuple(shape), info.n_classes)
