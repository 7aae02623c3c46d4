"""GDumb (Prabhu, Torr and Dokania 2020): a greedy class-balanced memory, and a model retrained
from its initial weights on that memory alone at every experience.

GDumb is the paper's point that a "dumb" learner, which never trains on the stream itself,
matches many continual methods: what it knows is only what its memory holds. As Avalanche's
``GDumbPlugin`` (``avalanche/training/plugins/gdumb.py``): the memory is class-balanced (an
equal share of slots per class seen, a random sample inside each class), updated with the new
experience's rows **before** training on it; the model is reset to the weights it had before
the first experience and trained ``epochs`` over the memory only (the strategy's
``training_rows``), with a fresh optimizer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from paralab_continual.buffers import IndexBuffer
from paralab_continual.composition import tensor_bytes
from paralab_continual.rehearsal import MemoryPlugin

if TYPE_CHECKING:
    from paralab import RunContext
    from paralab_continual.scenarios import Experience


class GDumbPlugin(MemoryPlugin):
    """The memory and the reset of GDumb; the strategy trains on :attr:`buffer` only."""

    name = "gdumb"

    def __init__(self, buffer_size: int = 200) -> None:
        self.buffer = IndexBuffer(buffer_size, "class_balanced")
        self.memory_batch_size = 0
        self.initial: dict[str, torch.Tensor] = {}

    def setup(self, strategy: Any, run: RunContext | None, model: torch.nn.Module) -> None:
        """Keep the initial weights: every experience retrains from them."""
        self.initial = {key: value.detach().clone() for key, value in model.state_dict().items()}

    def before_experience(self, strategy: Any, run: RunContext, experience: Experience) -> None:
        rows = experience.train
        self.buffer.add_experience(rows, experience.index, run.dataset.y[rows], run.generator)
        run.model.load_state_dict(self.initial)  # in place: the parameters stay the same objects
        strategy.optimizer = strategy.make_optimizer(strategy.parameters)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(),
                "initial": {key: value.clone() for key, value in self.initial.items()}}

    def load_state_dict(self, state: dict[str, Any], strategy: Any) -> None:
        self.buffer.load_state_dict(state["buffer"], strategy.device)
        self.initial = {key: value.to(strategy.device) for key, value in state["initial"].items()}

    def memory_bytes(self) -> int:
        """The index memory and the copy of the initial weights."""
        return tensor_bytes(self.buffer.indices, self.buffer.experiences,
                            list(self.initial.values()))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "buffer_size": self.buffer.size}
