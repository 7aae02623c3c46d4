"""The splits a protocol names, checked against the dataset in ``validate(run)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paralab import SharedDataset


def check_splits(
    dataset: SharedDataset, train_split: str, eval_splits: Sequence[str]
) -> list[tuple[str, str]]:
    """``(option, split)`` for ``train_split`` and each ``eval_splits[i]``; a split the dataset
    lacks is a ``ValueError`` naming the option and the dataset's splits."""
    named = [("train_split", train_split)]
    named += [(f"eval_splits[{i}]", split) for i, split in enumerate(eval_splits)]
    for option, split in named:
        if split not in dataset.splits:
            raise ValueError(
                f"{option} = {split!r} is not a split of dataset {dataset.name!r}; its "
                f"splits: {', '.join(sorted(dataset.splits)) or 'none'}"
            )
    return named
