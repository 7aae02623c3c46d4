"""Compare runs and studies side by side: ``paralab compare RUN_OR_STUDY ...``.

Each source is a run folder (``result.json``) or a study folder (``study.json``). The table has
one row per run and one per study configuration, with every final scalar metric: a run's
value, a study configuration's mean with its Student-t 95% interval over seeds (the numbers of
the study's own ``table.csv``). :meth:`Comparison.plot` overlays the main metric's curves: a
run as a line, a study configuration as its mean with the interval band.

>>> import paralab
>>> comparison = paralab.compare("runs/digits_mlp", "runs/study_digits")  # doctest: +SKIP
>>> print(comparison.to_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paralab.study import table as tables
from paralab.study.plot import band, plot_bands, run_curve

RESULT_FILE = "result.json"
STUDY_FILE = "study.json"


@dataclass
class Source:
    """One compared folder: a run or a study."""

    path: Path
    kind: str  # "run" or "study"
    label: str
    main_metric: str
    rows: list[dict[str, Any]]
    curves: list[tuple[str, list[tuple[int, float, float, float]]]] = field(default_factory=list)


class Comparison:
    """Runs and studies side by side (:func:`compare` builds one)."""

    def __init__(self, sources: Sequence[Source], metrics: Sequence[str] | None = None) -> None:
        self.sources = list(sources)
        found = tables.metric_names(
            [{"status": "completed", "metrics": {m: 0.0 for m in _row_metrics(row)}}
             for source in self.sources for row in source.rows],
            self.main_metric)
        if metrics:
            unknown = [m for m in metrics if m not in found]
            if unknown:
                raise KeyError(f"no compared run has the metric(s) {', '.join(unknown)}; "
                               f"metrics: {', '.join(found) or 'none'}")
            found = list(metrics)
        self.metrics = found

    @property
    def main_metric(self) -> str:
        return next((s.main_metric for s in self.sources if s.main_metric), "")

    def rows(self) -> list[dict[str, Any]]:
        """One dict per run or study configuration: ``source``, ``kind``, ``configuration``,
        ``n`` and ``METRIC.mean/.std/.ci_low/.ci_high`` for each compared metric."""
        rows = []
        for source in self.sources:
            for row in source.rows:
                item = {"source": source.label, "kind": source.kind,
                        "configuration": row.get("configuration", ""), "n": row.get("n", 1)}
                for metric in self.metrics:
                    for statistic in tables.STATISTICS:
                        item[f"{metric}.{statistic}"] = row.get(f"{metric}.{statistic}", math.nan)
                rows.append(item)
        return rows

    def table(self) -> Any:
        """:meth:`rows` as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows())

    def to_markdown(self) -> str:
        header = ["source", "configuration", "n", *self.metrics]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.rows():
            cells = [row["source"], row["configuration"] or "-", str(row["n"])]
            cells += [tables.interval_text(row, metric) for metric in self.metrics]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        lines += ["", "runs: the final value; studies: mean ± half-width of the Student-t 95% "
                  "interval over seeds (sd: standard deviation); n: completed runs"]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"sources": [{"path": str(s.path), "kind": s.kind, "label": s.label}
                            for s in self.sources],
                "metrics": self.metrics, "main_metric": self.main_metric,
                "rows": [{key: _finite_or_none(value) for key, value in row.items()}
                         for row in self.rows()]}

    def plot(self, path: str | os.PathLike[str], metric: str | None = None) -> Path:
        """Overlay of ``metric``'s curves (default: the main metric) as a PNG at ``path``."""
        metric = metric or self.main_metric
        series = []
        for source in self.sources:
            series += [(label, points) for label, points in _curves(source, metric)]
        return plot_bands(series, path, metric=metric, title="comparison")

    def __repr__(self) -> str:
        kinds = [s.kind for s in self.sources]
        return (f"Comparison({kinds.count('run')} run(s), {kinds.count('study')} study(ies), "
                f"metrics={self.metrics})")

    def _repr_html_(self) -> str:
        import html

        header = "".join(f"<th>{html.escape(h)}</th>"
                         for h in ["source", "configuration", "n", *self.metrics])
        body = ""
        for row in self.rows():
            cells = [row["source"], row["configuration"] or "-", str(row["n"])]
            cells += [tables.interval_text(row, m) for m in self.metrics]
            body += "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
        return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def compare(*paths: str | os.PathLike[str], metrics: Sequence[str] | None = None) -> Comparison:
    """Compare run folders and study folders (:class:`Comparison`)."""
    if not paths:
        raise ValueError("compare needs at least one run or study folder")
    sources = [_source(Path(path)) for path in paths]
    labels = [source.label for source in sources]
    for source in sources:  # two folders of one name: say where each is
        if labels.count(source.label) > 1:
            source.label = str(source.path)
    return Comparison(sources, metrics)


