"""``curve.png``: the figure a person opens first in a run folder.

A curve is only worth drawing where the run has one. Supervised epochs, federated rounds and
continual experiences give the main metric at every phase; few-shot training gives it once, at
meta-test, but meta-validation accuracy (or the meta-training loss) at every meta-batch; an
estimator, a kernel or an audit evaluates once. So the figure draws, in order of preference:

1. the main metric and the same metric on the other splits (``train/accuracy`` beside
   ``test/accuracy``) where it has two points or more;
2. otherwise that metric on another split (``meta_val/accuracy`` for ``meta_test/accuracy``),
   with the main metric's final value as a dashed line;
3. otherwise a loss with two points or more;
4. otherwise no curve: bars of the final metrics, titled to say that this protocol evaluates
   once.

The x axis is the phases themselves, as integer ticks named by the phase (``round 3``;
continual experiences carry their classes, ``exp 2 [4, 5]``), never a fractional position.
:func:`curve_figure` returns the figure (tests read its lines and labels); :func:`save_curve`
writes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from paralab.results import Result

MAX_TICKS = 16
"""More phases than this get every n-th tick labelled (a label per round of 200 is unreadable)."""

NO_CURVE = "no curve"
"""The start of the title of a figure for a run that evaluates once."""


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _series(result: Result) -> dict[str, list[tuple[int, float]]]:
    """Every scalar metric as ``(phase position, value)`` points, in first-seen order."""
    series: dict[str, list[tuple[int, float]]] = {}
    for position, phase in enumerate(result.phases):
        for name, value in phase["metrics"].items():
            if _scalar(value):
                series.setdefault(name, []).append((position, float(value)))
    return series


def _suffix(metric: str) -> str:
    return metric.rsplit("/", 1)[-1]


def chosen_curves(result: Result,
                  series: dict[str, list[tuple[int, float]]] | None = None,
                  ) -> tuple[list[str], str]:
    """The metrics the figure draws over the phases, and why (``"main"``, ``"other split"``,
    ``"loss"`` or ``"none"``); ``series`` is :func:`_series` of ``result`` if already made."""
    series = _series(result) if series is None else series
    main = result.main_metric
    drawn = [name for name, points in series.items() if len(points) >= 2]
    same = [name for name in drawn if _suffix(name) == _suffix(main)]
    if main in drawn:
        return [main, *(name for name in same if name != main)], "main"
    if same:
        return same, "other split"
    losses = [name for name in drawn if "loss" in _suffix(name)]
    if losses:
        return losses[:1], "loss"
    return [], "none"


def tick_label(phase: dict[str, Any]) -> str:
    """``epoch 3``, ``round 12``, ``exp 2 [4, 5]`` (an experience names its classes)."""
    kind, index = phase["kind"], phase["index"]
    if kind == "experience":
        classes = phase.get("info", {}).get("classes")
        shown = f"exp {index}"
        if isinstance(classes, list) and classes:
            listed = ", ".join(str(c) for c in classes[:4]) + (", ..." if len(classes) > 4 else "")
            shown += f"\n[{listed}]"
        return shown
    return f"{kind.replace('_', '-')} {index}"


def curve_figure(result: Result) -> Figure:
    """The run's curve (see the module's docstring for what is drawn)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.8), dpi=100)
    axes = figure.subplots()
    series = _series(result)
    names, why = chosen_curves(result, series)
    if not names:
        _final_bars(axes, result)
        figure.tight_layout()
        return figure
    positions = sorted({p for name in names for p, _ in series[name]})
    for name in names:
        points = series[name]
        axes.plot([p for p, _ in points], [v for _, v in points], marker="o", markersize=3,
                  label=name)
    final = result.metrics.get(result.main_metric)
    if why == "other split" and _scalar(final):
        axes.axhline(float(final), linestyle="--", color="0.3",
                     label=f"{result.main_metric} (final) = {float(final):.4f}")
    step = max(1, -(-len(positions) // MAX_TICKS))
    shown = positions[::step]
    axes.set_xticks(shown)
    axes.set_xticklabels([tick_label(result.phases[p]) for p in shown], fontsize=7,
                         rotation=0 if len(shown) <= 8 else 45,
                         ha="center" if len(shown) <= 8 else "right")
    kinds = list(dict.fromkeys(result.phases[p]["kind"] for p in positions))
    axes.set_xlabel(" / ".join(k.replace("_", " ") for k in kinds))
    axes.set_ylabel(_suffix(names[0]).replace("_", " "))
    title = result.name
    if why == "loss":
        title += f" ({names[0]}; {result.main_metric} is measured once)"
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    if len(names) > 1 or why == "other split":
        axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def _final_bars(axes: Any, result: Result, limit: int = 12) -> None:
    """A run that evaluates once: its final metrics as bars, and a title that says so."""
    values = [(name, float(value)) for name, value in result.metrics.items() if _scalar(value)]
    values = values[:limit]
    protocol = (result.spec.get("protocol") or {}).get("name", "this protocol")
    axes.barh([name for name, _ in values][::-1], [v for _, v in values][::-1])
    for row, (_, value) in enumerate(values[::-1]):
        axes.annotate(f"{value:.4g}", (value, row), fontsize=7, va="center",
                      xytext=(3, 0), textcoords="offset points")
    axes.tick_params(axis="y", labelsize=7)
    axes.set_title(f"{NO_CURVE}: {protocol} evaluates once ({result.name})", fontsize=10)
    axes.set_xlabel("final value")


def save_curve(result: Result, path: Path) -> None:
    """Write :func:`curve_figure` to ``path`` (a PNG)."""
    figure = curve_figure(result)
    figure.savefig(path)
