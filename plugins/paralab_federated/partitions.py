"""Client partitions of a shared dataset: every client is an index view, never a copy.

A :class:`Partition` holds one flat index tensor (the train rows, grouped by client) and the
offsets of each client's slice, so 1,000 clients cost one index per training row, the same as
the split itself. The schemes are the ones federated papers use:

* ``iid``: a random permutation cut into near-equal slices (McMahan et al. 2017, IID).
* ``dirichlet``: label skew; for every class, client proportions drawn from Dir(alpha)
  (Hsu et al. 2019; Flower Datasets' ``DirichletPartitioner``). Small alpha = more skew.
* ``shards``: McMahan's pathological non-IID; rows sorted by label, cut into
  ``clients * classes_per_client`` shards, each client gets ``classes_per_client`` of them.
* ``quantity``: IID labels but client sizes drawn from Dir(alpha) (quantity skew).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from paralab_federated import PARTITIONS as SCHEMES

_DIRICHLET_TRIES = 100


@dataclass(frozen=True)
class Partition:
    """Clients as slices of one index tensor into the shared dataset.

    ``rows[offsets[k]:offsets[k + 1]]`` are client ``k``'s rows of the shared dataset.
    """

    rows: torch.Tensor
    offsets: torch.Tensor
    scheme: str = "iid"

    @property
    def n_clients(self) -> int:
        return int(self.offsets.numel()) - 1

    @cached_property
    def sizes(self) -> torch.Tensor:
        """Examples per client (the weight of its update in FedAvg)."""
        return self.offsets[1:] - self.offsets[:-1]

    @cached_property
    def client_of_row(self) -> torch.Tensor:
        """The client id of each entry of ``rows`` (for per-client grouped metrics)."""
        ids = torch.arange(self.n_clients, device=self.rows.device)
        return ids.repeat_interleave(self.sizes.to(self.rows.device))

    def client(self, k: int) -> torch.Tensor:
        """Client ``k``'s rows of the shared dataset (a view of ``rows``, no copy)."""
        start, stop = int(self.offsets[k]), int(self.offsets[k + 1])
        return self.rows[start:stop]

    def to(self, device: torch.device | str) -> Partition:
        return Partition(self.rows.to(device), self.offsets, self.scheme)