def _source(path: Path) -> Source:
    if path.is_file() and path.name in (RESULT_FILE, STUDY_FILE):
        path = path.parent
    if (path / STUDY_FILE).is_file():
        from paralab.study.objects import Study

        study = Study.load(path)
        return Source(path, "study", study.name, study.main_metric, study.rows())
    if (path / RESULT_FILE).is_file():
        data = json.loads((path / RESULT_FILE).read_text("utf-8"))
        row: dict[str, Any] = {"configuration": "", "n": 1 if data.get("status") == "completed"
                               else 0}
        for metric, value in tables.scalar_metrics(data.get("metrics") or {}).items():
            row.update({f"{metric}.mean": value, f"{metric}.std": math.nan,
                        f"{metric}.ci_low": math.nan, f"{metric}.ci_high": math.nan})
        label = path.name if data.get("status") == "completed" else \
            f"{path.name} ({data.get('status')})"
        return Source(path, "run", label, data.get("main_metric", ""), [row])
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run or study folder")
    raise FileNotFoundError(f"{path}: not a run folder ({RESULT_FILE}) or a study folder "
                            f"({STUDY_FILE})")


def _curves(source: Source, metric: str) -> list[tuple[str, list[tuple[int, float, float, float]]]]:
    if source.kind == "run":
        data = json.loads((source.path / RESULT_FILE).read_text("utf-8"))
        return [(source.label, [(p, v, v, v) for p, v in run_curve(data, metric)])]
    study = json.loads((source.path / STUDY_FILE).read_text("utf-8"))
    series = []
    for configuration in study.get("configurations", []):
        curves = []
        for run in study.get("runs", []):
            if run.get("configuration") != configuration["label"] or run.get("status") != \
                    "completed":
                continue
            try:
                data = json.loads((source.path / run["path"] / RESULT_FILE).read_text("utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            curves.append(run_curve(data, metric))
        series.append((f"{source.label}: {configuration['label']}", band(curves)))
    return series


def _row_metrics(row: dict[str, Any]) -> list[str]:
    return [key[: -len(".mean")] for key, value in row.items()
            if key.endswith(".mean") and isinstance(value, (int, float)) and math.isfinite(value)]


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN: an undefined statistic (one seed's sd) is ``null``."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def compare_main(paths: list[str], output: str | None = None, metrics: list[str] | None = None,
                 as_json: bool = False) -> int:
    """``paralab compare PATH... [--plot FILE.png | DIR] [--metric M ...] [--json]``: the table
    on stdout (Markdown, or JSON). ``output`` ending in ``.png`` is the overlay plot's file;
    another ``output`` is a folder that gets ``comparison.md``, ``comparison.csv`` and
    ``comparison.png``. 0 on success, 2 for a path or metric that is not there."""
    try:
        comparison = compare(*paths, metrics=metrics)
    except (FileNotFoundError, KeyError, ValueError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"paralab: compare: {message}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(comparison.to_dict(), indent=2))
    else:
        sys.stdout.write(comparison.to_markdown())
    if output is not None and output.lower().endswith(".png"):
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        comparison.plot(output)
        print(f"paralab: overlay plot written to {output}", file=sys.stderr)
    elif output is not None:
        folder = Path(output)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "comparison.md").write_text(comparison.to_markdown(), encoding="utf-8")
        (folder / "comparison.csv").write_text(tables.to_csv(comparison.rows()), encoding="utf-8")
        if comparison.main_metric:
            comparison.plot(folder / "comparison.png")
        print(f"paralab: comparison written to {folder}", file=sys.stderr)
    return 0
