"""What a protocol, a method, an auditor or a hook sees of a run.

:class:`RunContext` is the run's public face: its spec, device, shared dataset, model, method
and output folder, plus the few things a protocol does with the host: open a :meth:`phase`,
:meth:`evaluate` a split, add the spec's loss terms (:meth:`extra_loss`), pass an update
through middleware (:meth:`process_update`) and show :meth:`progress`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from paralab.data.shared import DatasetInfo, SharedDataset
from paralab.evaluation import Predictions, predict
from paralab.health import NumericalError, check_phase

if TYPE_CHECKING:
    from paralab.host import Hooks
    from paralab.results import Result, ResultWriter
    from paralab.spec import ExperimentSpec

logger = logging.getLogger("paralab")
T = TypeVar("T")


@dataclass
class Phase:
    """One step of a protocol's outer loop: an epoch, an experience, a round, a meta-batch.

    ``metrics`` maps ``"split/metric"`` to a value; ``audits`` maps ``"auditor/split"`` to what
    the auditor returned. Both are filled by :meth:`RunContext.evaluate` and saved to
    ``result.json`` when the phase closes.
    """

    kind: str
    index: int
    info: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    audits: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "index": self.index,
            "info": self.info,
            "metrics": self.metrics,
            "audits": self.audits,
            "seconds": round(self.seconds, 6),
        }


@dataclass(frozen=True)
class Update:
    """A model update on its way to be applied or aggregated (see ``paralab_process_update``).

    ``delta`` maps parameter names to tensors (new minus old), ``source`` names who produced it
    (a federated client id), ``weight`` is the number of examples behind it.
    """

    delta: dict[str, torch.Tensor]
    source: int | str | None = None
    weight: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Update:
        return replace(self, **changes)


@dataclass
class Batch:
    """One training batch as loss terms see it; ``indices`` index the shared dataset.

    ``objective``, when a protocol sets it, is the task loss ``objective(batch) -> scalar``
    that replaces cross-entropy of ``logits`` against ``targets`` (the ``addition`` protocol's
    targets are sums, not the digits the logits score)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    indices: torch.Tensor
    logits: torch.Tensor
    model: torch.nn.Module
    run: RunContext | None = None
    objective: Callable[[Batch], torch.Tensor] | None = None

    def feature(self, name: str) -> torch.Tensor:
        """A per-example feature (a sensitive attribute, a task id) for this batch's rows."""
        if self.run is None:
            raise ValueError("this batch has no run to read dataset features from")
        values = self.run.dataset.features[name]
        return values[self.indices.to(values.device)]


@dataclass
class Evaluation:
    """One evaluated split at one evaluation point: shared predictions and what was computed."""

    split: str
    predictions: Predictions
    metrics: dict[str, Any]
    audits: dict[str, Any]


LossTerm = Callable[[Batch], torch.Tensor]


class ComponentFailure(RuntimeError):
    """A metric, auditor or loss term raised while a protocol was running; names which one,
    so the host can name the plugin that provides it."""

    def __init__(self, kind: str, name: str, error: BaseException) -> None:
        super().__init__(f"{kind} {name!r}: {type(error).__name__}: {error}")
        self.kind = kind
        self.name = name


def _calling(kind: str, name: str, function: Callable[..., T], *args: Any) -> T:
    try:
        return function(*args)
    except ComponentFailure:
        raise
    except Exception as error:
        raise ComponentFailure(kind, name, error) from error


def _interactive() -> bool:
    """A terminal or a notebook kernel: where a live progress bar is readable."""
    if sys.stderr.isatty():
        return True
    return "ipykernel" in sys.modules


def report_phase(run: RunContext, phase: Phase) -> None:
    """One line per closed phase on stderr when output is not interactive (a pipe, a batch
    job, a log file): the run, the phase (of how many), its main metric, seconds and an ETA."""
    if os.environ.get("PARALAB_QUIET") or _interactive():
        return
    done, total = run._phases_done, run._phases_total
    of = f"/{total}" if total else ""
    parts = [f"[{run.spec.name}] {phase.kind} {phase.index + 1}{of}"]
    main = run.result.main_metric
    value = phase.metrics.get(main)
    if isinstance(value, (int, float)):
        parts.append(f"{main} {value:.4f}")
    parts.append(f"{phase.seconds:.1f} s")
    timed = run._phases_timed
    if total and timed:
        elapsed = time.perf_counter() - run._phases_started
        parts.append(f"ETA {elapsed / timed * max(total - done, 0):.0f} s")
    print("  ".join(parts), file=sys.stderr, flush=True)


