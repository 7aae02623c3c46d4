"""Helpers shared by the continual-learning tests: small runs on the embedded digits."""

from __future__ import annotations

from typing import Any


def continual_spec(method: Any = "naive", **protocol: Any) -> dict[str, Any]:
    """A small continual run on digits: 5 experiences x 3 epochs, a 64-unit MLP, no output."""
    options = {"name": "continual", "experiences": 5, "epochs": 3, "batch_size": 32, **protocol}
    return {
        "name": "continual-test",
        "dataset": "digits",
        "model": {"name": "mlp", "hidden": [64]},
        "protocol": options,
        "method": method,
        "output": None,
        "device": "cpu",
        "seed": 0,
    }


class CountingLoss:
    """A loss term of another plugin; counts the training steps it entered."""

    calls = 0

    def __init__(self, weight: float = 0.0) -> None:
        self.weight = weight

    def __call__(self, batch):
        type(self).calls += 1
        return self.weight * batch.logits.pow(2).mean()