def _numpy_rng(generator: torch.Generator) -> np.random.Generator:
    """A numpy generator seeded from ``generator``: Dirichlet draws need numpy's sampler."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return np.random.default_rng(seed)


def _from_groups(rows: torch.Tensor, groups: list[torch.Tensor], scheme: str) -> Partition:
    """Pack per-client positions (into ``rows``) as one flat index tensor with offsets."""
    sizes = torch.tensor([len(g) for g in groups], dtype=torch.long)
    offsets = torch.zeros(len(groups) + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(sizes, 0)
    flat = torch.cat([g.sort().values for g in groups])
    return Partition(rows[flat.to(rows.device)], offsets, scheme)


def validate(n_examples: int, clients: int, scheme: str, alpha: float, classes_per_client: int,
             n_classes: int) -> None:
    """Raise ``ValueError`` naming the option when a partition cannot be made."""
    if scheme not in SCHEMES:
        raise ValueError(
            f"partition = {scheme!r} is unknown; choose one of {list(SCHEMES)}"
        )
    if clients < 1:
        raise ValueError(f"clients = {clients} must be at least 1")
    if clients > n_examples:
        raise ValueError(
            f"clients = {clients} is more than the {n_examples} training examples; "
            f"every client needs at least one example, so use clients <= {n_examples}"
        )
    if scheme in ("dirichlet", "quantity") and not alpha > 0:
        raise ValueError(f"alpha = {alpha} must be > 0 (Dirichlet concentration)")
    if scheme == "shards":
        if not 1 <= classes_per_client <= n_classes:
            raise ValueError(
                f"classes_per_client = {classes_per_client} must be in 1..{n_classes}"
            )
        if clients * classes_per_client > n_examples:
            raise ValueError(
                f"clients * classes_per_client = {clients * classes_per_client} shards "
                f"but only {n_examples} training examples; use fewer clients or classes_per_client"
            )


def make_partition(
    rows: torch.Tensor,
    labels: torch.Tensor,
    clients: int,
    scheme: str = "iid",
    *,
    alpha: float = 0.5,
    classes_per_client: int = 2,
    generator: torch.Generator | None = None,
) -> Partition:
    """Split ``rows`` (indices into the shared dataset, with their ``labels``) among clients."""
    generator = generator or torch.Generator().manual_seed(0)
    labels = labels.detach().cpu()
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    validate(len(rows), clients, scheme, alpha, classes_per_client, n_classes)
    if scheme == "iid":
        order = torch.randperm(len(rows), generator=generator)
        groups = list(torch.tensor_split(order, clients))
    elif scheme == "shards":
        groups = _shards(labels, clients, classes_per_client, generator)
    elif scheme == "dirichlet":
        groups = _dirichlet(labels, clients, alpha, n_classes, generator)
    else:
        groups = _quantity(len(rows), clients, alpha, generator)
    return _from_groups(rows, groups, scheme)


def _shards(labels: torch.Tensor, clients: int, per_client: int,
            generator: torch.Generator) -> list[torch.Tensor]:
    # Sort by label (ties in random order), cut into equal shards, deal them out at random.
    shuffle = torch.randperm(len(labels), generator=generator)
    by_label = shuffle[torch.sort(labels[shuffle], stable=True).indices]
    shards = torch.tensor_split(by_label, clients * per_client)
    deal = torch.randperm(len(shards), generator=generator).reshape(clients, per_client)
    return [torch.cat([shards[int(s)] for s in row]) for row in deal]


def _dirichlet(labels: torch.Tensor, clients: int, alpha: float, n_classes: int,
               generator: torch.Generator) -> list[torch.Tensor]:
    rng = _numpy_rng(generator)
    for _ in range(_DIRICHLET_TRIES):
        parts: list[list[torch.Tensor]] = [[] for _ in range(clients)]
        for c in range(n_classes):
            members = torch.nonzero(labels == c).flatten()
            members = members[torch.randperm(len(members), generator=generator)]
            share = rng.dirichlet(np.full(clients, alpha))
            cuts = (np.cumsum(share)[:-1] * len(members)).astype(np.int64)
            for k, piece in enumerate(np.split(members.numpy(), cuts)):
                parts[k].append(torch.from_numpy(piece))
        groups = [torch.cat(p) for p in parts]
        if min(len(g) for g in groups) >= 1:
            return groups
    raise ValueError(
        f"partition = 'dirichlet' with alpha = {alpha} left a client with no example "
        f"in {_DIRICHLET_TRIES} draws; raise alpha or use fewer clients than {clients}"
    )


def _quantity(n: int, clients: int, alpha: float, generator: torch.Generator) -> list[torch.Tensor]:
    rng = _numpy_rng(generator)
    share = rng.dirichlet(np.full(clients, alpha))
    # Every client gets one example; the rest is dealt by the Dirichlet shares (largest remainder).
    extra = share * (n - clients)
    sizes = np.floor(extra).astype(np.int64)
    remainder = (n - clients) - int(sizes.sum())
    sizes[np.argsort(-(extra - sizes), kind="stable")[:remainder]] += 1
    sizes += 1
    order = torch.randperm(n, generator=generator)
    return list(torch.split(order, sizes.tolist()))


def hold_out(partition: Partition, fraction: float,
             generator: torch.Generator) -> tuple[Partition, Partition]:
    """Each client's rows split at random into ``(training, held-out)`` partitions: about
    ``fraction`` of every client's rows (``round(fraction * n_k)``, at most ``n_k - 1``, so
    every client keeps a row to train on) are held out. The held-out rows are the client's
    own test set: never in its minibatches, where the per-client metrics are computed. A
    client too small to spare a row has no held-out rows (it is left out of the per-client
    distribution)."""
    train_groups, test_groups = [], []
    positions = torch.arange(len(partition.rows))
    for k in range(partition.n_clients):
        start, stop = int(partition.offsets[k]), int(partition.offsets[k + 1])
        n = stop - start
        n_test = min(round(fraction * n), max(n - 1, 0))
        order = positions[start:stop][torch.randperm(n, generator=generator)]
        test_groups.append(order[:n_test])
        train_groups.append(order[n_test:])
    return (_from_groups(partition.rows, train_groups, partition.scheme),
            _from_groups(partition.rows, test_groups, partition.scheme))
