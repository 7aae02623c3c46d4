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


def small_continual_spec(method: Any = "naive", **protocol: Any) -> dict[str, Any]:
    """A smaller run for comparisons of whole runs: 3 experiences x 1 epoch, a 32-unit MLP."""
    spec = continual_spec(method, **{"experiences": 3, "epochs": 1, "plot": False, **protocol})
    spec["model"] = {"name": "mlp", "hidden": [32]}
    if isinstance(method, dict):
        spec["method"] = {"lr": 0.05, **method}
    return spec
