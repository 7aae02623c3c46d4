"""What a study is after (or while) it runs: :class:`Study`, read from its ``study.json``, and
:class:`StudyInfo`, what a study tells its runs and trackers about itself."""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paralab.study import table as tables

STUDY_FILE = "study.json"
TABLE_CSV = "table.csv"
TABLE_MD = "table.md"
STUDY_PLOT = "study.png"


@dataclass
class StudyInfo:
    """A study, as its trackers and runs see it.

    Trackers get it in ``before_study(info)`` (before any run: a tracker may fill ``extra``,
    e.g. MLflow's parent run id) and ``after_study(info)`` (``status``, ``main_metric`` and
    ``table``, the aggregated rows, are filled then). Every run gets
    ``dataclasses.asdict(info)`` plus ``configuration`` (the configuration's label, its folder
    name), ``values`` (what it sets, by spec path) and ``seed`` as its ``study`` dict
    (``Result.study``; ``run.study`` for hooks), with ``extra`` as the trackers left it.
    """

    name: str
    folder: str
    configurations: list[dict[str, Any]]
    """``{"label", "values", "overrides"}`` of each configuration (a search adds its trials
    as it draws them)."""
    seeds: list[int]
    extra: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    main_metric: str = ""
    table: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class StudyRun:
    """One run of a study: its configuration, seed, status, folder and final metrics."""

    configuration: str
    seed: int
    status: str
    path: str
    metrics: dict[str, Any]
    error: str | None = None
    seconds: float = 0.0
    worker: str = ""

    def result(self) -> Any:
        """The run's :class:`paralab.Result`, read from its folder."""
        from paralab.results import Result

        return Result.load(self.path)


@dataclass(frozen=True)
class Best:
    """The best configuration by one metric's mean over seeds."""

    configuration: str
    values: dict[str, Any]
    metric: str
    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int

    def __str__(self) -> str:
        spread = "" if not math.isfinite(self.ci_low) else \
            f" ± {tables.number((self.ci_high - self.ci_low) / 2)}"
        return f"{self.configuration}: {self.metric} {tables.number(self.mean)}{spread} (n={self.n})"


