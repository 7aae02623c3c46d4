"""A heat-map of the accuracy matrix R: rows = trained up to, columns = evaluated on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def plot_accuracy_matrix(
    matrix: Sequence[Sequence[float]], path: str | Path, title: str = ""
) -> Path:
    """Write ``R[i][j]`` as an annotated heat-map PNG to ``path`` and return the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    size = len(matrix)
    figure, axes = plt.subplots(figsize=(1.0 + 0.8 * size, 0.8 + 0.7 * size), dpi=100)
    image = axes.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            colour = "black" if value > 0.6 else "white"
            axes.text(j, i, f"{value:.2f}", ha="center", va="center", color=colour, fontsize=8)
    axes.set_xticks(range(size))
    axes.set_yticks(range(size))
    axes.set_xlabel("evaluated on experience")
    axes.set_ylabel("after training on experience")
    axes.set_title(title or "accuracy matrix R")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
