"""Players: the features or feature groups that an attribution is divided among.

Shapley-style methods treat each player as present (the input's values) or absent (the
baseline's values); gradient methods and LIME attribute to single features, and a group's
attribution is the sum of its members'. A :class:`Players` object holds the membership matrix
so that both become one matrix product on the device.

Groupings (the ``groups`` option):

* ``"features"`` (or ``""``/``None``): every input feature is a player;
* ``"columns"``: one-hot columns named ``"column=value"`` join their column (Adult's 104
  encoded columns become its 14 original columns);
* an integer ``k``: ``k`` contiguous blocks of near-equal size;
* ``"patches:s"``: ``s x s`` pixel patches of image data (``info.image_shape``);
* a list of lists of feature names or indices, or a table ``{group name: [features]}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from paralab_explain.errors import ExplainError


@dataclass(frozen=True)
class Players:
    """``membership[m, f]`` is 1 when feature ``f`` belongs to player ``m``; ``names[m]``."""

    names: tuple[str, ...]
    membership: torch.Tensor

    @property
    def count(self) -> int:
        return len(self.names)

    @property
    def n_features(self) -> int:
        return int(self.membership.shape[1])

    def to(self, device: torch.device | str) -> Players:
        if self.membership.device == torch.device(device):
            return self
        return Players(self.names, self.membership.to(device))

    def feature_mask(self, coalitions: torch.Tensor) -> torch.Tensor:
        """Player masks ``(K, M)`` -> feature masks ``(K, F)`` (1 = the input's value).

        A feature that belongs to no player is never varied: it keeps the input's value."""
        uncovered = 1.0 - self.membership.sum(dim=0).clamp(max=1.0)
        return coalitions.to(self.membership.dtype) @ self.membership + uncovered

    def sum_features(self, attributions: torch.Tensor) -> torch.Tensor:
        """Per-feature attributions ``(R, F)`` -> per-player ``(R, M)`` (sum over members)."""
        return attributions.to(self.membership.dtype) @ self.membership.T

    @cached_property
    def is_identity(self) -> bool:
        """Every feature its own player, in order (no summing needed)."""
        return self.count == self.n_features and bool(
            torch.equal(self.membership, torch.eye(self.n_features, device=self.membership.device))
        )


def resolve_players(
    groups: Any,
    n_features: int,
    feature_names: Sequence[str] = (),
    image_shape: Sequence[int] | None = None,
) -> Players:
    """Build the players for the ``groups`` option (see the module docstring)."""
    names = list(feature_names) if len(feature_names) == n_features else [
        f"x{index}" for index in range(n_features)
    ]
    if groups in (None, "", "features"):
        return Players(tuple(names), torch.eye(n_features))
    if isinstance(groups, bool):
        raise ExplainError(f"groups: expected a grouping, got {groups!r}; {_VALID}")
    if isinstance(groups, int):
        return _blocks(groups, names)
    if isinstance(groups, str):
        if groups == "columns":
            return _columns(names)
        if groups.startswith("patches:"):
            return _patches(groups, n_features, image_shape)
        raise ExplainError(f"groups: unknown grouping {groups!r}; {_VALID}")
    if isinstance(groups, Mapping):
        labels = [str(key) for key in groups]
        members = [_indices(value, names, str(key)) for key, value in groups.items()]
        return _from_lists(labels, members, names)
    if isinstance(groups, Sequence):
        members = [_indices(value, names, f"groups[{i}]") for i, value in enumerate(groups)]
        labels = ["+".join(names[i] for i in group) if len(group) <= 3 else
                  f"{names[group[0]]}+{len(group) - 1} more" for group in members]
        return _from_lists(labels, members, names)
    raise ExplainError(f"groups: cannot read {groups!r}; {_VALID}")


_VALID = (
    "valid: 'features', 'columns', an integer number of blocks, 'patches:<size>' for images, "
    "a list of lists of feature names or indices, or a table {name = [features]}"
)


def _indices(value: Any, names: list[str], where: str) -> list[int]:
    items = [value] if isinstance(value, (str, int)) else list(value)
    lookup = {name: index for index, name in enumerate(names)}
    indices = []
    for item in items:
        if isinstance(item, str):
            if item not in lookup:
                raise ExplainError(
                    f"{where}: no feature named {item!r}; features: {', '.join(names[:20])}"
                    + (" ..." if len(names) > 20 else "")
                )
            indices.append(lookup[item])
        elif isinstance(item, int) and 0 <= item < len(names):
            indices.append(item)
        else:
            raise ExplainError(f"{where}: {item!r} is not a feature index in 0..{len(names) - 1}")
    if not indices:
        raise ExplainError(f"{where}: a group needs at least one feature")
    return indices


def _from_lists(labels: Sequence[str], members: Sequence[Sequence[int]], names: list[str]) -> Players:
    membership = torch.zeros(len(members), len(names))
    for player, features in enumerate(members):
        membership[player, list(features)] = 1.0
    overlap = membership.sum(dim=0)
    if bool((overlap > 1).any()):
        twice = [names[i] for i in torch.nonzero(overlap > 1).flatten().tolist()]
        raise ExplainError(f"groups: features {twice[:5]} belong to more than one group")
    return Players(tuple(labels), membership)


def _blocks(count: int, names: list[str]) -> Players:
    if not 1 <= count <= len(names):
        raise ExplainError(f"groups: {count} blocks asked of {len(names)} features; use 1..{len(names)}")
    blocks = torch.arange(len(names)).tensor_split(count)
    members = [block.tolist() for block in blocks]
    labels = [names[m[0]] if len(m) == 1 else f"{names[m[0]]}..{names[m[-1]]}" for m in members]
    return _from_lists(labels, members, names)


def _columns(names: list[str]) -> Players:
    order: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        order.setdefault(name.split("=", 1)[0], []).append(index)
    return _from_lists(list(order), list(order.values()), names)


def _patches(groups: str, n_features: int, image_shape: Sequence[int] | None) -> Players:
    if not image_shape:
        raise ExplainError(
            f"groups: {groups!r} needs image data (the dataset declares no image_shape)"
        )
    try:
        size = int(groups.split(":", 1)[1])
    except ValueError:
        raise ExplainError(f"groups: {groups!r} should look like 'patches:4'") from None
    channels, height, width = (tuple(image_shape) + (1, 1, 1))[:3] if len(image_shape) == 3 else (
        1, *image_shape)
    if size < 1 or channels * height * width != n_features:
        raise ExplainError(f"groups: {groups!r} does not fit images of shape {tuple(image_shape)}")
    grid = torch.arange(n_features).reshape(channels, height, width)
    members, labels = [], []
    for top in range(0, height, size):
        for left in range(0, width, size):
            members.append(grid[:, top : top + size, left : left + size].flatten().tolist())
            labels.append(f"patch({top},{left})")
    names = [f"x{i}" for i in range(n_features)]
    return _from_lists(labels, members, names)
