"""Several seeds of one configuration run as one stacked model: the host's side.

:func:`prepare` does for one seed what :func:`paralab.run` does before training (the same
steps in the same order, so that the global random number generator is in the same state
when the model factory draws the initial weights): each seed gets its own spec, result,
folder, plugin manager, dataset view, method, protocol and model, i.e. its own
:class:`~paralab.RunContext`. :class:`SeedAxis` then lets a protocol's ``execute_seeds``
train those runs together on one :class:`~paralab.stacked.StackedModel` while every phase,
evaluation, metric, auditor, hook and tracker still happens in each seed's own run, so what
each run writes is what its separate run would.

A protocol opts in with ``ProtocolSpec(seed_axis=True)`` and an object with two methods:

* ``seed_axis_why_not(runs) -> str``: why these runs cannot be stacked (``""``: they can);
  checked before any run folder exists, so a refusal costs nothing but the build;
* ``execute_seeds(runs, axis)``: the protocol's ``execute`` for all runs at once, using
  ``axis.model`` (the stacked model, each run's ``run.model`` a view of its slice),
  ``axis.phases`` and ``axis.guard``.

The built-in ``supervised`` protocol's pair lives in :mod:`paralab.protocols.stacked_supervised`
(the core keeps it beside, not inside, the protocol class).

Failures stay per seed: what raises inside ``axis.guard(k)`` (a metric, an auditor, a hook,
a diverged phase of that seed) fails run ``k`` exactly as its separate run would fail, and
the other seeds go on; an error of the stacked computation itself fails every seed still
running, each with its partial result saved.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from paralab.context import Phase, RunContext
from paralab.overrides import toml_value
from paralab.results import Result, ResultWriter
from paralab.spec import ExperimentSpec, SpecError
from paralab.stacked import StackedModel


@dataclass
class Prepared:
    """One seed's run, built and checked, its folder not yet claimed."""

    spec: ExperimentSpec
    context: RunContext
    built: Any
    stage: Any
    writer: ResultWriter
    result: Result
    started: float
    registry: Any


def seed_overrides(seed: int, name: str | None) -> list[str]:
    """The overrides that make the spec of one seed (and its folder name)."""
    extra = [f"seed={int(seed)}"]
    if name is not None:
        extra.append(f"name={toml_value(name)}")
    return extra


def prepare(spec: Any, seed: int, *, registry: Any, overrides: Sequence[str],
            study: Mapping[str, Any] | None, name: str | None) -> Prepared:
    """What :func:`paralab.run` does before ``writer.claim()``, for ``seed``; a rejected spec
    raises :class:`SpecError` (and no folder exists)."""
    from paralab import runner

    start = runner._start(spec, registry, [*overrides, *seed_overrides(seed, name)],
                          None if study is None else {**study, "seed": int(seed)})
    try:
        built, context = runner._assemble(start)
    except runner._Rejected as rejection:
        raise SpecError([rejection.problem]) from rejection.__cause__
    return Prepared(start.spec, context, built, start.stage, start.writer, start.result,
                    start.started, registry)


