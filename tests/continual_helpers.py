"""Helpers shared by the continual-learning tests: small runs on the embedded digits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread: the test machine is shared, and two threads under load thrash."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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
