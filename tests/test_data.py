"""Shared data: loaded once, views are indices, real files read through PARALAB_DATA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from paralab.data import DataNotFoundError, load_dataset
from paralab.data.images import mnist, omniglot, omniglot_runs
from paralab.data.tabular import adult, compas, german_credit


def test_digits_is_loaded_once_and_split_as_the_benchmarks_expect() -> None:
    digits = load_dataset("digits")
    assert load_dataset("digits") is digits
    assert (len(digits.splits["train"]), len(digits.splits["test"])) == (1437, 360)
    assert digits.info.n_classes == 10 and digits.info.image_shape == (1, 8, 8)
    assert float(digits.x.max()) == 1.0
    train, test = set(digits.splits["train"].tolist()), set(digits.splits["test"].tolist())
    assert not train & test and len(train | test) == 1797
    counts = torch.bincount(digits.y[digits.splits["test"]], minlength=10)
    assert int(counts.min()) >= 35, "the split is stratified"


def test_views_are_indices_into_one_copy() -> None:
    digits = load_dataset("digits")
    view = digits.split("train").where_class([3, 5])
    assert set(view.y.tolist()) == {3, 5}
    assert view.dataset.x.data_ptr() == digits.x.data_ptr()
    batches = list(view.batches(50, shuffle=True, generator=torch.Generator().manual_seed(0)))
    seen = torch.cat([index for _, _, index in batches])
    assert sorted(seen.tolist()) == sorted(view.indices.tolist())
    x, y, index = batches[0]
    assert torch.equal(x, digits.x[index]) and torch.equal(y, digits.y[index])
    with pytest.raises(KeyError, match="splits: \\['test', 'train'\\]"):
        digits.split("validation")


def test_missing_root_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARALAB_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match="PARALAB_DATA"):
        mnist()
    with pytest.raises(DataNotFoundError, match="t10k-images-idx3-ubyte.gz") as error:
        mnist(root=str(tmp_path))
    assert str(tmp_path) in str(error.value) and "download=True" in str(error.value)


def test_mnist_test_split_from_idx_files(data_root: Path) -> None:
    data = mnist(root=str(data_root / "mnist"))
    assert data.x.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974,
                                               1009]
    assert (len(data.splits["train"]), len(data.splits["test"])) == (8000, 2000)
    assert float(data.x.min()) >= 0.0 and float(data.x.max()) == 1.0


def test_omniglot_rotations_are_new_classes_of_the_same_character(data_root: Path) -> None:
    plain = omniglot(root=str(data_root / "omniglot"))
    turned = omniglot(root=str(data_root / "omniglot"), rotations=True)
    n, classes = len(plain.y), int(plain.y.max()) + 1
    assert len(turned.y) == 4 * n and int(turned.y.max()) + 1 == 4 * classes
    for k in range(4):
        rows = slice(k * n, (k + 1) * n)
        assert torch.equal(turned.x[rows], torch.rot90(plain.x, k, dims=(2, 3)))
        assert torch.equal(turned.y[rows], plain.y * 4 + k)
        assert torch.equal(turned.features["character"][rows], plain.y)
        assert torch.equal(turned.features["rotation"][rows], torch.full((n,), k))
        assert torch.equal(turned.features["alphabet"][rows], plain.features["alphabet"])
    assert turned.class_names[4 * 7 + 2] == plain.class_names[7] + "/rot180"
    # A 90-degree turn is a different image (no class is rotation-invariant by accident).
    assert not torch.equal(turned.x[n:2 * n], plain.x)


def test_omniglot_from_the_official_zips(data_root: Path) -> None:
    data = omniglot(root=str(data_root / "omniglot"))
    # 136 + 156 characters, Greek (24) and Latin (26) in both sets: 242 classes.
    assert data.info.n_classes == 242
    # 2,720 + 3,120 files, of which Greek and Latin (50 characters, 1,000 drawings) are in
    # both zips byte for byte: each drawing is loaded once
    assert len(data) == 2720 + 3120 - 1000
    assert torch.bincount(data.y).tolist().count(20) == 242
    assert data.x.shape[1:] == (1, 28, 28)
    assert len(data.categories["alphabet"]) == 8
    runs = omniglot_runs(root=str(data_root / "omniglot"))
    assert len(runs) == 800
    assert torch.bincount(runs.features["role"]).tolist() == [400, 400]
    first = runs.features["run"] == 0
    assert sorted(runs.y[first & (runs.features["role"] == 0)].tolist()) == list(range(20))


def test_fairness_tables_declare_sensitive_features(data_root: Path) -> None:
    people = compas(root=str(data_root / "compas"))
    assert len(people) == 6172  # ProPublica's filtered analysis set
    assert set(people.sensitive) == {"race", "sex", "age_cat"}
    assert "African-American" in people.categories["race"]
    census = adult(root=str(data_root / "adult"))
    assert (len(census.splits["train"]), len(census.splits["test"])) == (30162, 15060)
    assert census.categories["sex"] == ("Female", "Male")
    assert abs(float(census.y.float().mean()) - 0.248) < 0.005
    credit = german_credit(root=str(data_root / "german_credit"))
    assert len(credit) == 1000 and int(credit.y.sum()) == 700
    assert torch.bincount(credit.features["sex"]).tolist() == [310, 690]
    unaware = german_credit(root=str(data_root / "german_credit"), drop_sensitive=True)
    assert unaware.x.shape[1] < credit.x.shape[1]
