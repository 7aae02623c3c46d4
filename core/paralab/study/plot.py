"""``study.png``: the main metric per phase, one line per configuration, mean over seeds with
its Student-t 95% band. Also the curve arithmetic :mod:`paralab.compare` overlays."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from paralab.study.table import summarize


def run_curve(result: Mapping[str, Any], metric: str) -> list[tuple[int, float]]:
    """``(phase position, value)`` of ``metric`` in a ``result.json``'s phases."""
    points = []
    for position, phase in enumerate(result.get("phases") or ()):
        value = (phase.get("metrics") or {}).get(metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            points.append((position, float(value)))
    return points


def band(curves: Sequence[Sequence[tuple[int, float]]]) -> list[tuple[int, float, float, float]]:
    """``(position, mean, low, high)`` at each phase position every curve has (the interval
    collapses to the mean where only one seed is left)."""
    if not curves:
        return []
    by_position: dict[int, list[float]] = {}
    for curve in curves:
        for position, value in curve:
            by_position.setdefault(position, []).append(value)
    points = []
    for position in sorted(by_position):
        values = by_position[position]
        if len(values) < len(curves):
            continue
        summary = summarize(values)
        low, high = summary["ci_low"], summary["ci_high"]
        if not math.isfinite(low):
            low = high = summary["mean"]
        points.append((position, summary["mean"], low, high))
    return points


def plot_bands(series: Sequence[tuple[str, list[tuple[int, float, float, float]]]],
               path: str | Path, *, metric: str, title: str, xlabel: str = "phase") -> Path:
    """One line with a shaded band per ``(label, band)``, saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    for label, points in series:
        if not points:
            continue
        x = [p[0] for p in points]
        line = axes.plot(x, [p[1] for p in points], marker="o", markersize=3, label=label)[0]
        axes.fill_between(x, [p[2] for p in points], [p[3] for p in points],
                          color=line.get_color(), alpha=0.2, linewidth=0)
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # phases are counted
    axes.set_xlabel(xlabel)
    axes.set_ylabel(metric)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if len(series) <= 12:
        axes.legend(fontsize="small")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path


def phase_label(results: Sequence[Mapping[str, Any]]) -> str:
    kinds = {phase.get("kind", "phase") for result in results for phase in result.get("phases") or ()}
    return " / ".join(sorted(kinds)) or "phase"
