"""Episodes as index tensors: class splits and N-way K-shot Q-query sampling, many at once.

A few-shot episode never copies data. The dataset's classes are split once (by class, or by a
per-example group such as Omniglot's alphabet) into meta-train, meta-validation and meta-test
classes; an :class:`EpisodeSampler` then draws a whole meta-batch of episodes as one integer
tensor of shape ``(tasks, ways, shots + queries)`` indexing the shared dataset, with two
``argsort`` calls on random keys instead of a Python loop per task (learn2learn's
``TaskDataset`` samples task by task). :class:`TaskBatch` gathers the rows on the dataset's
device and relabels each episode's classes ``0 .. ways-1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from paralab import SharedDataset

SPLITS = ("meta_train", "meta_val", "meta_test")


class EpisodeError(ValueError):
    """Episodes that cannot be drawn from a dataset: raised before any training."""


@dataclass(frozen=True)
class ClassSplit:
    """Which dataset classes belong to meta-train, meta-validation and meta-test."""

    meta_train: torch.Tensor
    meta_val: torch.Tensor
    meta_test: torch.Tensor

    def classes(self, split: str) -> torch.Tensor:
        if split not in SPLITS:
            raise KeyError(f"unknown class split {split!r}; splits: {', '.join(SPLITS)}")
        return getattr(self, split)

    def sizes(self) -> dict[str, int]:
        return {split: int(self.classes(split).numel()) for split in SPLITS}


ROTATED_FROM = "character"
"""The feature naming the unrotated character of each image of a rotation-augmented dataset."""


def split_classes(
    dataset: SharedDataset,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    *,
    seed: int = 0,
    group_by: str = "",
) -> ClassSplit:
    """Split the classes present in ``dataset`` into disjoint meta-train/val/test sets.

    ``fractions`` are of the classes (or of the groups when ``group_by`` names a per-example
    feature such as ``"alphabet"``: then every class of a group lands in the same split, which
    is Lake et al.'s harder split of Omniglot by alphabet). The shuffle is seeded, so the same
    ``seed`` gives the same split whatever the run's seed is.

    A dataset whose classes are rotations of one character (``omniglot`` with ``rotations =
    true`` declares ``features["character"]``) is split by character when ``group_by`` is
    empty: a rotated copy of a meta-test character among the meta-training classes would leak
    it, as Vinyals et al.'s and Snell et al.'s splits by character avoid.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise EpisodeError(
            f"class_split = {list(fractions)}: give three non-negative fractions "
            "(meta-train, meta-validation, meta-test), e.g. [0.6, 0.2, 0.2]"
        )
    y = dataset.y.cpu()
    classes = torch.unique(y)
    if classes.numel() == 0:
        raise EpisodeError(f"dataset {dataset.name!r} has no examples to draw episodes from")
    if not group_by and ROTATED_FROM in dataset.features:
        group_by = ROTATED_FROM
    if group_by:
        if group_by not in dataset.features:
            raise EpisodeError(
                f"split_by = {group_by!r}: dataset {dataset.name!r} has no such feature; "
                f"features: {sorted(dataset.features) or 'none'} (or '' to split by class)"
            )
        feature = dataset.features[group_by].cpu()
        first = torch.zeros(int(classes.max()) + 1, dtype=torch.long)
        first[y.flip(0)] = torch.arange(len(y) - 1, -1, -1)
        group_of_class = feature[first[classes]]
        units = torch.unique(group_of_class)
    else:
        group_of_class = classes
        units = classes
    generator = torch.Generator().manual_seed(seed)
    order = units[torch.randperm(units.numel(), generator=generator)]
    total = float(sum(fractions))
    n_train = round(fractions[0] / total * len(order))
    n_val = round(fractions[1] / total * len(order))
    if fractions[2] > 0 and n_train + n_val >= len(order):
        n_val = max(0, len(order) - n_train - 1)
    parts = (order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :])
    chosen = [classes[torch.isin(group_of_class, part)].sort().values for part in parts]
    return ClassSplit(*chosen)


@dataclass(frozen=True)
class EpisodeShape:
    """N-way, K-shot, Q-query."""

    ways: int
    shots: int
    queries: int

    @property
    def per_class(self) -> int:
        return self.shots + self.queries


