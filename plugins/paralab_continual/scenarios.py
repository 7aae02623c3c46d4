"""Continual scenarios as index views into one shared dataset.

A :class:`Stream` is a list of :class:`Experience` objects. Each experience names rows of the
shared tensors (``train`` and ``test`` index tensors), never copies them; what differs between
experiences in a domain-incremental stream (a pixel permutation, a rotation) is an input
transform applied on the device when a batch is gathered.

Three scenarios (van de Ven, van de Ven and Tolias 2020):

* ``class_incremental``: the classes are split into N experiences; the model must tell all
  classes seen so far apart, without knowing which experience a test example came from.
* ``task_incremental``: the same split, but the experience (task) is known at test time; the
  model is evaluated and trained with its output units masked to the task's classes
  (multi-head, without any surgery on the model).
* ``domain_incremental``: the label space stays the same while the inputs change:
  ``permuted`` (a fixed pixel permutation per experience, the first one the identity),
  ``rotated`` (experience j rotated by ``j * max_rotation / N`` degrees) or ``split`` (the class
  split of the other scenarios with each class relabelled to its position within its
  experience: split MNIST's "is it the first or the second digit of the pair").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from paralab_continual import DOMAINS, SCENARIOS

if TYPE_CHECKING:
    from paralab import SharedDataset


class ScenarioError(ValueError):
    """A continual scenario that cannot be built from these options and this dataset."""


class PermuteFeatures:
    """Permute the flattened input features with a fixed permutation (permuted MNIST)."""

    def __init__(self, permutation: torch.Tensor) -> None:
        self.permutation = permutation

    def __call__(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        permutation = self.permutation.to(flat.device)
        return flat[:, permutation].reshape(x.shape)

    def __repr__(self) -> str:
        return f"PermuteFeatures({self.permutation.numel()} features)"


class RotateImages:
    """Rotate image inputs by a fixed angle with one ``grid_sample`` call on the device."""

    def __init__(self, degrees: float, image_shape: tuple[int, ...]) -> None:
        self.degrees = float(degrees)
        self.image_shape = tuple(image_shape)
        radians = math.radians(self.degrees)
        cos, sin = math.cos(radians), math.sin(radians)
        self.theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]])

    def __call__(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        import torch.nn.functional as F

        images = x.reshape(x.shape[0], *self.image_shape).float()
        theta = self.theta.to(images.device, images.dtype).expand(images.shape[0], 2, 3)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        rotated = F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")
        return rotated.reshape(x.shape).to(x.dtype)

    def __repr__(self) -> str:
        return f"RotateImages({self.degrees:g} degrees)"


@dataclass
class Experience:
    """One experience of a stream: index views, its classes, its task id and its transform."""

    index: int
    classes: tuple[int, ...]
    train: torch.Tensor
    test: torch.Tensor
    task: int
    transform: PermuteFeatures | RotateImages | None = None

    def describe(self) -> dict[str, object]:
        return {
            "classes": list(self.classes),
            "task": self.task,
            "train_size": int(self.train.numel()),
            "test_size": int(self.test.numel()),
            "transform": repr(self.transform) if self.transform is not None else None,
        }


@dataclass
class Stream:
    """The experiences of a scenario plus how outputs and targets are read in each one.

    ``unit_mask[e]`` marks the output units active in experience ``e`` (all of them except in
    task-incremental and split domain-incremental streams); ``target_map[e, c]`` is the label
    class ``c`` has in experience ``e`` (the identity except in the split domain stream).
    """

    scenario: str
    experiences: list[Experience]
    n_classes: int
    unit_mask: torch.Tensor
    target_map: torch.Tensor
    domain: str | None = None
    masked: bool = False
    remapped: bool = False
    class_order: tuple[int, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.experiences)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.experiences)

    def __getitem__(self, index: int) -> Experience:
        return self.experiences[index]

    @property
    def has_task_labels(self) -> bool:
        """Whether the experience (task) of each example is known at test time."""
        return self.scenario == "task_incremental"

    def read_outputs(
        self, logits: torch.Tensor, targets: torch.Tensor, experience_ids: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits with inactive units at ``-inf`` and targets in the experience's label space."""
        if self.masked:
            mask = self.unit_mask.to(logits.device)[experience_ids]
            if mask.dim() == 1:
                mask = mask.expand_as(logits)
            logits = logits.masked_fill(~mask, float("-inf"))
        if self.remapped:
            mapping = self.target_map.to(targets.device)
            targets = mapping[experience_ids, targets]
        return logits, targets


def arrange_classes(
    n_classes: int, *, shuffle: bool, seed: int, explicit: Sequence[int] = ()
) -> list[int]:
    """The order in which classes arrive: explicit, seeded-shuffled or natural."""
    if explicit:
        order = [int(c) for c in explicit]
        if sorted(order) != list(range(n_classes)):
            raise ScenarioError(
                f"class_order = {order} must list each class 0..{n_classes - 1} exactly once"
            )
        return order
    if shuffle:
        generator = torch.Generator().manual_seed(int(seed))
        return torch.randperm(n_classes, generator=generator).tolist()
    return list(range(n_classes))


