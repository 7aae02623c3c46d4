"""Datasets embedded in scikit-learn (digits, iris, wine, breast cancer): the offline default.

Each becomes a :class:`SharedDataset` with a stratified, seeded ``train``/``test`` split; with
the defaults digits gives the 1,437/360 split the benchmarks use.
"""

from __future__ import annotations

import numpy as np
import torch

from paralab.data.shared import SharedDataset

_LOADERS = {
    "digits": "load_digits",
    "iris": "load_iris",
    "wine": "load_wine",
    "breast_cancer": "load_breast_cancer",
}


def stratified_split(
    y: np.ndarray, test_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded stratified train/test indices (scikit-learn's ``train_test_split``)."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    index = np.arange(len(y))
    train, test = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=y)
    return torch.as_tensor(np.sort(train)), torch.as_tensor(np.sort(test))


def standardize(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Scale columns to zero mean and unit variance using the rows in ``reference``."""
    mean = x[reference].mean(axis=0)
    std = x[reference].std(axis=0)
    return (x - mean) / np.where(std > 0, std, 1.0)


def sklearn_dataset(
    name: str, *, root: str | None = None, test_fraction: float = 0.2, seed: int = 0
) -> SharedDataset:
    """Load one of scikit-learn's bundled datasets. ``root`` is ignored (nothing to read)."""
    from sklearn import datasets

    bunch = getattr(datasets, _LOADERS[name])()
    y = np.asarray(bunch.target, dtype=np.int64)
    train, test = stratified_split(y, test_fraction, seed)
    x = np.asarray(bunch.data, dtype=np.float64)
    meta: dict[str, object] = {"source": f"sklearn.datasets.{_LOADERS[name]}"}
    if name == "digits":
        x = x / 16.0  # pixel intensities 0..16 -> 0..1, keeps the 8x8 images meaningful
        meta["image_shape"] = (1, 8, 8)
    else:
        x = standardize(x, train.numpy())
    feature_names = tuple(str(f) for f in getattr(bunch, "feature_names", ())) or tuple(
        f"pixel_{i}" for i in range(x.shape[1])
    )
    return SharedDataset(
        name=name,
        x=torch.as_tensor(x, dtype=torch.float32),
        y=torch.as_tensor(y),
        splits={"train": train, "test": test},
        class_names=tuple(str(c) for c in bunch.target_names),
        feature_names=feature_names,
        meta=meta,
    )


def digits(root: str | None = None, test_fraction: float = 0.2, seed: int = 0) -> SharedDataset:
    """scikit-learn's 8x8 digits: 1,797 images, 10 classes."""
    return sklearn_dataset("digits", root=root, test_fraction=test_fraction, seed=seed)


def iris(root: str | None = None, test_fraction: float = 0.2, seed: int = 0) -> SharedDataset:
    """Fisher's iris: 150 flowers, 4 features, 3 classes."""
    return sklearn_dataset("iris", root=root, test_fraction=test_fraction, seed=seed)


def wine(root: str | None = None, test_fraction: float = 0.2, seed: int = 0) -> SharedDataset:
    """UCI wine: 178 wines, 13 features, 3 classes."""
    return sklearn_dataset("wine", root=root, test_fraction=test_fraction, seed=seed)


def breast_cancer(
    root: str | None = None, test_fraction: float = 0.2, seed: int = 0
) -> SharedDataset:
    """Wisconsin breast cancer: 569 tumours, 30 features, 2 classes."""
    return sklearn_dataset("breast_cancer", root=root, test_fraction=test_fraction, seed=seed)
