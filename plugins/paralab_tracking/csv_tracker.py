"""The ``csv`` tracker: every scalar phase metric in two CSV files of the run folder.

* the long table (``path``, default ``metrics_long.csv``): ``position, kind, index, metric,
  value``, one row per metric per phase, appended and flushed when each phase closes, so a run
  that is killed keeps a row for every phase it finished;
* the wide table (``wide``, default ``metrics.csv``): ``position, kind, index`` and a column per
  metric, a row per phase, rewritten atomically after each phase (a column appears when a
  later phase measures a new metric).

``position`` counts phases from 0 across kinds (the TensorBoard and MLflow step); ``index`` is
the protocol's own index (epoch, experience, round). Values are written as Python writes
floats (``repr``), which read back to the very same number. A resumed run rewrites both files
from the phases it restored, then goes on appending: no row is lost or doubled.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from paralab import Tracker, hookimpl
from paralab_tracking.paths import check_relative
from paralab_tracking.values import Scalar, scalars

LONG_COLUMNS = ("position", "kind", "index", "metric", "value")
_FIXED = ("position", "kind", "index")


class CsvTracker(Tracker):
    """Writes the run's phase metrics as CSV (see the module docstring)."""

    def __init__(self, path: str = "metrics_long.csv", wide: str = "metrics.csv") -> None:
        self.path = path
        self.wide = wide
        self._rows: list[tuple[int, str, int, dict[str, Scalar]]] = []
        self._long: Path | None = None
        self._wide: Path | None = None

    def validate(self, run: Any) -> None:
        check_relative(self.path, "path", run)
        if self.wide:
            check_relative(self.wide, "wide", run)
            if Path(self.wide) == Path(self.path):
                raise ValueError(f"wide = {self.wide!r} is also the long table's path; give "
                                 f"them different names")

    @hookimpl
    def paralab_before_experiment(self, run: Any) -> None:
        folder = run.output_dir
        self._long = folder / self.path
        self._wide = folder / self.wide if self.wide else None
        # A resumed run starts from the phases it restored; a new run from none.
        self._rows = [(position, phase["kind"], phase["index"], scalars(phase["metrics"]))
                      for position, phase in enumerate(run.result.phases)]
        self._long.parent.mkdir(parents=True, exist_ok=True)
        with self._long.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(LONG_COLUMNS)
            for row in self._rows:
                writer.writerows(_long_rows(*row))
        self._write_wide()
        run.result.artifacts["metrics_long"] = self.path
        if self.wide:
            run.result.artifacts["metrics_wide"] = self.wide

    # After every other plugin's after_phase (which may add metrics or fail the phase), so the
    # tracker records the phase as result.json keeps it.
    @hookimpl(trylast=True)
    def paralab_after_phase(self, run: Any, phase: Any) -> None:
        assert self._long is not None, "paralab_before_experiment opens the files"
        row = (len(run.result.phases), phase.kind, phase.index, scalars(phase.metrics))
        self._rows.append(row)
        with self._long.open("a", newline="", encoding="utf-8") as stream:
            csv.writer(stream).writerows(_long_rows(*row))
            stream.flush()
        self._write_wide()

    def _write_wide(self) -> None:
        if self._wide is None:
            return
        columns: dict[str, None] = {}
        for *_, values in self._rows:
            columns.update(dict.fromkeys(values))
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow([*_FIXED, *columns])
        for position, kind, index, values in self._rows:
            writer.writerow([position, kind, index,
                             *(_text(values[c]) if c in values else "" for c in columns)])
        _write_atomic(self._wide, text.getvalue())


def _long_rows(position: int, kind: str, index: int,
               values: dict[str, Scalar]) -> list[list[Any]]:
    return [[position, kind, index, metric, _text(value)] for metric, value in values.items()]


def _text(value: Scalar) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _write_atomic(path: Path, text: str) -> None:
    """Readers (a notebook polling the file) see the old table or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