def split_classes(order: Sequence[int], experiences: int) -> list[tuple[int, ...]]:
    """``order`` cut into ``experiences`` consecutive groups, sizes differing by at most one."""
    base, extra = divmod(len(order), experiences)
    groups, start = [], 0
    for position in range(experiences):
        size = base + (1 if position < extra else 0)
        groups.append(tuple(order[start : start + size]))
        start += size
    return groups


def build_stream(
    dataset: SharedDataset,
    *,
    scenario: str = "class_incremental",
    experiences: int = 5,
    domain: str = "permuted",
    shuffle_classes: bool = True,
    class_order_seed: int = 0,
    class_order: Sequence[int] = (),
    train_split: str = "train",
    eval_split: str = "test",
    max_rotation: float = 180.0,
    seed: int = 0,
) -> Stream:
    """Build a continual stream over ``dataset``; every problem is a :class:`ScenarioError`.

    Under the ``continual`` protocol the single options are already checked against their
    declarations (``paralab_continual/__init__.py``); what is left to fail here involves the
    data (more experiences than classes, an explicit order missing a class, empty experiences,
    a rotation of non-image inputs), and the protocol's ``validate(run)`` turns it into a
    :class:`paralab.SpecError` before any run folder exists. The checks of single options stay
    for direct callers (tests, benchmarks)."""
    if scenario not in SCENARIOS:
        raise ScenarioError(
            f"scenario {scenario!r} is unknown; choose from {', '.join(SCENARIOS)}"
        )
    if not isinstance(experiences, int) or experiences < 1:
        raise ScenarioError(f"experiences must be an integer >= 1, got {experiences!r}")
    if scenario == "domain_incremental" and domain not in DOMAINS:
        raise ScenarioError(
            f"domain {domain!r} is unknown; choose from {', '.join(DOMAINS)}"
        )
    train = dataset.split(train_split).indices
    test = dataset.split(eval_split).indices
    n_classes = dataset.info.n_classes
    device = dataset.device
    splits_classes = scenario != "domain_incremental" or domain == "split"
    if splits_classes and experiences > n_classes:
        raise ScenarioError(
            f"experiences = {experiences} but dataset {dataset.name!r} has only "
            f"{n_classes} classes to split; use experiences <= {n_classes}"
            + (" or a permuted/rotated domain stream" if scenario == "domain_incremental" else "")
        )
    order = arrange_classes(
        n_classes, shuffle=shuffle_classes, seed=class_order_seed, explicit=class_order
    )
    unit_mask = torch.ones(experiences, n_classes, dtype=torch.bool, device=device)
    target_map = torch.arange(n_classes, device=device).repeat(experiences, 1)
    built: list[Experience] = []
    if splits_classes:
        groups = split_classes(order, experiences)
        train_y, test_y = dataset.y[train], dataset.y[test]
        for position, group in enumerate(groups):
            members = torch.tensor(group, device=device)
            built.append(
                Experience(
                    index=position,
                    classes=tuple(int(c) for c in group),
                    train=train[torch.isin(train_y, members)],
                    test=test[torch.isin(test_y, members)],
                    task=position,
                )
            )
            if scenario == "task_incremental":
                unit_mask[position] = False
                unit_mask[position, members] = True
            elif scenario == "domain_incremental":
                unit_mask[position] = False
                unit_mask[position, : len(group)] = True
                target_map[position, members] = torch.arange(len(group), device=device)
        if scenario == "domain_incremental" and len({len(g) for g in groups}) != 1:
            raise ScenarioError(
                f"domain = 'split' needs the same number of classes in each experience; "
                f"{n_classes} classes do not divide into experiences = {experiences}"
            )
        empty = [e.index for e in built if e.train.numel() == 0 or e.test.numel() == 0]
        if empty:
            raise ScenarioError(
                f"experiences {empty} have no rows in split {train_split!r} or "
                f"{eval_split!r} of dataset {dataset.name!r}"
            )
    else:
        generator = torch.Generator().manual_seed(int(seed))
        info = dataset.info
        shape = info.image_shape or (info.input_shape if len(info.input_shape) == 3 else None)
        if domain == "rotated" and shape is None:
            raise ScenarioError(
                f"domain 'rotated' needs image inputs; dataset {dataset.name!r} has "
                f"inputs of shape {info.input_shape} and no image_shape; use domain='permuted'"
            )
        for position in range(experiences):
            transform: PermuteFeatures | RotateImages | None
            if domain == "permuted":
                permutation = (
                    torch.arange(info.n_features)
                    if position == 0
                    else torch.randperm(info.n_features, generator=generator)
                )
                transform = PermuteFeatures(permutation.to(device))
            else:
                assert shape is not None
                transform = RotateImages(position * max_rotation / experiences, tuple(shape))
            built.append(
                Experience(
                    index=position,
                    classes=tuple(order),
                    train=train,
                    test=test,
                    task=position,
                    transform=transform,
                )
            )
    return Stream(
        scenario=scenario,
        experiences=built,
        n_classes=n_classes,
        unit_mask=unit_mask,
        target_map=target_map,
        domain=domain if scenario == "domain_incremental" else None,
        masked=bool((~unit_mask).any()),
        remapped=bool((target_map != torch.arange(n_classes, device=device)).any()),
        class_order=tuple(order),
    )
