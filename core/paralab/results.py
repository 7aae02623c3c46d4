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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paralab.context import Phase

RESULT_FILE = "result.json"
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
    path: str = ""

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
            }
        )

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Result:
        """Read a run folder's ``result.json`` back."""
        path = Path(folder)
        data = json.loads((path / RESULT_FILE if path.is_dir() else path).read_text("utf-8"))
        return cls(**data, path=str(path))


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
        points = result.curve()
        if len(points) >= 1:
            self.plot(result, points)
        result.artifacts.setdefault("summary", SUMMARY_FILE)
        write_atomic(folder / SUMMARY_FILE, summary(result))
        self.save(result)

    def plot(self, result: Result, points: list[tuple[int, float]]) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        kinds = {phase["kind"] for phase in result.phases}
        figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
        axes.plot([p for p, _ in points], [v for _, v in points], marker="o")
        axes.set_xlabel(" / ".join(sorted(kinds)) or "phase")
        axes.set_ylabel(result.main_metric)
        axes.set_title(result.name)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        path = self.folder / PLOT_FILE
        figure.savefig(path)
        plt.close(figure)
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
    return "\n".join(lines) + "\n"
