"""The ``tensorboard`` tracker: TensorBoard event files written by ``torch.utils.tensorboard``.

What a run's event files hold:

* a scalar per metric per phase (tag ``test/accuracy``, step = phase position from 0). Event
  files store scalars as float32, the only kind TensorBoard's default loader displays: a value
  read back is ``result.json``'s rounded to float32 (most metrics are float32 already; the CSV
  and MLflow trackers keep the float64 value);
* the spec as text (tag ``spec``, its TOML), and at the end the run's ``status`` as text;
* at the end, the hparams summary: the flattened spec (``method.lr``, ``model.hidden`` ...) as
  hyperparameters and the final metrics, which TensorBoard's HParams tab reads from the
  scalars above (a metric measured outside any phase gets one scalar at the last step).

By default the files go to the run folder's ``tensorboard/``, so ``tensorboard --logdir runs``
shows every run under ``runs`` side by side (a study's runs included). An absolute ``log_dir``
gets a subfolder per run. A resumed run purges the steps it is about to repeat.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from paralab import Tracker, hookimpl
from paralab_tracking.paths import check_relative
from paralab_tracking.values import Scalar, flat_spec, resolved_spec, scalars


class TensorBoardTracker(Tracker):
    """Writes the run's metrics, spec and hparams as TensorBoard events."""

    def __init__(self, log_dir: str = "tensorboard") -> None:
        self.log_dir = log_dir
        self.folder: Path | None = None
        self._writer: Any = None
        self._last: dict[str, Scalar] = {}

    def validate(self, run: Any) -> None:
        if not Path(self.log_dir).is_absolute():
            check_relative(self.log_dir, "log_dir", run)
        elif Path(self.log_dir).is_file():
            raise ValueError(f"log_dir = {self.log_dir!r} is a file, not a folder")

    @hookimpl
    def paralab_before_experiment(self, run: Any) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder = self._folder(run)
        restored = len(run.result.phases)
        # A resumed run repeats the steps after its checkpoint: purge what was logged there.
        self._writer = SummaryWriter(log_dir=str(self.folder), purge_step=restored or None)
        self._last = {key: value for phase in run.result.phases
                      for key, value in scalars(phase["metrics"]).items()}
        toml = run.spec.to_toml()
        self._writer.add_text("spec", textwrap.indent(toml, "    "), global_step=0)
        self._writer.flush()
        if run.writer.enabled and self.folder.is_relative_to(run.output_dir):
            run.result.artifacts["tensorboard"] = str(self.folder.relative_to(run.output_dir))

    def _folder(self, run: Any) -> Path:
        path = Path(self.log_dir)
        if not path.is_absolute():
            return run.output_dir / path
        name = run.output_dir.name if run.writer.enabled else run.spec.name
        return _claim(path, name)

    # After every other plugin's after_phase (which may add metrics or fail the phase), so the
    # tracker records the phase as result.json keeps it.
    @hookimpl(trylast=True)
    def paralab_after_phase(self, run: Any, phase: Any) -> None:
        step = len(run.result.phases)
        for tag, value in scalars(phase.metrics).items():
            self._scalar(tag, value, step)
        self._writer.flush()

    def _scalar(self, tag: str, value: Scalar, step: int) -> None:
        # A plain float32 scalar: TensorBoard's default (fast, Rust) loader shows no other kind;
        # double-precision tensors (new_style, double_precision) are dropped by it.
        self._writer.add_scalar(tag, float(value), global_step=step)
        self._last[tag] = value

    @hookimpl
    def paralab_after_experiment(self, run: Any, result: Any) -> None:
        from torch.utils.tensorboard.summary import hparams

        for tag, value in scalars(result.metrics).items():
            if tag not in self._last:  # measured outside any phase: one point at the end
                self._scalar(tag, value, len(result.phases))
        values = {key: value if isinstance(value, (bool, int, float, str)) else str(value)
                  for key, value in flat_spec(resolved_spec(result)).items()}
        # Written into this run's own file (SummaryWriter.add_hparams would open a new run
        # folder and log the metrics a second time): the HParams tab reads the last value of
        # each metric from the scalars above.
        final = {tag: float(value) for tag, value in self._last.items()}
        for summary in hparams(values, final):
            self._writer.file_writer.add_summary(summary)
        self._writer.add_text("status", result.status, global_step=len(result.phases))
        self._close()

    @hookimpl
    def paralab_on_error(self, run: Any, error: BaseException, phase: Any) -> None:
        if self._writer is None:
            return
        status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        self._writer.add_text("status", f"{status}: {type(error).__name__}: {error}",
                              global_step=len(run.result.phases))
        self._close()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _claim(root: Path, name: str) -> Path:
    """A folder of its own under a shared ``log_dir``: ``name``, else ``name-2``, ..."""
    root.mkdir(parents=True, exist_ok=True)
    suffix = 1
    while True:
        folder = root / (name if suffix == 1 else f"{name}-{suffix}")
        try:
            folder.mkdir()
        except FileExistsError:
            suffix += 1
            continue
        return folder
