"""Strategy plugins that rehearse from a memory of indices: experience replay and A-GEM.

Both memories hold ``(row index, experience id)`` pairs into the shared dataset, never copies
of examples; rows are gathered (transformed as their experience) when they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from paralab_continual.buffers import IndexBuffer
from paralab_continual.composition import StrategyPlugin, tensor_bytes
from paralab_continual.rows import gather
from paralab_continual.scenarios import ScenarioError

if TYPE_CHECKING:
    from paralab import RunContext, SharedDataset
    from paralab_continual.scenarios import Experience, Stream


class MemoryPlugin(StrategyPlugin):
    """What the plugins that keep an index memory share (replay, ER-ACE, DER): its state, its
    size in bytes and rows, and the check that it fits in the stream. Subclasses set
    ``self.buffer`` (an :class:`IndexBuffer`) and ``self.memory_batch_size``."""

    buffer: IndexBuffer
    memory_batch_size: int
    memory: tuple[torch.Tensor, torch.Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        """The memory as index tensors (rows of the shared data and their experience ids)
        and where its shuffled pass stands; the gathered rows are rebuilt from them."""
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any], strategy: Any) -> None:
        self.buffer.load_state_dict(state["buffer"], strategy.device)

    def memory_bytes(self) -> int:
        """The index memory itself (two int64 per slot)."""
        return tensor_bytes(self.buffer.indices, self.buffer.experiences)

    def buffer_rows(self) -> int:
        """Examples in the memory."""
        return len(self.buffer)

    def check(self, strategy: Any, stream: Stream, dataset: SharedDataset) -> None:
        available = sum(len(e.train) for e in stream)
        if self.buffer.size > available:
            raise ScenarioError(
                f"{strategy.where(self)}: buffer_size = {self.buffer.size} is larger than the "
                f"{available} training rows of the whole stream; use buffer_size <= {available}"
            )
        batch = self.memory_batch_size or getattr(strategy, "batch_size", 0)
        if self.waits_for_full_batch and batch and self.buffer.size < batch:
            raise ScenarioError(
                f"{strategy.where(self)}: buffer_size = {self.buffer.size} is smaller than one "
                f"memory batch ({batch} rows: memory_batch_size, or the protocol's batch_size "
                "when it is 0); as in Avalanche, it replays only once the memory can fill a "
                f"batch, so it would never replay: use buffer_size >= {batch} or "
                f"memory_batch_size <= {self.buffer.size}"
            )

    waits_for_full_batch = False
    """True where, as in Avalanche, the memory is not replayed until it holds a whole memory
    batch (DER, ER-ACE): a buffer smaller than the batch would then never be replayed."""


class ReplayPlugin(MemoryPlugin):
    """Experience replay: each minibatch is joined by as many rows drawn from a memory of
    indices into the shared data (``reservoir``, ``class_balanced`` or
    ``experience_balanced``), updated when an experience ends."""

    name = "replay"

    def __init__(self, buffer_size: int = 200, policy: str = "reservoir",
                 memory_batch_size: int = 0) -> None:
        self.buffer = IndexBuffer(buffer_size, policy)
        self.memory_batch_size = int(memory_batch_size)
        self.memory: tuple[torch.Tensor, torch.Tensor] | None = None

    def augment(self, strategy: Any, run: RunContext, x: torch.Tensor, y: torch.Tensor,
                rows: torch.Tensor, ids: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.memory is None:
            return x, y, rows, ids
        memory_x, memory_y = self.memory
        slots = self.buffer.next_slots(self.memory_batch_size or len(rows), run.generator)
        return (
            torch.cat([x, memory_x[slots]]),
            torch.cat([y, memory_y[slots]]),
            torch.cat([rows, self.buffer.indices[slots]]),
            torch.cat([ids, self.buffer.experiences[slots]]),
        )

    def before_experience(self, strategy: Any, run: RunContext, experience: Experience) -> None:
        """Gather the memory's rows (transformed as their experience) once per experience:
        the memory changes only between experiences, so each step is one slice of them."""
        self.memory = None
        if len(self.buffer):
            assert strategy.stream is not None
            self.memory = gather(run.dataset, strategy.stream, self.buffer.indices,
                                 self.buffer.experiences)

    def after_experience(self, strategy: Any, run: RunContext, experience: Experience) -> None:
        rows = experience.train
        self.buffer.add_experience(rows, experience.index, run.dataset.y[rows], run.generator)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "buffer_size": self.buffer.size, "policy": self.buffer.policy}


class AGEMPlugin(StrategyPlugin):
    """Averaged gradient episodic memory (Chaudhry et al. 2019): when the minibatch gradient
    points against the gradient on a memory sample, project it onto the sample's half-space.
    The memory keeps ``patterns_per_experience`` random rows of each experience (indices)."""

    name = "agem"

    def __init__(self, patterns_per_experience: int = 100, sample_size: int = 64) -> None:
        self.patterns_per_experience = int(patterns_per_experience)
        self.sample_size = int(sample_size)
        self.memory_rows = torch.empty(0, dtype=torch.long)
        self.memory_ids = torch.empty(0, dtype=torch.long)
        self.reference: list[torch.Tensor] | None = None
        self.parameters: list[torch.Tensor] = []

    def setup(self, strategy: Any, run: RunContext | None, model: torch.nn.Module) -> None:
        self.parameters = strategy.parameters

    def state_dict(self) -> dict[str, Any]:
        return {"memory_rows": self.memory_rows.clone(), "memory_ids": self.memory_ids.clone()}

    def load_state_dict(self, state: dict[str, Any], strategy: Any) -> None:
        self.memory_rows = state["memory_rows"].to(strategy.device)
        self.memory_ids = state["memory_ids"].to(strategy.device)

    def memory_bytes(self) -> int:
        return tensor_bytes(self.memory_rows, self.memory_ids)

    def buffer_rows(self) -> int:
        """Examples in the memory."""
        return len(self.memory_rows)

    def check(self, strategy: Any, stream: Stream, dataset: SharedDataset) -> None:
        smallest = min(len(e.train) for e in stream)
        if self.patterns_per_experience > smallest:
            raise ScenarioError(
                f"{strategy.where(self)}: patterns_per_experience = "
                f"{self.patterns_per_experience} is larger than the smallest experience "
                f"({smallest} training rows); use patterns_per_experience <= {smallest}"
            )

    def before_step(self, strategy: Any, run: RunContext, model: torch.nn.Module,
                    x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
                    ids: torch.Tensor) -> None:
        """The reference gradient on a random memory sample (none before any memory)."""
        self.reference = None
        if not len(self.memory_rows):
            return
        assert strategy.stream is not None
        pick = torch.randint(
            len(self.memory_rows), (self.sample_size,), generator=run.generator
        ).to(self.memory_rows.device)
        memory_rows, memory_ids = self.memory_rows[pick], self.memory_ids[pick]
        memory_x, memory_y = gather(run.dataset, strategy.stream, memory_rows, memory_ids)
        logits, targets = strategy.forward(model, memory_x, memory_y, memory_ids)
        grads = torch.autograd.grad(
            F.cross_entropy(logits, targets), strategy.parameters, allow_unused=True
        )
        self.reference = [
            g.detach() if g is not None else torch.zeros_like(p)
            for g, p in zip(grads, strategy.parameters)
        ]

    @torch.no_grad()
    def after_backward(self, strategy: Any, run: RunContext | None, model: torch.nn.Module) -> None:
        if self.reference is None:
            return
        parameters = strategy.parameters
        current = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        dot = sum((g * r).sum() for g, r in zip(current, self.reference))
        if float(dot) < 0:
            norm = sum((r * r).sum() for r in self.reference)
            scale = dot / norm
            for p, g, r in zip(parameters, current, self.reference):
                p.grad = g - scale * r

    def after_experience(self, strategy: Any, run: RunContext, experience: Experience) -> None:
        rows = experience.train
        pick = torch.randperm(len(rows), generator=run.generator)[: self.patterns_per_experience]
        chosen = rows[pick.to(rows.device)]
        self.memory_rows = torch.cat([self.memory_rows.to(rows.device), chosen])
        self.memory_ids = torch.cat(
            [self.memory_ids.to(rows.device), torch.full_like(chosen, experience.index)]
        )


class ERACEPlugin(MemoryPlugin):
    """ER-ACE (Caccia et al. 2022), Avalanche's offline variant (``ER_ACE``): the memory
    (class-balanced, indices) takes the new experience's rows **before** training on it;
    from the second experience on, each step's task loss is
    ``(CE(memory batch) + CE(current batch over the classes present in it)) / 2``: the
    incoming rows' loss only pushes among their own classes, so new classes do not pull
    the old ones' logits down (the asymmetry)."""

    name = "er_ace"
    waits_for_full_batch = True

    def __init__(self, buffer_size: int = 200, memory_batch_size: int = 10) -> None:
        self.buffer = IndexBuffer(buffer_size, "class_balanced")
        self.memory_batch_size = int(memory_batch_size)
        self.memory: tuple[torch.Tensor, torch.Tensor] | None = None

    def before_experience(self, strategy: Any, run: RunContext, experience: Experience) -> None:
        rows = experience.train
        self.buffer.add_experience(rows, experience.index, run.dataset.y[rows], run.generator)
        self.memory = None
        if experience.index > 0 and len(self.buffer) >= self.memory_batch_size:
            self.memory = gather(run.dataset, strategy.stream, self.buffer.indices,
                                 self.buffer.experiences)

    def objective(self, strategy: Any, run: RunContext, ids: torch.Tensor) -> Any:
        """The asymmetric loss of this step (None before the second experience: plain CE)."""
        if self.memory is None:
            return None
        slots = self.buffer.next_slots(self.memory_batch_size, run.generator)
        self.last_slots = slots  # what this step replays (tests read it)
        memory_x, memory_y = self.memory[0][slots], self.memory[1][slots]
        memory_ids = self.buffer.experiences[slots]

        def asymmetric(batch: Any) -> torch.Tensor:
            outputs, targets = strategy.read_outputs(batch.model(memory_x), memory_y, memory_ids)
            memory_loss = F.cross_entropy(outputs, targets)
            present = torch.unique(batch.targets)
            # CE over the present classes: the target's position among them.
            position = torch.searchsorted(present, batch.targets)
            current = F.cross_entropy(batch.logits[:, present], position)
            return (memory_loss + current) / 2

        return asymmetric

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "buffer_size": self.buffer.size,
                "memory_batch_size": self.memory_batch_size}
