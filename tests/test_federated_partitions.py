"""Client partitions: index views that cover the train split exactly, with the promised skew."""

from __future__ import annotations

import pytest
import torch

from paralab_federated.partitions import make_partition

torch.manual_seed(0)
LABELS = torch.arange(10).repeat_interleave(100)  # 1,000 rows, 10 classes
ROWS = torch.arange(1000) + 5000  # rows of a larger shared dataset


def partition(scheme: str, clients: int = 20, **options):
    return make_partition(ROWS, LABELS, clients, scheme,
                          generator=torch.Generator().manual_seed(1), **options)


def labels_of(part, k: int) -> torch.Tensor:
    return LABELS[part.client(k) - 5000]


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shards", "quantity"])
def test_every_row_belongs_to_exactly_one_client(scheme: str) -> None:
    part = partition(scheme)
    assert part.n_clients == 20
    assert part.rows.numel() == 1000  # one index per row, whatever the number of clients
    assert torch.equal(part.rows.sort().values, ROWS)
    assert int(part.sizes.min()) >= 1 and int(part.sizes.sum()) == 1000
    assert torch.equal(part.client_of_row.bincount(minlength=20), part.sizes)


def test_iid_clients_have_equal_sizes_and_all_classes() -> None:
    part = partition("iid", clients=10)
    assert part.sizes.tolist() == [100] * 10
    assert all(len(labels_of(part, k).unique()) >= 8 for k in range(10))


def test_shards_give_each_client_at_most_k_classes() -> None:
    part = partition("shards", clients=50, classes_per_client=2)
    classes = [len(labels_of(part, k).unique()) for k in range(50)]
    assert max(classes) <= 2
    assert part.sizes.tolist() == [20] * 50  # 100 shards of 10 rows, two per client


def test_dirichlet_skew_grows_as_alpha_shrinks() -> None:
    def mean_majority_share(alpha: float) -> float:
        part = partition("dirichlet", clients=10, alpha=alpha)
        shares = [labels_of(part, k).bincount(minlength=10).max() / part.sizes[k]
                  for k in range(10)]
        return float(torch.stack(shares).float().mean())

    skewed, balanced = mean_majority_share(0.1), mean_majority_share(100.0)
    assert skewed > 0.5
    assert balanced < 0.2
    assert skewed > balanced


def test_quantity_skew_varies_sizes_but_not_labels() -> None:
    part = partition("quantity", clients=10, alpha=0.5)
    assert int(part.sizes.max()) > 3 * int(part.sizes.min())


def test_partitions_are_reproducible_for_a_seed() -> None:
    assert torch.equal(partition("dirichlet").rows, partition("dirichlet").rows)
    other = make_partition(ROWS, LABELS, 20, "dirichlet",
                           generator=torch.Generator().manual_seed(2))
    assert not torch.equal(partition("dirichlet").rows, other.rows)


def test_a_thousand_clients_cost_one_index_per_row() -> None:
    part = partition("iid", clients=1000)
    assert part.n_clients == 1000 and part.rows.numel() == 1000
    assert part.client(999).data_ptr() >= part.rows.data_ptr()  # a view, not a copy


@pytest.mark.parametrize(
    ("scheme", "clients", "options", "message"),
    [
        ("iid", 1001, {}, "clients = 1001 is more than the 1000 training examples"),
        ("dirichlet", 10, {"alpha": 0.0}, "alpha = 0.0 must be > 0"),
        ("quantity", 10, {"alpha": -1.0}, "alpha = -1.0 must be > 0"),
        ("shards", 10, {"classes_per_client": 11}, "classes_per_client = 11 must be in 1..10"),
        ("nope", 10, {}, "partition = 'nope' is unknown"),
    ],
)
def test_bad_partitions_name_the_option(scheme, clients, options, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        partition(scheme, clients=clients, **options)