@dataclass
class SeedAxis:
    """The stacked runs of one chunk of seeds, as a protocol's ``execute_seeds`` sees them."""

    prepared: list[Prepared]
    model: StackedModel
    failed: dict[int, BaseException] = field(default_factory=dict)
    """Position -> the error that failed that seed's run."""

    @property
    def runs(self) -> list[RunContext]:
        return [p.context for p in self.prepared]

    @property
    def k(self) -> int:
        return len(self.prepared)

    def stack(self, models: Sequence[torch.nn.Module]) -> StackedModel:
        """Another stacked model of one module per seed (LwF's frozen teachers); its tensors
        are copies, the modules are left as they are."""
        return StackedModel(models)

    def active(self) -> list[int]:
        """Positions of the seeds still running."""
        return [k for k in range(self.k) if k not in self.failed]

    # ----------------------------------------------------------------------- failures

    @contextmanager
    def guard(self, k: int, kind: str | None = None, name: str = "") -> Iterator[None]:
        """Work of seed ``k`` alone: an error fails that run (recorded as its separate run
        would record it) and is not raised; ``kind``/``name`` say which component works."""
        if k in self.failed:
            raise RuntimeError(f"seed position {k} already failed")
        stage = self.prepared[k].stage
        if kind is not None:
            stage.set(kind, name)
        try:
            yield
        except (Exception, SystemExit) as error:
            self.fail(k, error)

    def fail(self, k: int, error: BaseException) -> None:
        """Fail run ``k`` with ``error`` (its result and folder record it)."""
        from paralab import runner

        if k in self.failed:
            return
        p = self.prepared[k]
        failure = runner._failed(error, p.stage, p.registry, p.context, p.result, p.writer,
                                 p.started)
        failure.__cause__ = error
        self.failed[k] = failure

    # ------------------------------------------------------------------------- phases

    def progress(self, total: int, done: int = 0) -> None:
        """Start each run's phase counter (the one-line-per-phase reports and their ETA)."""
        now = time.perf_counter()
        for run in self.runs:
            run._phases_total = total
            run._phases_done = done
            run._phases_timed = 0
            run._phases_started = now

    @contextmanager
    def phases(self, kind: str, index: int,
               info: Callable[[int], dict[str, Any]] | None = None,
               positions: Sequence[int] | None = None) -> Iterator[dict[int, Phase]]:
        """Open phase ``(kind, index)`` in every running seed (``info(k)``: its info), yield
        ``{position: Phase}``; on exit close each one (numerical health, hooks, save), each
        under :meth:`guard`. ``positions`` limits it to those seeds (federated seeds that
        reached their target open no more rounds, as their separate runs stop). An error
        raised by the body itself (the stacked computation) propagates: the caller fails
        every running seed."""
        opened: dict[int, Any] = {}
        phases: dict[int, Phase] = {}
        chosen = self.active() if positions is None else [
            k for k in positions if k not in self.failed]
        for k in chosen:
            with self.guard(k, "hook"):
                manager = self.runs[k].phase(kind, index, **(info(k) if info else {}))
                phases[k] = manager.__enter__()
                opened[k] = manager
        yield phases
        for k, manager in opened.items():
            if k in self.failed:
                continue
            with self.guard(k, "protocol", self.runs[k].spec.protocol.name):
                manager.__exit__(None, None, None)

    def each(self) -> list[tuple[int, RunContext]]:
        """``(position, run)`` of the running seeds (a snapshot: guard each one's work)."""
        return [(k, self.runs[k]) for k in self.active()]


def execute(axis: SeedAxis, executor: Any) -> None:
    """Mirror of the runner's execute and save stages for every run of ``axis``:
    ``paralab_before_experiment``, the protocol (stacked), the auditors' ``finalize``, then
    ``_save`` (model, ``result.json``, ``paralab_after_experiment``)."""
    from paralab import runner

    for k, run in axis.each():
        with axis.guard(k, "hook"):
            run.hooks.before_experiment(run)
    for k in axis.active():
        axis.prepared[k].stage.set("protocol", axis.runs[k].spec.protocol.name)
    started = time.perf_counter()
    try:
        executor.execute_seeds(axis.runs, axis)
    except KeyboardInterrupt:
        raise
    except (Exception, SystemExit) as error:
        for k in axis.active():
            axis.fail(k, error)
    seconds = time.perf_counter() - started
    axis.model.unbind()
    for k, run in axis.each():
        run.result.timings["protocol"] = seconds
        for name, auditor in run.auditors.items():
            finalize = getattr(auditor, "finalize", None)
            if not callable(finalize) or k in axis.failed:
                continue
            with axis.guard(k, "auditor", name):
                audit = finalize(run)
                if audit is not None:
                    run.result.audits[name] = audit
    for k, run in axis.each():
        p = axis.prepared[k]
        with axis.guard(k):
            runner._save(run, p.stage, p.started)


def interrupted(axis: SeedAxis, interrupt: KeyboardInterrupt) -> None:
    """Ctrl-C or SIGTERM during a stacked chunk: every running seed is marked interrupted."""
    from paralab import runner

    axis.model.unbind()
    for k in axis.active():
        p = axis.prepared[k]
        runner._interrupted(interrupt, p.stage, p.context, p.result, p.writer, p.started)


# ----------------------------------------------------------------------------- memory


def cuda_device(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


def available_bytes(device: torch.device) -> int:
    """Memory free for stacking: CUDA's free memory, else the host's ``MemAvailable``."""
    if cuda_device(device):
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2**31
