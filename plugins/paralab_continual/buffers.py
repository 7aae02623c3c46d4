"""Replay memories that hold indices into the shared dataset, never copies of examples.

A slot is ``(row index, experience id)``: the row is gathered from the shared tensors when a
memory batch is drawn, and the experience id says which transform, output mask and label map
the row had when it was stored (a permuted digit is replayed permuted).

Policies:

* ``reservoir``: a uniform sample of every training example seen so far (Vitter's algorithm R,
  run over each experience's rows in a random order when the experience ends).
* ``class_balanced``: an equal share of slots per class seen so far, a random sample inside
  each class.
* ``experience_balanced``: an equal share per experience seen so far (Avalanche's default
  ``ExperienceBalancedBuffer``), a random sample inside each experience.
"""

from __future__ import annotations

from typing import Any

import torch

from paralab_continual import POLICIES


class IndexBuffer:
    """A fixed-size memory of shared-dataset row indices with their experience ids.

    The ``replay`` method's declarations already guarantee ``size >= 1`` and a known
    ``policy``; the checks here guard direct use of the class."""

    def __init__(self, size: int, policy: str = "reservoir") -> None:
        if policy not in POLICIES:
            raise ValueError(f"replay buffer policy {policy!r} is unknown; choose from {POLICIES}")
        if size < 1:
            raise ValueError(f"replay buffer size must be >= 1, got {size}")
        self.size = int(size)
        self.policy = policy
        self.indices = torch.empty(0, dtype=torch.long)
        self.experiences = torch.empty(0, dtype=torch.long)
        self.seen = 0
        self._cursor = 0
        self._order: torch.Tensor | None = None
        self._groups = torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.indices.numel())

    @property
    def groups(self) -> torch.Tensor:
        """Each slot's group under a balanced policy (its class, or its experience)."""
        return self._groups

    def state_dict(self) -> dict[str, Any]:
        """The memory (index tensors), the count seen and where the shuffled pass stands."""
        return {"indices": self.indices.clone(), "experiences": self.experiences.clone(),
                "seen": self.seen, "cursor": self._cursor, "groups": self._groups.clone(),
                "order": None if self._order is None else self._order.clone()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        """Take back :meth:`state_dict`, its tensors on ``device`` (the shared data's)."""
        self.indices = state["indices"].to(device)
        self.experiences = state["experiences"].to(device)
        self.seen = int(state["seen"])
        self._cursor = int(state["cursor"])
        self._groups = state["groups"].to(device)
        self._order = None if state["order"] is None else state["order"].to(device)

    def add_experience(
        self,
        indices: torch.Tensor,
        experience: int,
        targets: torch.Tensor,
        generator: torch.Generator,
    ) -> None:
        """Store rows of a finished experience (``targets`` are their classes)."""
        device = indices.device
        self.indices = self.indices.to(device)
        self.experiences = self.experiences.to(device)
        ids = torch.full_like(indices, int(experience))
        if self.policy == "reservoir":
            self._reservoir(indices, ids, generator)
        elif self.policy == "class_balanced":
            self._balanced(indices, ids, targets, generator, by_class=True)
        else:
            self._balanced(indices, ids, targets, generator, by_class=False)
        self._order = None

    def _reservoir(
        self, indices: torch.Tensor, ids: torch.Tensor, generator: torch.Generator
    ) -> None:
        order = torch.randperm(len(indices), generator=generator).to(indices.device)
        indices, ids = indices[order], ids[order]
        free = max(0, min(self.size - len(self), len(indices)))
        if free:
            self.indices = torch.cat([self.indices, indices[:free]])
            self.experiences = torch.cat([self.experiences, ids[:free]])
        rest = len(indices) - free
        if rest <= 0:
            self.seen += len(indices)
            return
        # Item k (0-based count of items seen) replaces slot j ~ U{0..k} when j < size.
        counts = torch.arange(self.seen + free, self.seen + len(indices), dtype=torch.float64)
        draws = (torch.rand(rest, generator=generator, dtype=torch.float64) * (counts + 1)).long()
        accepted = (draws < self.size).nonzero().flatten()
        slots = draws[accepted].tolist()
        sources = (accepted + free).tolist()
        # Sequential semantics: a later item overwrites an earlier one in the same slot.
        last: dict[int, int] = {}
        for slot, source in zip(slots, sources):
            last[slot] = source
        if last:
            slot_index = torch.tensor(list(last.keys()), device=indices.device)
            source_index = torch.tensor(list(last.values()), device=indices.device)
            self.indices[slot_index] = indices[source_index]
            self.experiences[slot_index] = ids[source_index]
        self.seen += len(indices)

    def _balanced(
        self,
        indices: torch.Tensor,
        ids: torch.Tensor,
        targets: torch.Tensor,
        generator: torch.Generator,
        *,
        by_class: bool,
    ) -> None:
        """Keep an equal share per group (class or experience), random inside each group."""
        all_indices = torch.cat([self.indices, indices])
        all_ids = torch.cat([self.experiences, ids])
        old_groups = self._groups.to(indices.device)
        new_groups = targets.to(indices.device) if by_class else ids
        groups = torch.cat([old_groups, new_groups])
        # Shuffle the new rows only; stored rows keep their order so shrinking keeps a prefix.
        permutation = torch.randperm(len(indices), generator=generator).to(indices.device)
        offset = len(self.indices)
        order = torch.cat([torch.arange(offset, device=indices.device), permutation + offset])
        all_indices, all_ids, groups = all_indices[order], all_ids[order], groups[order]
        names = torch.unique(groups)
        base, extra = divmod(self.size, len(names))
        keep = []
        for position, group in enumerate(names.tolist()):
            members = (groups == group).nonzero().flatten()
            quota = base + (1 if position < extra else 0)
            keep.append(members[:quota])
        chosen = torch.cat(keep)
        self.indices, self.experiences = all_indices[chosen], all_ids[chosen]
        self._groups = groups[chosen]

    def next_slots(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """The next ``batch_size`` slots of a shuffled pass over the memory (reshuffled at the
        end of each pass), as Avalanche's replay loader cycles through its buffer."""
        n = len(self)
        if n == 0:
            raise ValueError("the replay buffer is empty")
        chosen = []
        remaining = batch_size
        while remaining > 0:
            if self._order is None or self._cursor >= n:
                self._order = torch.randperm(n, generator=generator).to(self.indices.device)
                self._cursor = 0
            take = min(remaining, n - self._cursor)
            chosen.append(self._order[self._cursor : self._cursor + take])
            self._cursor += take
            remaining -= take
        return chosen[0] if len(chosen) == 1 else torch.cat(chosen)

    def sample(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The row indices and experience ids of the next ``batch_size`` slots."""
        slots = self.next_slots(batch_size, generator)
        return self.indices[slots], self.experiences[slots]
