"""Dark experience replay (Buzzega et al. 2020), DER and DER++, as a strategy plugin.

The memory keeps rows of the shared data (indices, class-balanced as Avalanche's
``ClassBalancedBufferWithLogits``) and, for each, the model's raw outputs ("dark knowledge")
computed when the row's experience ended, in eval mode. Each step draws a memory batch and
adds ``alpha * MSE(outputs, stored outputs) + beta * CE(outputs, labels)`` on it to the current
batch's cross-entropy: ``beta = 0`` is DER, ``beta > 0`` DER++. This is Avalanche's variant
(``avalanche/training/supervised/der.py``): one memory batch for both terms, logits stored at
the end of the experience (the paper stores them on the fly and draws two batches).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from paralab_continual.buffers import IndexBuffer
from paralab_continual.composition import tensor_bytes
from paralab_continual.rehearsal import MemoryPlugin
from paralab_continual.rows import gather

if TYPE_CHECKING:
    from paralab import RunContext
    from paralab_continual.scenarios import Experience


class DERPlugin(MemoryPlugin):
    """DER / DER++: replay of stored outputs (``alpha``) and labels (``beta``)."""

    name = "der"
    waits_for_full_batch = True

    def __init__(self, buffer_size: int = 200, alpha: float = 0.1, beta: float = 0.5,
                 memory_batch_size: int = 0) -> None:
        self.buffer = IndexBuffer(buffer_size, "class_balanced")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.memory_batch_size = int(memory_batch_size)
        self.logits = torch.empty(0)  # (slots, units): aligned with the buffer's slots
        self.memory: tuple[torch.Tensor, torch.Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(), "logits": self.logits.clone()}

    def load_state_dict(self, state: dict[str, Any], strategy: Any) -> None:
        self.buffer.load_state_dict(state["buffer"], strategy.device)
        self.logits = state["logits"].to(strategy.device)

    def memory_bytes(self) -> int:
        return tensor_bytes(self.buffer.indices, self.buffer.experiences, self.logits)

    def before_experience(self, strategy: Any, run: RunContext, experience: Experience) -> None:
        self.memory = None
        if len(self.buffer):
            self.memory = gather(run.dataset, strategy.stream, self.buffer.indices,
                                 self.buffer.experiences)

    def regularizer(self, strategy: Any, run: RunContext, x: torch.Tensor, raw: torch.Tensor,
                    model: torch.nn.Module) -> torch.Tensor | None:
        if self.memory is None:
            return None
        size = self.memory_batch_size or strategy.batch_size or len(x)
        if len(self.buffer) < size:  # as Avalanche: no memory batch before it can fill one
            return None
        slots = self.buffer.next_slots(size, run.generator)
        memory_x, memory_y = self.memory
        outputs = model(memory_x[slots])
        total = self.alpha * F.mse_loss(outputs, self.logits[slots])
        if self.beta:
            logits, targets = strategy.read_outputs(outputs, memory_y[slots],
                                                    self.buffer.experiences[slots])
            total = total + self.beta * F.cross_entropy(logits, targets)
        return total

    @torch.no_grad()
    def after_experience(self, strategy: Any, run: RunContext, experience: Experience) -> None:
        """Update the memory, then store the outputs of its new rows (the model now, in eval
        mode); rows kept from earlier experiences keep the outputs stored then."""
        old_rows, old_logits = self.buffer.indices.clone(), self.logits
        rows = experience.train
        self.buffer.add_experience(rows, experience.index, run.dataset.y[rows], run.generator)
        indices = self.buffer.indices
        model = run.model
        was_training = model.training
        model.eval()
        x, _ = gather(run.dataset, strategy.stream, indices, self.buffer.experiences)
        fresh = model(x)
        model.train(was_training)
        if len(old_rows):
            # Slot j keeps its stored outputs when its row was in the memory before.
            match = (indices.unsqueeze(1) == old_rows.unsqueeze(0))
            kept = match.any(dim=1)
            source = match.float().argmax(dim=1)
            fresh[kept] = old_logits[source[kept]].to(fresh.dtype)
        self.logits = fresh.detach()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "buffer_size": self.buffer.size, "alpha": self.alpha,
                "beta": self.beta}