class Study:
    """A study's folder: its configurations, runs and table.

    ``paralab.run_study`` returns one; :meth:`load` reads any study folder (also one still
    running, or interrupted).

    >>> study = paralab.Study.load("runs/digits_lr")  # doctest: +SKIP
    >>> study.table()[["n", "test/accuracy.mean", "test/accuracy.ci_low"]]  # doctest: +SKIP
    """

    def __init__(self, folder: str | os.PathLike[str], data: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.data = data
        self.name: str = data.get("name", self.folder.name)
        self.configurations: list[dict[str, Any]] = list(data.get("configurations", []))
        self.seeds: list[int] = list(data.get("seeds", []))
        self.main_metric: str = data.get("main_metric", "")
        self.status: str = data.get("status", "")
        self.spec: dict[str, Any] = data.get("study", {})

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Study:
        """Read a study folder's ``study.json``."""
        path = Path(folder)
        file = path / STUDY_FILE if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"{path} is not a study folder (no {STUDY_FILE})")
        return cls(file.parent, json.loads(file.read_text("utf-8")))

    @property
    def runs(self) -> list[StudyRun]:
        runs = []
        for item in self.data.get("runs", []):
            path = item.get("path") or ""
            runs.append(StudyRun(
                configuration=item["configuration"], seed=int(item["seed"]),
                status=item.get("status", ""),
                path=str(self.folder / path) if path and not os.path.isabs(path) else path,
                metrics=dict(item.get("metrics") or {}), error=item.get("error"),
                seconds=float(item.get("seconds") or 0.0), worker=item.get("worker") or ""))
        return runs

    def rows(self) -> list[dict[str, Any]]:
        """The table as plain rows (what ``table.csv`` holds)."""
        return tables.rows(self.configurations, self.data.get("runs", []), self.main_metric)

    def table(self) -> Any:
        """Per configuration: ``n``, ``failed`` and, for every final scalar metric,
        ``METRIC.mean``, ``.std`` (ddof 1), ``.ci_low`` and ``.ci_high`` (Student-t 95%
        interval of the mean over seeds), as a pandas DataFrame indexed by configuration."""
        return tables.to_frame(self.rows())

    def to_markdown(self) -> str:
        return tables.to_markdown(self.rows())

    def results(self, configuration: str | None = None) -> list[Any]:
        """The completed runs' :class:`paralab.Result` objects (of one configuration)."""
        return [run.result() for run in self.runs if run.status == "completed"
                and (configuration is None or run.configuration == configuration)]

    def history(self, configuration: str | None = None) -> Any:
        """Every completed run's phases as one pandas DataFrame: ``configuration``, ``seed``,
        ``kind``, ``index`` and one column per scalar metric (what ``study.png`` averages)."""
        import pandas as pd

        rows = []
        for run in self.runs:
            if run.status != "completed" or configuration not in (None, run.configuration):
                continue
            data = json.loads((Path(run.path) / "result.json").read_text("utf-8"))
            for phase in data.get("phases") or ():
                row = {"configuration": run.configuration, "seed": run.seed,
                       "kind": phase.get("kind"), "index": phase.get("index")}
                row.update(tables.scalar_metrics(phase.get("metrics") or {}))
                rows.append(row)
        return pd.DataFrame(rows)

    def best(self, metric: str | None = None, direction: str | None = None) -> Best:
        """The configuration with the best mean of ``metric`` (default: the main metric;
        ``direction`` defaults to minimize for ``*loss``/``*error``, else maximize)."""
        metric = metric or self.main_metric
        direction = direction or ("minimize" if metric.endswith(("loss", "error"))
                                  else "maximize")
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction = {direction!r}: 'maximize' or 'minimize'")
        rows = [row for row in self.rows()
                if math.isfinite(row.get(f"{metric}.mean", math.nan))]
        if not rows:
            known = sorted({key[:-5] for row in self.rows() for key in row if key.endswith(".mean")})
            raise KeyError(f"no completed run of study {self.name!r} has the metric {metric!r}; "
                           f"metrics: {', '.join(known) or 'none (no run completed)'}")
        sign = 1 if direction == "maximize" else -1
        row = max(rows, key=lambda r: sign * r[f"{metric}.mean"])
        values = next((c.get("values", {}) for c in self.configurations
                       if c["label"] == row["configuration"]), {})
        return Best(configuration=row["configuration"], values=dict(values), metric=metric,
                    mean=row[f"{metric}.mean"], std=row[f"{metric}.std"],
                    ci_low=row[f"{metric}.ci_low"], ci_high=row[f"{metric}.ci_high"],
                    n=row["n"])

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for run in self.data.get("runs", []):
            counts[run.get("status", "")] = counts.get(run.get("status", ""), 0) + 1
        return counts

    def _best_text(self) -> str:
        try:
            return str(self.best())
        except (KeyError, ValueError):
            return "no completed run"

    def __repr__(self) -> str:
        counts = self.counts()
        total = sum(counts.values())
        return (f"Study({self.name!r}, {len(self.configurations)} configuration(s) x "
                f"{len(self.seeds)} seed(s), {counts.get('completed', 0)}/{total} completed, "
                f"best {self._best_text()}, folder={str(self.folder)!r})")

    def _repr_html_(self) -> str:
        counts = self.counts()
        head = (f"<p><b>Study {html.escape(self.name)}</b>: {len(self.configurations)} "
                f"configuration(s) x {len(self.seeds)} seed(s), "
                f"{counts.get('completed', 0)}/{sum(counts.values())} runs completed; best "
                f"{html.escape(self._best_text())}<br><code>{html.escape(str(self.folder))}"
                f"</code></p>")
        rows = self.rows()
        if not rows:
            return head
        metrics = tables.metric_columns(rows[0])
        fixed = [key for key in rows[0] if key not in ("n", "failed")
                 and not any(key == f"{m}.{s}" for m in metrics for s in tables.STATISTICS)]
        header = "".join(f"<th>{html.escape(k)}</th>" for k in [*fixed, "n", *metrics])
        body = ""
        for row in rows:
            cells = [html.escape(tables._text(row.get(k))) for k in fixed] + [str(row["n"])]
            cells += [html.escape(tables.interval_text(row, m)) for m in metrics]
            body += "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"
        return f"{head}<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"
