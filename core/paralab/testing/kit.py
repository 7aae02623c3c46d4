"""Building blocks for testing plugins: isolated registries and tiny datasets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from paralab import host
from paralab.components import DatasetSpec
from paralab.hookspecs import hookimpl
from paralab_registry import LoadSettings, PluginRegistry

if TYPE_CHECKING:
    from paralab.data import SharedDataset

PARALAB_API = "1.0"
TINY = "paralab_tiny"


def isolated_registry(*plugins: tuple[str, object], discover: bool = False) -> PluginRegistry:
    """A registry with the host's own plugin and ``(name, plugin)`` pairs, discovery blocked.

    >>> registry = isolated_registry()
    >>> [record.name for record in registry.plugins()]
    []
    """
    registry = host.make_registry(
        LoadSettings(), **({} if discover else {"entry_points": lambda: []})
    )
    registry.load()
    for name, plugin in plugins:
        registry.add(name, plugin)
    return registry


@contextmanager
def use_registry(registry: PluginRegistry) -> Iterator[PluginRegistry]:
    """Make ``registry`` the process registry inside the ``with`` block."""
    previous = host.set_registry(registry)
    try:
        yield registry
    finally:
        host.set_registry(previous)


def tiny_dataset(
    n_per_class: int = 24, n_classes: int = 10, n_features: int = 16, seed: int = 0
) -> SharedDataset:
    """A small separable dataset: Gaussian blobs, ``train``/``test`` splits, a binary sensitive
    feature ``group`` and a ``task`` feature (two classes per task), inputs viewable as
    ``(1, 4, 4)`` images when ``n_features == 16``."""
    import torch

    from paralab.data import SharedDataset

    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, n_features, generator=generator) * 3.0
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    x = centers[y] + torch.randn(len(y), n_features, generator=generator)
    group = (torch.rand(len(y), generator=generator) < 0.5).long()
    order = torch.randperm(len(y), generator=generator)
    cut = int(len(y) * 0.75)
    meta: dict[str, Any] = {"source": "paralab.testing.tiny_dataset"}
    if n_features == 16:
        meta["image_shape"] = (1, 4, 4)
    return SharedDataset(
        name=TINY,
        x=x,
        y=y,
        splits={"train": order[:cut].sort().values, "test": order[cut:].sort().values},
        features={"group": group, "task": y // 2},
        sensitive=("group",),
        categories={"group": ("a", "b")},
        meta=meta,
    )


class TinyDataPlugin:
    """A plugin contributing :func:`tiny_dataset` as the dataset ``paralab_tiny``."""

    PARALAB_API = PARALAB_API

    @hookimpl
    def paralab_datasets(self) -> list[DatasetSpec]:
        return [
            DatasetSpec(
                TINY,
                "paralab.testing.kit:tiny_dataset",
                "Tiny Gaussian blobs for tests (10 classes, 16 features).",
                {"n_per_class": 24, "n_classes": 10, "n_features": 16, "seed": 0},
                sensitive=("group",),
            )
        ]
