"""The one in-memory copy of a dataset, and index views into it.

A :class:`SharedDataset` holds tensors (inputs, targets and any per-example metadata such as
sensitive features or task ids) loaded once per process. Every split, class subset, continual
experience, few-shot episode or federated client is a :class:`DataView`: an index tensor into
it, never a copy. Batches gather rows on the dataset's device, which is the fast path that
chains of wrapped datasets lose (avalanche #1074).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class DatasetInfo:
    """What a model factory needs to know about the data it will see."""

    name: str
    input_shape: tuple[int, ...]
    n_classes: int
    n_features: int
    class_names: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()
    image_shape: tuple[int, ...] | None = None
    """``(channels, height, width)`` when the inputs are (flattened or not) images."""


@dataclass
class SharedDataset:
    """Tensors loaded once and shared by every plugin of a run.

    :param name: the registry name.
    :param x: inputs, first dimension the example index.
    :param y: integer class targets, shape ``(n,)``.
    :param splits: named index tensors, at least ``train`` and ``test`` for built-in sets.
    :param features: per-example metadata tensors of length ``n`` (``task``, sensitive features
        such as ``race`` ...), each an integer code where it is categorical.
    :param sensitive: the names among ``features`` that are sensitive attributes.
    :param categories: for categorical features, the label of each code.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    splits: dict[str, torch.Tensor] = field(default_factory=dict)
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    sensitive: tuple[str, ...] = ()
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.x)
        if len(self.y) != n:
            raise ValueError(f"dataset {self.name!r}: {n} inputs but {len(self.y)} targets")
        for key, values in self.features.items():
            if len(values) != n:
                raise ValueError(
                    f"dataset {self.name!r}: feature {key!r} has {len(values)} rows, expected {n}"
                )
        for key, index in self.splits.items():
            if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
                raise ValueError(f"dataset {self.name!r}: split {key!r} indexes outside 0..{n - 1}")
        if not self.class_names:
            self.class_names = tuple(str(c) for c in range(self.n_classes))

    def __len__(self) -> int:
        return len(self.x)

    @property
    def n_classes(self) -> int:
        return int(self.y.max().item()) + 1 if len(self.y) else 0

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def info(self) -> DatasetInfo:
        shape = tuple(self.x.shape[1:])
        n_features = 1
        for size in shape:
            n_features *= size
        return DatasetInfo(
            name=self.name,
            input_shape=shape,
            n_classes=len(self.class_names) or self.n_classes,
            n_features=n_features,
            class_names=self.class_names,
            feature_names=self.feature_names,
            image_shape=tuple(self.meta["image_shape"]) if "image_shape" in self.meta else None,
        )

    def to(self, device: torch.device | str) -> SharedDataset:
        """This dataset with every tensor on ``device`` (itself when already there)."""
        device = torch.device(device)
        if self.x.device == device:
            return self

        def move(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {key: value.to(device) for key, value in tensors.items()}

        return SharedDataset(
            name=self.name,
            x=self.x.to(device),
            y=self.y.to(device),
            splits=move(self.splits),
            features=move(self.features),
            sensitive=self.sensitive,
            categories=dict(self.categories),
            class_names=self.class_names,
            feature_names=self.feature_names,
            meta=dict(self.meta),
        )

    def split(self, name: str) -> DataView:
        """The named split as a view; a clear error names the splits that exist."""
        try:
            return DataView(self, self.splits[name])
        except KeyError:
            raise KeyError(
                f"dataset {self.name!r} has no split {name!r}; splits: {sorted(self.splits)}"
            ) from None

    def check_splits(self, train_split: str, eval_splits: Sequence[str] = (), *,
                     train_option: str = "train_split",
                     eval_option: str = "eval_splits") -> list[tuple[str, str]]:
        """``(option, split)`` for the train split and each eval split a protocol names; a split
        this dataset lacks is a ``ValueError`` naming the option (``eval_splits[1]``) and the
        splits that exist, for a protocol's ``validate(run)`` to raise before training.

        >>> from paralab.data import load_dataset
        >>> load_dataset("iris").check_splits("train", ["tset"])
        Traceback (most recent call last):
        ...
        ValueError: eval_splits[0] = 'tset' is not a split of dataset 'iris'; its splits: test, train
        """
        named = [(train_option, train_split)]
        named += [(f"{eval_option}[{i}]", split) for i, split in enumerate(eval_splits)]
        for option, split in named:
            if split not in self.splits:
                raise ValueError(
                    f"{option} = {split!r} is not a split of dataset {self.name!r}; its "
                    f"splits: {', '.join(sorted(self.splits)) or 'none'}"
                )
        return named

    def view(self, indices: torch.Tensor | None = None) -> DataView:
        """A view over ``indices`` (all rows when ``None``)."""
        if indices is None:
            indices = torch.arange(len(self), device=self.device)
        return DataView(self, indices)


@dataclass
class DataView:
    """Rows of a :class:`SharedDataset` named by an index tensor; holds no data of its own."""

    dataset: SharedDataset
    indices: torch.Tensor

    def __post_init__(self) -> None:
        self.indices = torch.as_tensor(self.indices, dtype=torch.long, device=self.dataset.device)

    def __len__(self) -> int:
        return int(self.indices.numel())

    @property
    def x(self) -> torch.Tensor:
        return self.dataset.x[self.indices]

    @property
    def y(self) -> torch.Tensor:
        return self.dataset.y[self.indices]

    def feature(self, name: str) -> torch.Tensor:
        return self.dataset.features[name][self.indices]

    def classes(self) -> torch.Tensor:
        """The sorted class labels present in this view."""
        return torch.unique(self.y)

    def subset(self, positions: torch.Tensor) -> DataView:
        """A view of some of this view's rows (``positions`` index into this view)."""
        return DataView(self.dataset, self.indices[positions.to(self.indices.device)])

    def where_class(self, classes: torch.Tensor | list[int]) -> DataView:
        """The rows whose target is in ``classes``."""
        classes = torch.as_tensor(classes, device=self.dataset.device)
        return DataView(self.dataset, self.indices[torch.isin(self.y, classes)])

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y, indices)`` batches gathered from the shared tensors."""
        order = self.indices
        if shuffle:
            permutation = torch.randperm(len(order), generator=generator, device="cpu")
            order = order[permutation.to(order.device)]
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            index = order[start : start + batch_size]
            yield self.dataset.x[index], self.dataset.y[index], index
