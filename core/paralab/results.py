"""A run's result and its folder: ``result.json``, a PNG of the main curve, ``summary.md``.

``result.json`` is rewritten atomically (a temporary file, then ``os.replace``) after every
phase, so a run that fails midway keeps every phase it finished, and a reader never sees a
half-written file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paralab.context import Phase

RESULT_FILE = "result.json"
MODEL_FILE = "model.safetensors"
PLOT_FILE = "curve.png"
SUMMARY_FILE = "summary.md"


@dataclass
class Result:
    """What a run produced. ``metrics`` holds the latest value of every metric."""

    name: str
    status: str = "running"
    metrics: dict[str, Any] = field(default_factory=dict)
    phases: list[dict[str, Any]] = field(default_factory=list)
    audits: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    plugins: list[dict[str, Any]] = field(default_factory=list)
    packages: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    timings: dict[str, float] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    main_metric: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    """When, where and from what the run ran: start time, duration, host, command line,
    paralab's git commit (with a dirty flag) when run from a checkout."""
    study: dict[str, Any] | None = None
    """The study this run belongs to (its name, folder, configuration), if any."""
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Every component's options as the run used them (the spec's values over the declared
    defaults), keyed by the spec path (``"method"``, ``"auditors[0]"``)."""
    warnings: list[dict[str, Any]] = field(default_factory=list)
    """Each distinct warning of the run: category, message, where, count
    (see :mod:`paralab.run_warnings`)."""
    path: str = ""
    model: Any = field(default=None, repr=False, compare=False)
    """The trained ``torch.nn.Module`` (Python API only; :func:`paralab.load_model` rebuilds
    it from a run folder)."""

    def add_phase(self, phase: Phase) -> None:
        self.phases.append(_clean(phase.to_dict()))

    def curve(self, metric: str | None = None) -> list[tuple[int, float]]:
        """``(phase position, value)`` of a scalar metric over the phases."""
        metric = metric or self.main_metric
        return [
            (position, float(value))
            for position, phase in enumerate(self.phases)
            if isinstance(value := phase["metrics"].get(metric), (int, float))
        ]

    def history(self) -> Any:
        """The phases' scalar metrics as a pandas DataFrame: one row per phase (``kind``,
        ``index``, ``seconds`` and one column per metric)."""
        import pandas as pd

        rows = []
        for phase in self.phases:
            row = {"kind": phase["kind"], "index": phase["index"], "seconds": phase["seconds"]}
            row.update({key: value for key, value in phase["metrics"].items()
                        if isinstance(value, (int, float)) and not isinstance(value, bool)})
            rows.append(row)
        return pd.DataFrame(rows)

    def scalars(self) -> dict[str, float]:
        """The final scalar metrics (what a table compares)."""
        return {key: float(value) for key, value in sorted(self.metrics.items())
                if isinstance(value, (int, float)) and not isinstance(value, bool)}

    def __repr__(self) -> str:
        main = self.metrics.get(self.main_metric)
        shown = f", {self.main_metric}={main:.4f}" if isinstance(main, (int, float)) else ""
        where = f", path={self.path!r}" if self.path else ""
        return (f"Result({self.name!r}, status={self.status!r}, seed={self.seed}, "
                f"phases={len(self.phases)}{shown}{where})")

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(f"<tr><td>{escape(key)}</td><td>{value:.4f}</td></tr>"
                       for key, value in self.scalars().items())
        error = ""
        if self.error:
            error = f"<p>error: {escape(str(self.error.get('message')))}</p>"
        return (f"<div><b>{escape(self.name)}</b>: {escape(self.status)}, seed {self.seed}, "
                f"{len(self.phases)} phases{error}<table><tr><th>metric</th><th>final</th></tr>"
                f"{rows}</table></div>")

    def to_dict(self) -> dict[str, Any]:
        return _clean(
            {
                "name": self.name,
                "status": self.status,
                "metrics": self.metrics,
                "main_metric": self.main_metric,
                "phases": self.phases,
                "audits": self.audits,
                "artifacts": self.artifacts,
                "spec": self.spec,
                "plugins": self.plugins,
                "packages": self.packages,
                "seed": self.seed,
                "device": self.device,
                "timings": self.timings,
                "error": self.error,
                "provenance": self.provenance,
                "study": self.study,
                "settings": self.settings,
                "warnings": self.warnings,
            }
        )

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Result:
        """Read a run folder's ``result.json`` back."""
        path = Path(folder)
        file = path / RESULT_FILE if path.is_dir() else path
        data = json.loads(file.read_text("utf-8"))
        known = {item.name for item in fields(cls)} - {"path", "model"}
        return cls(**{key: value for key, value in data.items() if key in known},
                   path=str(file.parent))


