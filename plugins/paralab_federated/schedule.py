"""Which clients train in a round and on which minibatches: decided once, shared by backends.

Every random choice of a round comes from generators seeded by ``(seed, round)`` and
``(seed, round, client)``, never from a generator the backends advance. So the vmap, loop and
Ray backends see exactly the same sampled clients, stragglers and minibatches for a seed, and
their global models agree (bit for bit between the loop and Ray, to float rounding with vmap).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from paralab_federated.partitions import Partition

_MASK63 = (1 << 63) - 1


def seeded(*parts: int) -> torch.Generator:
    """A CPU generator seeded by a tuple of integers (Python hashes int tuples stably)."""
    return torch.Generator().manual_seed(hash(tuple(parts)) & _MASK63)


@dataclass
class RoundPlan:
    """The work of one round: who trains (``clients``), who dropped out, their minibatches."""

    round: int
    sampled: list[int]
    clients: list[int]
    dropped: list[int]
    batches: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    """Client id -> its minibatches in order, each a tensor of shared-dataset rows."""
    weights: dict[int, float] = field(default_factory=dict)
    """Client id -> examples it holds (the weight of its update)."""


def sample_clients(n_clients: int, fraction: float, stragglers: float, seed: int,
                   round_index: int,
                   poisson: bool = False) -> tuple[list[int], list[int], list[int]]:
    """``(sampled, training, dropped)``: ``max(1, round(fraction * n))`` clients drawn without
    replacement, or with ``poisson`` each client independently with probability ``fraction``
    (a round may then have none); each sampled client drops out with probability
    ``stragglers``."""
    generator = seeded(seed, round_index, -1)
    if poisson:
        sampled = torch.nonzero(torch.rand(n_clients, generator=generator) < fraction)
        sampled = sampled.flatten().tolist()
    else:
        m = max(1, round(fraction * n_clients))
        sampled = sorted(torch.randperm(n_clients, generator=generator)[:m].tolist())
    drop = torch.rand(len(sampled), generator=generator) < stragglers
    training = [k for k, gone in zip(sampled, drop.tolist()) if not gone]
    dropped = [k for k, gone in zip(sampled, drop.tolist()) if gone]
    return sampled, training, dropped


def client_batches(rows: torch.Tensor, epochs: int, batch_size: int | None, seed: int,
                   round_index: int, client: int) -> list[torch.Tensor]:
    """``epochs`` shuffled passes over ``rows`` cut in minibatches (``None``: one full batch)."""
    generator = seeded(seed, round_index, client)
    size = len(rows) if batch_size is None else batch_size
    batches: list[torch.Tensor] = []
    for _ in range(epochs):
        order = rows[torch.randperm(len(rows), generator=generator).to(rows.device)]
        batches.extend(torch.split(order, size))
    return batches


def plan_round(partition: Partition, *, round_index: int, seed: int, fraction: float,
               stragglers: float, epochs: int, batch_size: int | None,
               poisson: bool = False) -> RoundPlan:
    sampled, training, dropped = sample_clients(
        partition.n_clients, fraction, stragglers, seed, round_index, poisson
    )
    plan = RoundPlan(round_index, sampled, training, dropped)
    for k in training:
        rows = partition.client(k)
        plan.batches[k] = client_batches(rows, epochs, batch_size, seed, round_index, k)
        plan.weights[k] = float(len(rows))
    return plan


def padded(plan: RoundPlan, clients: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The clients' minibatches as ``(rows, mask)`` of shape ``(clients, steps, batch)``.

    Clients with fewer steps or a short last batch are padded with row 0 and mask 0, so the
    padded entries add nothing to the loss and a padded step moves no parameter.
    """
    batches = [b for k in clients for b in plan.batches[k]]
    lengths = torch.tensor([len(b) for b in batches], dtype=torch.long)
    steps_of = torch.tensor([len(plan.batches[k]) for k in clients], dtype=torch.long)
    steps, width = int(steps_of.max()), int(lengths.max())
    # One scatter: each row of each batch goes to (client, step, position in the batch).
    client = torch.arange(len(clients)).repeat_interleave(steps_of)
    first_step = (torch.cumsum(steps_of, 0) - steps_of).repeat_interleave(steps_of)
    step = torch.arange(len(batches)) - first_step
    starts = torch.cumsum(lengths, 0) - lengths
    position = torch.arange(int(lengths.sum())) - starts.repeat_interleave(lengths)
    flat = torch.cat(batches).cpu()
    rows = torch.zeros(len(clients), steps, width, dtype=torch.long)
    mask = torch.zeros(len(clients), steps, width, dtype=torch.bool)
    where = (client.repeat_interleave(lengths), step.repeat_interleave(lengths), position)
    rows[where] = flat
    mask[where] = True
    return rows, mask
