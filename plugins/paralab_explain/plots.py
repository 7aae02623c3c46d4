"""Figures in the run's folder: importance bar charts, image heat maps, drift curves.

matplotlib with the Agg backend (no display needed); each function writes one PNG and returns
its path relative to the run folder, for ``result.artifacts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_chart(
    path: Path, names: Sequence[str], values: torch.Tensor, title: str, top: int = 20
) -> Path:
    """Horizontal bars of the ``top`` players by value, largest on top."""
    plt = _pyplot()
    order = values.argsort(descending=True)[:top].tolist()
    figure, axis = plt.subplots(figsize=(7, 0.3 * len(order) + 1.2))
    axis.barh([names[i] for i in reversed(order)], [float(values[i]) for i in reversed(order)])
    axis.set_xlabel("mean |attribution|")
    axis.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def heat_maps(
    path: Path, maps: Sequence[torch.Tensor], titles: Sequence[str], suptitle: str
) -> Path:
    """Image heat maps side by side (``maps``: ``(H, W)`` tensors)."""
    plt = _pyplot()
    count = len(maps)
    columns = min(count, 5)
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.2 * rows + 0.5),
                                squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, title in zip(axes.flat, maps, titles):
        axis.imshow(image.cpu().numpy(), cmap="hot")
        axis.set_title(title, fontsize=9)
    figure.suptitle(suptitle)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def drift_chart(
    path: Path,
    labels: Sequence[str],
    history: torch.Tensor,
    names: Sequence[str],
    top: int = 8,
    title: str = "",
) -> Path:
    """Importance of the ``top`` players (by their largest value) across phases."""
    plt = _pyplot()
    order = history.max(dim=0).values.argsort(descending=True)[:top].tolist()
    figure, axis = plt.subplots(figsize=(7, 4))
    for player in order:
        axis.plot(range(len(labels)), history[:, player].cpu().numpy(), marker="o",
                  label=names[player])
    axis.set_xticks(range(len(labels)))
    axis.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    axis.set_ylabel("mean |attribution|")
    axis.set_title(f"attribution drift across phases {title}".strip())
    axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