def _clean(value: Any) -> Any:
    """Plain JSON: tensors to numbers or lists, NaN and infinity to None."""
    if hasattr(value, "tolist") and callable(value.tolist):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return repr(value)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class ResultWriter:
    """Owns a run's folder, claimed once the spec is accepted (:meth:`claim`); a run whose spec
    says ``output = None`` writes nothing.

    Claiming is an exclusive ``mkdir``: two runs of one spec started together each get their
    own folder (``name``, ``name-2``, ...), and nothing is ever written into a folder that
    another run made.
    """

    def __init__(self, output: str | os.PathLike[str] | None, name: str,
                 folder: Path | None = None) -> None:
        self.output = None if output is None else Path(output)
        self.name = name
        self._folder = folder

    @property
    def folder(self) -> Path:
        if self._folder is None:
            if self.output is None:
                raise ValueError("this run has no output folder (spec.output is None)")
            raise ValueError("the run's folder is claimed once its spec is accepted")
        return self._folder

    @property
    def enabled(self) -> bool:
        return self.output is not None

    @property
    def claimed(self) -> bool:
        return self._folder is not None

    def claim(self) -> Path | None:
        """Create this run's folder exclusively: ``output/name``, else the first free
        ``output/name-N``. Returns it (``None`` when the run writes nothing)."""
        if self.output is None or self._folder is not None:
            return self._folder
        self.output.mkdir(parents=True, exist_ok=True)
        suffix = 1
        while True:
            folder = self.output / (self.name if suffix == 1 else f"{self.name}-{suffix}")
            try:
                folder.mkdir()
            except FileExistsError:
                suffix += 1
                continue
            self._folder = folder
            return folder

    def _claimed_for(self, result: Result) -> Path:
        if self._folder is None:
            self.claim()
        result.path = str(self.folder)
        return self.folder

    def save(self, result: Result) -> None:
        if self.output is None:
            return
        text = json.dumps(result.to_dict(), indent=2) + "\n"
        write_atomic(self._claimed_for(result) / RESULT_FILE, text)

    def finish(self, result: Result) -> None:
        """The last save, with the plot and the summary."""
        if self.output is None:
            return
        folder = self._claimed_for(result)
        if result.phases or result.scalars():
            self.plot(result)
        result.artifacts.setdefault("summary", SUMMARY_FILE)
        write_atomic(folder / SUMMARY_FILE, summary(result))
        self.save(result)

    def plot(self, result: Result) -> None:
        """``curve.png``: the main curve, or a figure that says there is none
        (:mod:`paralab.plots`)."""
        from paralab.plots import save_curve

        save_curve(result, self.folder / PLOT_FILE)
        result.artifacts["curve"] = PLOT_FILE


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (int, str)):
        return str(value)
    return "(see result.json)"


def summary(result: Result) -> str:
    """A short Markdown page: what ran, how it ended, the final metrics, the artifacts."""
    spec = result.spec
    lines = [
        f"# {result.name}",
        "",
        f"- status: **{result.status}**",
        f"- dataset `{(spec.get('dataset') or {}).get('name')}`, model `{(spec.get('model') or {}).get('name')}`, "
        f"protocol `{spec.get('protocol', {}).get('name')}`, method `{spec.get('method', {}).get('name')}`",
        f"- seed {result.seed}, device {result.device}, "
        f"{result.timings.get('total', 0.0):.2f} s, {len(result.phases)} phases",
    ]
    if result.error:
        lines.append(f"- error in {result.error.get('plugin') or 'the host'}: {result.error.get('message')}")
    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| {key} | {_format(value)} |" for key, value in sorted(result.metrics.items())]
    if result.artifacts:
        lines += ["", "Artifacts: " + ", ".join(f"[{k}]({v})" for k, v in sorted(result.artifacts.items()))]
    if result.settings:
        lines += ["", "## Settings", "", "Every option as the run used it (defaults included).", "",
                  "| component | option | value |", "|---|---|---|"]
        for path, options in result.settings.items():
            name = options.get("name", "")
            rest = {key: value for key, value in options.items() if key != "name"}
            lines.append(f"| {path} | (name) | `{name}` |")
            lines += [f"| {path} | {key} | {_setting(value)} |" for key, value in rest.items()]
    if result.warnings:
        lines += ["", "## Warnings", "", "| category | count | message |", "|---|---|---|"]
        lines += [f"| {w['category']} | {w['count']} | {_cell(w['message'])} |"
                  for w in result.warnings]
    return "\n".join(lines) + "\n"


def _setting(value: Any) -> str:
    """An option's value in a table cell: short values as written, long ones cut."""
    text = json.dumps(_clean(value)) if not isinstance(value, str) else repr(value)
    return _cell(text if len(text) <= 80 else text[:77] + "...")


def _cell(text: str) -> str:
    return str(text).splitlines()[0].replace("|", "\\|") if text else ""
