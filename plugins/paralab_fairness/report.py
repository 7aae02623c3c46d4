"""Files the fairness auditor leaves in a run's folder: tables (CSV) and plots (PNG).

* ``fairness_groups.csv``: every group's metrics at the last evaluation of each split.
* ``fairness_history.csv``: every disparity (with its interval) at every evaluation point.
* ``fairness_groups.png``: bars of selection rate, TPR and FPR per group with their Wilson
  intervals, at the last evaluation (``fairness_groups_<split>.png``, one per split, when
  several splits are evaluated).
* ``fairness_over_time.png``: disparities over the run's evaluation points, the drift curve:
  one panel per disparity of :data:`OVER_TIME` and split.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from paralab_fairness.rates import DISPARITIES

if TYPE_CHECKING:
    from paralab_fairness.auditor import AuditPoint

BAR_METRICS = ("selection_rate", "true_positive_rate", "false_positive_rate")


def _last_per_split(history: Sequence[AuditPoint]) -> dict[str, AuditPoint]:
    last: dict[str, AuditPoint] = {}
    for point in history:
        last[point.split] = point
    return last


def write_groups_csv(history: Sequence[AuditPoint], path: Path) -> None:
    rows = []
    metric_names: list[str] = []
    for split, point in _last_per_split(history).items():
        for table in point.tables:
            for name in table.metrics:
                if name not in metric_names:
                    metric_names.append(name)
            for position, label in enumerate(table.labels):
                row = {"split": split, "grouping": table.key, "group": label}
                row.update({name: values[position] for name, values in table.metrics.items()})
                rows.append(row)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["split", "grouping", "group", *metric_names])
        writer.writeheader()
        writer.writerows(rows)


def write_history_csv(history: Sequence[AuditPoint], path: Path) -> None:
    columns = ["point", "phase", "index", "split", "grouping"]
    # The auditor's disparities, then those of metrics from other plugins (``<name>_difference``).
    names = list(DISPARITIES)
    for point in history:
        for table in point.tables:
            names += [name for name in table.disparities if name not in names]
    for name in names:
        columns += [name, f"{name}_low", f"{name}_high"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for number, point in enumerate(history):
            for table in point.tables:
                row: dict[str, object] = {
                    "point": number,
                    "phase": point.phase_kind,
                    "index": point.phase_index,
                    "split": point.split,
                    "grouping": table.key,
                }
                for name in names:
                    low, high = table.intervals.get(name, (math.nan, math.nan))
                    row.update({name: table.disparities.get(name, math.nan), f"{name}_low": low,
                                f"{name}_high": high})
                writer.writerow(row)


def plot_groups(point: AuditPoint, path: Path) -> None:
    """Bars of selection rate, TPR and FPR per group at one evaluation point, each with its
    Wilson interval (small groups' rates are visibly uncertain) and the group's n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = point.tables
    widest = max(len(t.groups) for t in tables)
    figure, axes = plt.subplots(
        len(tables), 1, figsize=(max(6.0, 0.55 * widest + 2), 3.4 * len(tables)), squeeze=False
    )
    width = 0.8 / len(BAR_METRICS)
    for axis, table in zip(axes[:, 0], tables):
        positions = range(len(table.groups))
        for offset, metric in enumerate(BAR_METRICS):
            if metric not in table.metrics:
                continue  # a macro table has no selection rate (its class mean is 1 / K)
            values = table.metrics[metric]
            bounds = table.rate_intervals.get(metric)
            errors = None
            if bounds:
                errors = [[max(v - low, 0.0) if not math.isnan(v) else 0.0
                           for v, (low, _) in zip(values, bounds)],
                          [max(high - v, 0.0) if not math.isnan(v) else 0.0
                           for v, (_, high) in zip(values, bounds)]]
                errors = [[0.0 if math.isnan(e) else e for e in row] for row in errors]
            axis.bar([p + offset * width for p in positions], values, width, yerr=errors,
                     capsize=2, error_kw={"elinewidth": 0.8}, label=metric.replace("_", " "))
        axis.set_xticks([p + width for p in positions])
        counts = table.metrics["count"]
        axis.set_xticklabels([f"{label} (n={int(n)})" for label, n in zip(table.labels, counts)],
                             rotation=45, ha="right", fontsize=7)
        dp = table.disparities["demographic_parity_difference"]
        axis.set_title(f"{table.key} (DP diff {dp:.3f})", fontsize=9)
        axis.set_ylim(0, 1)
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"fairness by group: {point.split}, {point.phase_kind} {point.phase_index}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


OVER_TIME = (
    "demographic_parity_difference",
    "equalized_odds_difference",
    "equal_opportunity_difference",
    "disparate_impact_ratio",
)
"""The disparities drawn over the run, one panel each (the CSV has them all)."""


def plot_over_time(history: Sequence[AuditPoint], path: Path) -> None:
    """One panel per disparity (columns) and evaluated split (rows); in each, one line per
    grouping with its bootstrap interval. One panel holding every disparity of every grouping
    was unreadable (issue 23)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(dict.fromkeys(point.split for point in history))
    figure, axes = plt.subplots(len(splits), len(OVER_TIME), sharex="row",
                                figsize=(3.6 * len(OVER_TIME), 3.0 * len(splits) + 0.6),
                                squeeze=False)
    for row, split in enumerate(splits):
        points = [point for point in history if point.split == split]
        keys = list(dict.fromkeys(t.key for p in points for t in p.tables))
        for column, name in enumerate(OVER_TIME):
            axis = axes[row][column]
            for key in keys:
                xs, ys, lows, highs = [], [], [], []
                for step, point in enumerate(points):
                    table = next((t for t in point.tables if t.key == key), None)
                    if table is None or name not in table.disparities:
                        continue
                    xs.append(step)
                    ys.append(table.disparities[name])
                    low, high = table.intervals.get(name, (math.nan, math.nan))
                    lows.append(low)
                    highs.append(high)
                if not xs:
                    continue
                line = axis.plot(xs, ys, marker="o", markersize=3, label=key)[0]
                if not all(math.isnan(v) for v in lows):
                    axis.fill_between(xs, lows, highs, alpha=0.15, color=line.get_color())
            axis.set_xticks(range(len(points)))
            axis.set_xticklabels([f"{p.phase_kind} {p.phase_index}" for p in points],
                                 rotation=45, ha="right", fontsize=6)
            axis.set_title(f"{split}: {name.replace('_', ' ')}", fontsize=8)
            axis.tick_params(axis="y", labelsize=7)
            axis.grid(alpha=0.3)
        axes[row][0].legend(fontsize=6, title="grouping", title_fontsize=6)
    figure.suptitle("fairness over the run (bands: bootstrap intervals)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(history: Sequence[AuditPoint], folder: Path, plots: bool = True) -> dict[str, str]:
    """Write the tables (and plots) into ``folder``; return ``{kind: file name}``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"groups": "fairness_groups.csv", "history": "fairness_history.csv"}
    write_groups_csv(history, folder / files["groups"])
    write_history_csv(history, folder / files["history"])
    if plots:
        last = _last_per_split(history)
        for split, point in last.items():  # one figure per split: none overwrites another
            key, name = (("bars", "fairness_groups.png") if len(last) == 1 else
                         (f"bars_{split}", f"fairness_groups_{_file_part(split)}.png"))
            files[key] = name
            plot_groups(point, folder / name)
        files["curve"] = "fairness_over_time.png"
        plot_over_time(history, folder / files["curve"])
    return files


def _file_part(split: str) -> str:
    """A split name as part of a file name (``clients/worst`` -> ``clients_worst``)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in split)