class EpisodeSampler:
    """Draws episodes from some classes of a shared dataset, a meta-batch at a time.

    The constructor checks every condition the episodes need (enough classes for ``ways``,
    enough examples in each class for ``shots + queries``) and raises :class:`EpisodeError`
    naming the split, the option and what would be valid, so a bad spec fails before training.
    """

    def __init__(
        self, dataset: SharedDataset, classes: torch.Tensor, shape: EpisodeShape, split: str
    ) -> None:
        self.dataset = dataset
        self.shape = shape
        self.split = split
        classes = classes.cpu()
        where = f"{split} classes of dataset {dataset.name!r}"
        for option in ("ways", "shots", "queries"):
            value = getattr(shape, option)
            minimum = 0 if option == "queries" else 1
            if value < minimum:
                raise EpisodeError(f"{option} = {value}: must be >= {minimum}")
        if classes.numel() == 0:
            raise EpisodeError(f"the {where} are empty: give {split} a larger share in class_split")
        if shape.ways > classes.numel():
            raise EpisodeError(
                f"ways = {shape.ways} but the {where} number {classes.numel()}: choose "
                f"ways <= {classes.numel()} or give {split} more classes in class_split"
            )
        y = dataset.y.cpu()
        counts = torch.bincount(y, minlength=int(classes.max()) + 1)[classes]
        fewest = int(counts.argmin())
        if int(counts[fewest]) < shape.per_class:
            name = dataset.class_names[int(classes[fewest])] if dataset.class_names else ""
            raise EpisodeError(
                f"shots + queries = {shape.shots} + {shape.queries} = {shape.per_class} but "
                f"class {int(classes[fewest])} ({name}) of the {where} has only "
                f"{int(counts[fewest])} examples: choose shots + queries <= {int(counts.min())}"
            )
        # A (classes, max examples) table of dataset indices, padded with -1.
        order = torch.argsort(y, stable=True)
        members = torch.isin(y[order], classes)
        order = order[members]
        position = torch.searchsorted(classes, y[order])
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(len(order)) - starts[position]
        table = torch.full((classes.numel(), int(counts.max())), -1, dtype=torch.long)
        table[position, slot] = order
        self.classes = classes
        self.counts = counts
        self.table = table

    def sample(self, tasks: int, generator: torch.Generator) -> torch.Tensor:
        """``(tasks, ways, shots + queries)`` dataset indices, on the dataset's device.

        Each task picks ``ways`` distinct classes and, within each, ``shots + queries``
        distinct examples, uniformly, from ``generator`` (a CPU generator: same seed, same
        episodes on any device).
        """
        ways, per_class = self.shape.ways, self.shape.per_class
        chosen = torch.rand(tasks, self.classes.numel(), generator=generator).argsort(dim=1)
        chosen = chosen[:, :ways]
        keys = torch.rand(tasks, ways, self.table.shape[1], generator=generator)
        padding = torch.arange(self.table.shape[1]) >= self.counts[chosen].unsqueeze(-1)
        keys = keys.masked_fill(padding, 2.0)
        picks = keys.argsort(dim=2)[..., :per_class]
        indices = self.table[chosen.unsqueeze(-1), picks]
        return indices.to(self.dataset.device)


@dataclass
class TaskBatch:
    """A meta-batch of episodes gathered from the shared tensors.

    ``support_x`` is ``(tasks, ways * shots, *input_shape)``, ``query_x`` is
    ``(tasks, ways * queries, *input_shape)``; labels are the class's position in the
    episode (``0 .. ways-1``); ``*_indices`` index the shared dataset, so a method can read the
    dataset's own labels or features (the fine-tuning baseline pretrains on them).
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    support_indices: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    query_indices: torch.Tensor
    ways: int

    @property
    def tasks(self) -> int:
        return int(self.support_x.shape[0])

    @classmethod
    def gather(cls, dataset: SharedDataset, indices: torch.Tensor, shots: int) -> TaskBatch:
        """Split ``(tasks, ways, shots + queries)`` indices into support and query rows."""
        tasks, ways, per_class = indices.shape
        queries = per_class - shots
        labels = torch.arange(ways, device=indices.device)
        support = indices[:, :, :shots].reshape(tasks, ways * shots)
        query = indices[:, :, shots:].reshape(tasks, ways * queries)
        shape = tuple(dataset.x.shape[1:])
        return cls(
            support_x=dataset.x[support.reshape(-1)].reshape(tasks, ways * shots, *shape),
            support_y=labels.repeat_interleave(shots).expand(tasks, -1),
            support_indices=support,
            query_x=dataset.x[query.reshape(-1)].reshape(tasks, ways * queries, *shape),
            query_y=labels.repeat_interleave(queries).expand(tasks, -1),
            query_indices=query,
            ways=ways,
        )

    def chunk(self, size: int) -> list[TaskBatch]:
        """This meta-batch cut into meta-batches of at most ``size`` tasks."""
        return [
            TaskBatch(
                self.support_x[i : i + size],
                self.support_y[i : i + size],
                self.support_indices[i : i + size],
                self.query_x[i : i + size],
                self.query_y[i : i + size],
                self.query_indices[i : i + size],
                self.ways,
            )
            for i in range(0, self.tasks, size)
        ]