class RunContext:
    """The live state of one run, handed to protocols, methods, auditors and hooks."""

    def __init__(
        self,
        *,
        spec: ExperimentSpec,
        device: torch.device,
        dataset: SharedDataset,
        model: torch.nn.Module | None,
        method: Any,
        protocol: Any,
        metrics: dict[str, Callable[[Predictions, SharedDataset], Any]],
        auditors: dict[str, Any],
        loss_terms: dict[str, LossTerm],
        hooks: Hooks,
        result: Result,
        writer: ResultWriter,
        options: dict[str, dict[str, Any]],
        registry: Any = None,
    ) -> None:
        self.spec = spec
        self.device = device
        self.dataset = dataset
        self.model = model
        self.method = method
        self.protocol = protocol
        self.metrics = metrics
        self.auditors = auditors
        self.loss_terms = loss_terms
        self.hooks = hooks
        self.result = result
        self.writer = writer
        self.options = options
        self.registry = registry
        """The registry this run was built from (``paralab.run(..., registry=)`` or the
        process registry): where a plugin looks up components by name during the run (the
        fairness auditor's metrics, continual strategy plugins), so a run given its own
        registry finds its own components."""
        self.seed = spec.seed
        self.generator = torch.Generator().manual_seed(spec.seed)
        self.current_phase: Phase | None = None
        self.state: dict[str, Any] = {}
        """Free space for plugins to share run-scoped state (key by your plugin's name)."""
        self.study: dict[str, Any] | None = None
        """The study this run belongs to (``name``, ``folder``, ``configuration``, ``seed``,
        and what its trackers' ``before_study`` added), or None."""
        self._phases_total: int | None = None
        self._phases_started = time.perf_counter()
        self._phases_done = 0
        self._phases_timed = 0

    @property
    def info(self) -> DatasetInfo:
        return self.dataset.info

    @property
    def has_output(self) -> bool:
        """Whether the run writes a folder (``spec.output`` is not None): check it before
        writing files to :attr:`output_dir`."""
        return self.writer.enabled

    @property
    def output_dir(self) -> Path:
        """The run's folder; raises ``ValueError`` when the spec says ``output = None``
        (see :attr:`has_output`)."""
        return self.writer.folder

    # ------------------------------------------------------------------------------ phases

    @contextmanager
    def phase(self, kind: str, index: int, **info: Any) -> Iterator[Phase]:
        """Open a phase: calls ``paralab_before_phase``, then on exit checks numerical health
        (:mod:`paralab.health`), calls ``paralab_after_phase`` and saves the phase to
        ``result.json`` at once."""
        phase = Phase(kind=kind, index=index, info=info)
        self.current_phase = phase
        started = time.perf_counter()
        self.hooks.before_phase(self, phase)
        yield phase
        phase.seconds = time.perf_counter() - started
        try:
            check_phase(self, phase)
        except NumericalError as error:
            # Keep the diverged phase for diagnosis; the run fails, naming the method.
            phase.info["numerical_error"] = str(error)
            self.result.add_phase(phase)
            self.writer.save(self.result)
            raise ComponentFailure("method", self.spec.method.name, error) from error
        self.hooks.after_phase(self, phase)
        self.result.add_phase(phase)
        self.writer.save(self.result)
        self.current_phase = None
        if self.spec.checkpoint_every and self.writer.enabled and (
                len(self.result.phases) % self.spec.checkpoint_every == 0):
            from paralab.checkpoints import save_checkpoint

            save_checkpoint(self)
        self._phases_done += 1
        self._phases_timed += 1
        report_phase(self, phase)

    # -------------------------------------------------------------------------- evaluation

    def evaluate(
        self,
        split: str = "test",
        indices: torch.Tensor | None = None,
        *,
        model: torch.nn.Module | None = None,
        transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        name: str | None = None,
        predictions: Predictions | None = None,
    ) -> Evaluation:
        """Evaluate a split (or any index view) once; every metric and auditor reads the same
        predictions, which are recorded under ``name`` (default: the split) in the open phase.

        Pass ``predictions`` when a protocol computes them itself (episodes, heads per task).
        """
        name = name or split
        if predictions is not None and not predictions.split:
            predictions.split = name
        if predictions is None:
            if indices is None:
                indices = self.dataset.split(split).indices
            predictions = predict(
                model or self.model,
                self.dataset,
                indices,
                batch_size=self.spec.eval_batch_size,
                transform=transform,
                split=name,
            )
        source = predictions.dataset or self.dataset  # episodes may come from another dataset
        values = {
            metric: _calling("metric", metric, compute, predictions, source)
            for metric, compute in self.metrics.items()
        }
        audits = {
            name_: _calling("auditor", name_, auditor.audit, self, self.current_phase, predictions)
            for name_, auditor in self.auditors.items()
        }
        evaluation = Evaluation(split=name, predictions=predictions, metrics=values, audits=audits)
        phase = self.current_phase
        if phase is not None:
            for metric, value in values.items():
                phase.metrics[f"{name}/{metric}"] = value
            for auditor_name, audit in audits.items():
                phase.audits[f"{auditor_name}/{name}"] = audit
        for metric, value in values.items():
            self.result.metrics[f"{name}/{metric}"] = value
        self.hooks.after_evaluation(self, phase, evaluation)
        return evaluation

    def record(self, key: str, value: Any) -> None:
        """Record a protocol-level metric in the open phase and as the run's latest value."""
        if self.current_phase is not None:
            self.current_phase.metrics[key] = value
        self.result.metrics[key] = value

    # ---------------------------------------------------------------------------- training

    def extra_loss(self, batch: Batch) -> torch.Tensor | float:
        """The sum of the spec's loss terms on ``batch`` (0.0 when it names none)."""
        total: torch.Tensor | float = 0.0
        for name, term in self.loss_terms.items():
            total = total + _calling("loss", name, term, batch)
        return total

    def process_update(self, update: Update) -> Update:
        """Pass an update through the spec's middleware (``paralab_process_update``)."""
        return self.hooks.process_update(self, update)

    def progress(self, iterable: Iterable[T], desc: str = "", total: int | None = None,
                 done: int = 0) -> Iterable[T]:
        """The protocol's outer loop, shown: a progress bar on a terminal or in a notebook
        (``tqdm.auto``); elsewhere (a pipe, a batch job) one line per phase on stderr with the
        main metric and an ETA (:func:`report_phase`). ``total`` is the number of phases,
        ``done`` how many a resumed run had finished. ``PARALAB_QUIET=1`` (``-q``) shows
        nothing."""
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable) + done  # type: ignore[arg-type]
        self._phases_total = total
        self._phases_done = done
        self._phases_timed = 0
        self._phases_started = time.perf_counter()
        if os.environ.get("PARALAB_QUIET") or not _interactive():
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, initial=done, leave=False)

    def log(self, message: str) -> None:
        logger.info("%s: %s", self.spec.name, message)
