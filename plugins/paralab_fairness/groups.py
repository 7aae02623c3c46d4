"""Sensitive groups as compact integer codes, single features or their intersections.

A run's sensitive features are integer codes in ``dataset.features`` (labels in
``dataset.categories``). An intersectional group is a combination of codes, numbered
``sum(code_i * stride_i)`` in lexicographic order of the features: the same order as pandas'
sorted ``groupby`` (and so fairlearn's ``MetricFrame``) when the labels are sorted, which the
foundation's loaders guarantee. Only combinations that occur in the rows become groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GroupCodes:
    """Rows' group codes per feature and how to combine and decode them.

    The combined group number of a row is ``sum_j codes[j] * strides[j]``, in ``0..size-1``;
    ``cardinalities[j]`` is the number of codes of ``names[j]``; ``labels[j][code]`` is the
    label of a code.
    """

    names: tuple[str, ...]
    codes: tuple[torch.Tensor, ...]
    cardinalities: tuple[int, ...]
    labels: tuple[tuple[str, ...], ...]

    @property
    def strides(self) -> tuple[int, ...]:
        strides, step = [], 1
        for k in reversed(self.cardinalities):
            strides.append(step)
            step *= k
        return tuple(reversed(strides))

    def combined(self, scale: int = 1) -> torch.Tensor:
        """``scale`` times each row's combined group number, built in one buffer in place."""
        strides = self.strides
        out = self.codes[0].mul(strides[0] * scale)
        for codes, stride in zip(self.codes[1:], strides[1:]):
            out.add_(codes, alpha=stride * scale)
        return out

    @property
    def size(self) -> int:
        total = 1
        for k in self.cardinalities:
            total *= k
        return total

    def decode(self, numbers: Sequence[int]) -> list[tuple[str, ...]]:
        """The label tuple of each combined group number."""
        decoded = []
        for number in numbers:
            parts = []
            for k, labels in zip(reversed(self.cardinalities), reversed(self.labels)):
                number, code = divmod(int(number), k)
                parts.append(labels[code])
            decoded.append(tuple(reversed(parts)))
        return decoded


def encode_groups(
    features: Mapping[str, torch.Tensor],
    categories: Mapping[str, Sequence[str]] | None = None,
    *,
    n_rows: int | None = None,
) -> GroupCodes:
    """Combine one or more sensitive features (integer codes per row) into one group number.

    :raises ValueError: a feature that is not integer codes, has negative codes, a length
        other than ``n_rows``, or codes beyond its declared labels.
    """
    if not features:
        raise ValueError("fairness: no sensitive feature given; name at least one")
    categories = categories or {}
    names = tuple(features)
    cardinalities, labels, all_codes = [], [], []
    for name in names:
        codes = features[name]
        if codes.dtype.is_floating_point or codes.dtype == torch.bool or codes.ndim != 1:
            raise ValueError(
                f"fairness: sensitive feature {name!r} must be a 1-D tensor of integer group "
                f"codes, got dtype {codes.dtype} and shape {tuple(codes.shape)}"
            )
        if n_rows is not None and codes.numel() != n_rows:
            raise ValueError(
                f"fairness: sensitive feature {name!r} has {codes.numel()} rows but the "
                f"predictions have {n_rows}; they must be the same rows"
            )
        codes = codes.long()
        lowest, highest = (int(v) for v in torch.aminmax(codes)) if codes.numel() else (0, 0)
        if lowest < 0:
            raise ValueError(f"fairness: sensitive feature {name!r} has negative code {lowest}")
        declared = tuple(str(label) for label in categories.get(name, ()))
        if declared and highest >= len(declared):
            raise ValueError(
                f"fairness: sensitive feature {name!r} has code {highest} but only "
                f"{len(declared)} labels {list(declared)}"
            )
        names_of_codes = declared or tuple(str(code) for code in range(highest + 1))
        cardinalities.append(len(names_of_codes))
        labels.append(names_of_codes)
        all_codes.append(codes)
    return GroupCodes(names, tuple(all_codes), tuple(cardinalities), tuple(labels))


def group_label(labels: tuple[str, ...]) -> str:
    """One printable name for a (possibly intersectional) group: ``"Female & Black"``."""
    return " & ".join(labels)
