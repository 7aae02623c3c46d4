"""A study's table: per configuration, every final scalar metric over its seeds.

For each metric: the mean, the standard deviation (``ddof = 1``) and the Student-t 95%
interval of the mean, ``mean ± t(0.975, n - 1) · sd / sqrt(n)``, over the configuration's
completed runs (``n``). With one run the deviation and interval are undefined (NaN, an empty
cell), not zero: one seed says nothing about the spread.

The rows are plain dicts (``table.csv`` and ``table.md`` need no pandas); :func:`to_frame`
makes the pandas DataFrame that :meth:`paralab.Study.table` returns.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

LEVEL = 0.95
STATISTICS = ("mean", "std", "ci_low", "ci_high")
"""The columns of each metric: ``test/accuracy.mean``, ``test/accuracy.std``, ..."""


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The final metrics that are numbers (not lists, tables or flags)."""
    return {key: float(value) for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def summarize(values: Sequence[float], level: float = LEVEL) -> dict[str, float]:
    """Mean, sd (ddof 1) and the Student-t interval of the mean of ``values``."""
    import numpy as np
    from scipy import stats

    array = np.asarray(values, dtype=np.float64)
    n = int(array.size)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    mean = float(array.mean())
    if n == 1:
        return {"mean": mean, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    std = float(array.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def rows(configurations: Sequence[Mapping[str, Any]],
         runs: Iterable[Mapping[str, Any]], main_metric: str = "") -> list[dict[str, Any]]:
    """One row per configuration (in order): its label, its values by path, ``n`` completed
    runs, ``failed``, and the statistics of every final scalar metric of its runs."""
    by_label: dict[str, list[Mapping[str, Any]]] = {c["label"]: [] for c in configurations}
    for run in runs:
        if run.get("configuration") in by_label:
            by_label[run["configuration"]].append(run)
    metrics = metric_names(runs_of(by_label), main_metric)
    paths = list(dict.fromkeys(path for c in configurations for path in c.get("values", {})))
    table = []
    for configuration in configurations:
        label = configuration["label"]
        completed = [r for r in by_label[label] if r.get("status") == "completed"]
        row: dict[str, Any] = {"configuration": label}
        row.update({path: configuration.get("values", {}).get(path) for path in paths})
        row["n"] = len(completed)
        row["failed"] = sum(1 for r in by_label[label] if r.get("status") not in
                            ("completed", "pending", None))
        for metric in metrics:
            values = [scalar_metrics(r.get("metrics") or {}).get(metric) for r in completed]
            summary = summarize([v for v in values if v is not None and math.isfinite(v)])
            row.update({f"{metric}.{key}": value for key, value in summary.items()})
        table.append(row)
    return table


def runs_of(by_label: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Mapping[str, Any]]:
    return [run for runs in by_label.values() for run in runs]


def metric_names(runs: Iterable[Mapping[str, Any]], main_metric: str = "") -> list[str]:
    """Every final scalar metric of the completed runs, the main metric first."""
    names = sorted({name for run in runs if run.get("status") == "completed"
                    for name in scalar_metrics(run.get("metrics") or {})})
    if main_metric in names:
        names.remove(main_metric)
        names.insert(0, main_metric)
    return names


def to_csv(table: Sequence[Mapping[str, Any]]) -> str:
    if not table:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({key: _csv_cell(value) for key, value in row.items()})
    return buffer.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value)
    return value


def to_markdown(table: Sequence[Mapping[str, Any]], metrics: Sequence[str] | None = None,
                title: str = "") -> str:
    """A Markdown table: each metric as ``mean ± half-width (sd s)``, with ``n``."""
    if not table:
        return "(no configurations)\n"
    names = list(metrics) if metrics is not None else metric_columns(table[0])
    fixed = [key for key in table[0] if "." not in key or key.split(".")[-1] not in STATISTICS]
    fixed = [key for key in fixed if key not in ("n", "failed")]
    show_failed = any(row.get("failed") for row in table)
    header = [*fixed, "n", *(["failed"] if show_failed else []), *names]
    lines = [f"## {title}", ""] if title else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        cells = [_text(row.get(key)) for key in fixed] + [str(row["n"])]
        if show_failed:
            cells.append(str(row.get("failed", 0)))
        cells += [interval_text(row, name) for name in names]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"mean ± half-width of the Student-t {int(LEVEL * 100)}% interval over seeds; "
              "sd: standard deviation (ddof 1); n: completed runs"]
    return "\n".join(lines) + "\n"


def metric_columns(row: Mapping[str, Any]) -> list[str]:
    """The metric names of a table row (``test/accuracy`` from ``test/accuracy.mean``)."""
    return [key[: -len(".mean")] for key in row if key.endswith(".mean")]


def interval_text(row: Mapping[str, Any], metric: str) -> str:
    mean, std = row.get(f"{metric}.mean"), row.get(f"{metric}.std")
    low, high = row.get(f"{metric}.ci_low"), row.get(f"{metric}.ci_high")
    if not _finite(mean):
        return ""
    if not (_finite(std) and _finite(low) and _finite(high)):
        return number(mean)
    return f"{number(mean)} ± {number((high - low) / 2)} (sd {number(std)})"


def number(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4f}"
    return f"{value:.3e}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value)
    return str(value).replace("|", "\\|")


def to_frame(table: Sequence[Mapping[str, Any]]) -> Any:
    """The table as a pandas DataFrame indexed by configuration."""
    import pandas as pd

    frame = pd.DataFrame(list(table))
    if "configuration" in frame.columns:
        frame = frame.set_index("configuration")
    return frame
