"""Run one experiment: validate, build, check, execute, save.

1. **validate** the spec against the registry: names, declared option constraints, pairing,
   components the protocol would ignore (:meth:`ExperimentSpec.validate`). Nothing is built.
2. **build** the method, protocol, metrics, auditors, loss terms, middleware and trackers,
   then the dataset (once per process) and the model.
3. **check** each built object against its interface (:mod:`paralab.interfaces`), then call
   its ``validate(run)``. A ``ValueError`` there is a :class:`SpecError`; no folder exists yet.
4. **execute**: ``paralab_before_experiment``, ``protocol.execute(run)`` (a resumed run
   first takes back its checkpoint), the auditors' ``finalize``.
5. **save** ``model.safetensors``, ``result.json`` (with its provenance), the plot and
   ``summary.md``; then ``paralab_after_experiment`` (trackers see the finished folder).

:class:`_Stage` tracks which component is at work, so that a failure anywhere names the
plugin that raised it; the phases finished before it stay in ``result.json`` (status
``failed``) and the exception is re-raised as :class:`RunError` with the partial result. Only
declared option checks, ``validate(run)``, the dataset loader (files, options) and a model
factory (which sees the data's shape) reject a spec; a ``ValueError`` from another factory or
from training is a bug and fails the run.
"""

from __future__ import annotations

import functools
import platform
import random
import signal
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paralab import run_warnings
from paralab.context import ComponentFailure, RunContext, logger
from paralab.data.cache import load_dataset
from paralab.data.files import DataNotFoundError
from paralab.host import Hooks, get_registry
from paralab.interfaces import KIND_INTERFACES, TRACKER_HOOKS, missing_members, resolve
from paralab.provenance import finish as _finish_provenance
from paralab.provenance import provenance
from paralab.results import MODEL_FILE, Result, ResultWriter
from paralab.spec import ComponentRef, ExperimentSpec, SpecError

_CORE_PACKAGES = ("paralab", "torch", "numpy", "pluggy", "scikit-learn")
_OPTIONAL_PACKAGES = {
    "pennylane": "pennylane",
    "qiskit": "qiskit",
    "qiskit_aer": "qiskit-aer",
    "avalanche": "avalanche-lib",
    "learn2learn": "learn2learn",
    "fairlearn": "fairlearn",
    "networkx": "networkx",
    "ray": "ray",
    "captum": "captum",
    "shap": "shap",
}


class RunError(RuntimeError):
    """A run failed; ``result`` holds what it finished, ``plugin`` who raised."""

    def __init__(self, message: str, result: Result, plugin: str | None) -> None:
        super().__init__(message)
        self.result = result
        self.plugin = plugin


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when present, else the CPU; an unavailable CUDA is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device = {device!r} but CUDA is not available here; use 'auto' or 'cpu'")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def package_versions() -> dict[str, str]:
    """Versions of the core packages and of the heavy libraries this process imported."""
    import sys

    names = list(_CORE_PACKAGES) + [
        dist for module, dist in _OPTIONAL_PACKAGES.items() if module in sys.modules
    ]
    versions = {"python": platform.python_version()}
    for name in names:
        version = _installed_version(name)
        if version is not None:
            versions[name] = version
    return versions


@functools.cache
def _installed_version(name: str) -> str | None:
    """A distribution's version, read once per process (parsing METADATA is ~1.5 ms each,
    half of a small run's host overhead when read at every run)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _check_output(spec: ExperimentSpec) -> None:
    """``output`` must be a folder or not exist yet (found before training, not after)."""
    if spec.output is None:
        return
    output = Path(spec.output)
    for parent in (output, *output.parents):
        if parent.exists():
            if not parent.is_dir():
                raise SpecError([f"output = {spec.output!r}: {parent} is a file, not a folder"])
            return


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived during a run; ``signal`` says which (the CLI exits 128 + it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signal = signum


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`RunInterrupted` while a run is in progress (SIGINT already is a
    ``KeyboardInterrupt``), so the run can record that it was interrupted. Only the main
    thread can set signal handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise RunInterrupted(signum)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class ContractError(TypeError):
    """A factory returned an object that lacks members of its interface: a plugin bug."""


class _Rejected(Exception):
    """The spec was rejected after building (``validate(run)``, the dataset loader)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class _Stage:
    """Which component the runner is working on, to name the plugin when it raises."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.kind = "host"
        self.name = ""
        self.provider = ""
        self.path = ""

    def set(self, kind: str, name: str = "", path: str = "") -> None:
        spec = self.registry.components.get(kind, {}).get(name) if name else None
        self.kind, self.name, self.path = kind, name, path
        self.provider = getattr(spec, "provider", "")

    @contextmanager
    def at(self, kind: str, name: str = "", path: str = "", *,
           rejects: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
        """Work on one component; an error of a type in ``rejects`` rejects the spec."""
        self.set(kind, name, path)
        try:
            yield
        except rejects as error:
            label = f"{self.kind} {self.name!r} ({self.provider})" if self.name else self.kind
            where = getattr(error, "field", None) or path
            raise _Rejected(f"{where}: {label}: {error}") from error


@dataclass
class _Built:
    """What the build stage made, by spec path."""

    method: Any
    protocol: Any
    metrics: dict[str, Any]
    auditors: dict[str, Any]
    loss_terms: dict[str, Any]
    middleware: list[tuple[int, ComponentRef, Any]]
    trackers: list[tuple[int, ComponentRef, Any]]
    dataset: Any = None
    model: Any = None

    def named(self, spec: ExperimentSpec) -> list[tuple[str, str, str, Any]]:
        """``(spec path, kind, name, object)`` of everything built, in the spec's order."""
        objects = {"protocol": self.protocol, "method": self.method, "model": self.model}
        objects.update({f"metrics[{i}]": self.metrics[r.name] for i, r in enumerate(spec.metrics)})
        objects.update({f"auditors[{i}]": self.auditors[r.name]
                        for i, r in enumerate(spec.auditors)})
        objects.update({f"losses[{i}]": self.loss_terms[r.name] for i, r in enumerate(spec.losses)})
        objects.update({f"middleware[{i}]": m for i, _, m in self.middleware})
        objects.update({f"trackers[{i}]": t for i, _, t in self.trackers})
        order = ("protocol", "method", "metric", "auditor", "loss", "middleware", "tracker",
                 "model")
        listed = sorted((c for c in spec.components() if c[1] != "dataset"),
                        key=lambda c: order.index(c[1]))  # the model's data checks come last
        return [(path, kind, ref.name, objects[path]) for path, kind, ref in listed]


def run(spec: ExperimentSpec | dict[str, Any] | str | Path, *, registry: Any = None,
        overrides: Sequence[str] = (), study: Mapping[str, Any] | None = None,
        resume_from: Any = None, callbacks: Sequence[object] = ()) -> Result:
    """Run an experiment and return its :class:`Result`.

    ``spec`` is an :class:`ExperimentSpec`, a dict in the TOML layout, or a path to a TOML file;
    ``overrides`` change its values first (``["method.lr=0.01", "protocol.epochs=5"]``, the
    grammar of :mod:`paralab.overrides`). ``study`` is what a study tells its runs about itself
    (:class:`paralab.StudyInfo` as a dict): recorded in ``result.json`` and seen by trackers as
    ``run.study``. ``resume_from`` is used by :func:`paralab.resume`.

    ``callbacks`` are objects with ``@paralab.hookimpl`` lifecycle hooks (``paralab_after_phase``
    ...) for this run only, as Lightning's callbacks: no entry point, no process-wide
    registration; each is checked as a plugin is (``PARALAB_API``, hook names, unmarked
    methods) before anything runs, and one that raises fails the run naming it.

    Raises :class:`paralab.SpecError` before anything runs (and before the run's folder exists)
    when the spec is invalid, and :class:`RunError` (with the partial result) when a component
    fails midway or training diverges to NaN.

    >>> import paralab
    >>> result = paralab.run(dict(dataset="iris", model="mlp", output=None,
    ...                           protocol={"name": "supervised", "epochs": 2}))
    >>> result.status
    'completed'
    """
    registry = registry or get_registry()
    _check_callbacks(registry, callbacks)
    start = _start(spec, registry, overrides, study,
                   folder=None if resume_from is None else resume_from.folder)
    start.callbacks = list(callbacks)
    spec, stage, writer, result, started = (start.spec, start.stage, start.writer,
                                            start.result, start.started)
    context: RunContext | None = None
    with _signals_interrupt(), run_warnings.collect(result.warnings):
        try:
            built, context = _assemble(start)
            writer.claim()  # the spec is accepted: now the run has a folder of its own
            result.path = str(writer.folder) if writer.enabled else ""
            if resume_from is not None:
                resume_from.restore(context)
            _execute(context, built, stage)
            _save(context, stage, started)
            return result
        except _Rejected as rejection:
            # Nothing was saved yet, so a rejected spec leaves no run folder behind.
            raise SpecError([rejection.problem]) from rejection.__cause__
        except KeyboardInterrupt as interrupt:
            _interrupted(interrupt, stage, context, result, writer, started)
            interrupt.result = result  # type: ignore[attr-defined] # the CLI names the folder
            raise
        except (Exception, SystemExit) as error:
            # SystemExit too: a plugin calling sys.exit() fails the run, not the process.
            raise _failed(error, stage, registry, context, result, writer, started) from error


@dataclass
class _Start:
    """A run as it stands once its spec is valid, before anything is built."""

    spec: ExperimentSpec
    registry: Any
    device: torch.device
    stage: _Stage
    writer: ResultWriter
    result: Result
    started: float
    callbacks: list[object] = field(default_factory=list)


def _check_callbacks(registry: Any, callbacks: Sequence[object]) -> None:
    """Every callback valid as a per-run hook object, or a :class:`SpecError` naming each."""
    from paralab_registry import PluginLoadError

    registry.load()
    problems = []
    for position, callback in enumerate(callbacks):
        try:
            registry.check_callback(f"callbacks[{position}] ({type(callback).__name__})",
                                    callback)
        except PluginLoadError as error:
            problems.append(str(error))
    if problems:
        raise SpecError(problems)


def _start(spec: Any, registry: Any, overrides: Sequence[str],
           study: Mapping[str, Any] | None, folder: Path | None = None) -> _Start:
    """Load and validate the spec (overrides applied), resolve the device, seed every
    generator, and make the (unclaimed) writer and the result; ``folder`` is a resumed run's.
    Raises :class:`SpecError`. :func:`paralab.run_seeds` prepares each seed the same way."""
    spec = ExperimentSpec.load(spec, overrides, registry)
    spec.validate(registry)
    if folder is None:
        _check_output(spec)
    try:
        device = resolve_device(spec.device)
    except RuntimeError as error:
        raise SpecError([f"device = {spec.device!r}: {error}"]) from None
    started = time.perf_counter()
    seed_everything(spec.seed)
    writer = ResultWriter(spec.output, spec.name, folder=folder)
    result = Result(name=spec.name, spec=spec.to_dict(), seed=spec.seed, device=str(device),
                    provenance=provenance(), study=dict(study) if study else None,
                    settings=resolved_settings(spec, registry))
    return _Start(spec, registry, device, _Stage(registry), writer, result, started)


def resolved_settings(spec: ExperimentSpec, registry: Any) -> dict[str, dict[str, Any]]:
    """Each component's options as the run uses them: the declared defaults, then the spec's
    values (what ``summary.md`` and a tracker's parameters show; the spec keeps what was
    written)."""
    resolved = {}
    for path, kind, ref in spec.components():
        declared = registry.component(kind, ref.name).defaults()
        resolved[path] = {"name": ref.name, **declared, **ref.options}
    return resolved


def _assemble(start: _Start) -> tuple[_Built, RunContext]:
    """Build every component, the run's context, and check them (raises :class:`_Rejected`
    for a spec that the built objects reject)."""
    built = _build(start.spec, start.registry, start.stage, start.device, start.result)
    start.result.model = built.model
    context = _context(start.spec, start.registry, built, start.device, start.result,
                       start.writer, start.callbacks)
    context.study = start.result.study
    _check(context, built, start.stage, start.registry)
    return built, context


def _build(spec: ExperimentSpec, registry: Any, stage: _Stage, device: torch.device,
           result: Result) -> _Built:
    """Components that do not depend on the data first, then the dataset and the model."""

    def build(path: str, kind: str, ref: ComponentRef, *args: Any) -> Any:
        with stage.at(kind, ref.name, path):
            return registry.component(kind, ref.name).load()(*args, **ref.options)

    built = _Built(
        method=build("method", "method", spec.method),
        protocol=build("protocol", "protocol", spec.protocol),
        metrics={r.name: build(f"metrics[{i}]", "metric", r) for i, r in enumerate(spec.metrics)},
        auditors={r.name: build(f"auditors[{i}]", "auditor", r)
                  for i, r in enumerate(spec.auditors)},
        loss_terms={r.name: build(f"losses[{i}]", "loss", r) for i, r in enumerate(spec.losses)},
        middleware=[(i, r, build(f"middleware[{i}]", "middleware", r))
                    for i, r in enumerate(spec.middleware)],
        trackers=[(i, r, build(f"trackers[{i}]", "tracker", r))
                  for i, r in enumerate(spec.trackers)],
    )
    ref = spec.dataset
    with stage.at("dataset", ref.name, "dataset", rejects=(ValueError, DataNotFoundError)):
        t0 = time.perf_counter()
        built.dataset = load_dataset(ref.name, device=device, registry=registry, **ref.options)
        result.timings["data"] = time.perf_counter() - t0
    if spec.model is not None:
        # A model factory sees the dataset's shape: a ValueError there ("conv4 needs images")
        # is a model that does not fit the data, reported like a spec error.
        ref = spec.model
        with stage.at("model", ref.name, "model", rejects=(ValueError,)):
            factory = registry.component("model", ref.name).load()
            built.model = factory(built.dataset.info, **ref.options).to(device)
    protocol_spec = registry.component("protocol", spec.protocol.name)
    result.main_metric = protocol_spec.main_metric or _main_metric(spec)
    return built


def _context(spec: ExperimentSpec, registry: Any, built: _Built, device: torch.device,
             result: Result, writer: ResultWriter,
             callbacks: Sequence[object] = ()) -> RunContext:
    """The run's context, with a plugin manager of its own that holds its middleware, its
    trackers and its callbacks."""
    # Registered last-listed first: pluggy calls the latest registered wrapper outermost, and
    # the spec's first middleware is the outermost.
    extra = [(f"middleware[{i}]:{r.name}", m) for i, r, m in reversed(built.middleware)]
    extra += [(f"trackers[{i}]:{r.name}", t) for i, r, t in reversed(built.trackers)]
    extra += [(f"callbacks[{i}]:{type(c).__name__}", c) for i, c in enumerate(callbacks)]
    # Without middleware the process-wide manager serves (nothing run-specific is ever
    # registered there); building a manager costs ~3 ms of a small run.
    hooks = Hooks(registry.run_manager(extra) if extra else registry.pm)
    result.plugins = [record.to_dict() for record in registry.plugins(include_builtin=True)]
    return RunContext(
        spec=spec,
        device=device,
        dataset=built.dataset,
        model=built.model,
        method=built.method,
        protocol=built.protocol,
        metrics=built.metrics,
        auditors=built.auditors,
        loss_terms=built.loss_terms,
        hooks=hooks,
        result=result,
        writer=writer,
        options={path: dict(ref.options) for path, _, ref in spec.components()},
        registry=registry,
    )


def _check(context: RunContext, built: _Built, stage: _Stage, registry: Any) -> None:
    """Each object against its interface, then its ``validate(run)`` against the data."""
    protocol_spec = registry.component("protocol", context.spec.protocol.name)
    named = built.named(context.spec)
    for path, kind, name, component in named:
        if kind == "model":
            continue
        with stage.at(kind, name, path):
            if kind == "method":
                if not protocol_spec.method_interface:
                    continue
                interface = resolve(protocol_spec.method_interface)
            else:
                interface = KIND_INTERFACES[kind]
            missing = missing_members(component, interface)
            if missing:
                raise ContractError(
                    f"{path} = {name!r}: the {kind} factory of plugin {stage.provider or '?'} "
                    f"returned a {type(component).__name__}, which lacks "
                    f"{', '.join(missing)} of paralab.interfaces.{interface.__name__}"
                    + (f" (the interface protocol {protocol_spec.name!r} drives)"
                       if kind == "method" else "")
                )
            if kind == "middleware":
                _check_middleware_hooks(component, name, registry, stage)
            if kind == "tracker":
                _check_tracker_hooks(component, name, stage)
    for path, kind, name, component in named:  # a model is a torch module: it may validate
        validate = getattr(component, "validate", None)
        if callable(validate):
            with stage.at(kind, name, path, rejects=(ValueError,)):
                validate(context)


def _check_middleware_hooks(component: Any, name: str, registry: Any, stage: _Stage) -> None:
    declared = registry.component("middleware", name).hooks
    implemented = [hook for hook in declared if callable(getattr(component, hook, None))]
    if not implemented:
        raise ContractError(
            f"middleware {name!r} of plugin {stage.provider or '?'} declares hooks "
            f"{list(declared)} but its object ({type(component).__name__}) implements none"
        )


def _check_tracker_hooks(component: Any, name: str, stage: _Stage) -> None:
    if not any(callable(getattr(component, hook, None)) for hook in TRACKER_HOOKS):
        raise ContractError(
            f"tracker {name!r} of plugin {stage.provider or '?'}: its object "
            f"({type(component).__name__}) implements none of the lifecycle hooks "
            f"{', '.join(TRACKER_HOOKS)}, so it would record nothing"
        )


def _execute(context: RunContext, built: _Built, stage: _Stage) -> None:
    stage.set("hook")
    context.hooks.before_experiment(context)
    stage.set("protocol", context.spec.protocol.name)
    t0 = time.perf_counter()
    built.protocol.execute(context)
    context.result.timings["protocol"] = time.perf_counter() - t0
    for name, auditor in built.auditors.items():
        stage.set("auditor", name)
        finalize = getattr(auditor, "finalize", None)
        if callable(finalize):
            audit = finalize(context)
            if audit is not None:
                context.result.audits[name] = audit


def _save(context: RunContext, stage: _Stage, started: float) -> None:
    """Completed: ``paralab_after_experiment``, then the result's folder, written once more."""
    stage.set("hook")
    result = context.result
    result.status = "completed"
    result.timings["total"] = time.perf_counter() - started
    _finish_provenance(result)
    if context.writer.enabled and context.spec.save_model and context.model is not None:
        from paralab.checkpoints import save_model

        stage.set("host")
        save_model(context.model, context.writer.folder)
        result.artifacts["model"] = MODEL_FILE
    result.packages = package_versions()
    context.writer.finish(result)  # trackers see the finished folder ...
    stage.set("hook")
    context.hooks.after_experiment(context, result)
    context.writer.save(result)  # ... and what a hook added to the result is kept


def _interrupted(interrupt: KeyboardInterrupt, stage: _Stage, context: RunContext | None,
                 result: Result, writer: ResultWriter, started: float) -> None:
    """Ctrl-C or SIGTERM: the result says ``interrupted`` (and where), ``paralab_on_error``
    runs, and the folder gets its summary and plot, as after a failure."""
    phase = context.current_phase if context is not None else None
    name = getattr(interrupt, "signal", None)
    result.status = "interrupted"
    result.error = {
        "plugin": None,
        "stage": stage.kind,
        "component": stage.name,
        "type": signal.Signals(name).name if name else "KeyboardInterrupt",
        "message": "the run was interrupted",
        "phase": None if phase is None else {"kind": phase.kind, "index": phase.index},
        "traceback": "",
    }
    result.timings["total"] = time.perf_counter() - started
    _finish_provenance(result)
    result.packages = package_versions()
    if context is not None:
        try:
            context.hooks.on_error(context, interrupt, phase)
        except Exception:  # noqa: BLE001 - on_error must not mask the interrupt
            logger.exception("a paralab_on_error implementation raised")
    if writer.enabled:
        try:
            writer.finish(result)
        except Exception:  # noqa: BLE001 - keep what can be kept
            writer.save(result)


def _failed(error: BaseException, stage: _Stage, registry: Any, context: RunContext | None,
            result: Result, writer: ResultWriter, started: float) -> RunError:
    """Record the failure in the result (and its folder); the error to raise."""
    if isinstance(error, ComponentFailure):
        stage.set(error.kind, error.name)
        error = error.__cause__ or error  # type: ignore[assignment]
    plugin = registry.plugin_of(error.__traceback__, prefer=stage.provider or None)
    if stage.kind == "method" and stage.provider and plugin is None:
        plugin = stage.provider
    where = f"{stage.kind} {stage.name!r}" if stage.name else stage.kind
    who = (f"plugin {registry.records[plugin].label}" if plugin in registry.records
           else "a callback" if stage.kind == "callback" else "the host")
    message = f"{who} failed in {where}: {type(error).__name__}: {error}"
    phase = context.current_phase if context is not None else None
    if phase is not None:
        message += f" (during {phase.kind} {phase.index})"
    result.status = "failed"
    result.error = {
        "plugin": plugin,
        "stage": stage.kind,
        "component": stage.name,
        "type": type(error).__name__,
        "message": str(error),
        "phase": None if phase is None else {"kind": phase.kind, "index": phase.index},
        "traceback": "".join(traceback.format_exception(error)),
    }
    result.timings["total"] = time.perf_counter() - started
    _finish_provenance(result)
    result.packages = package_versions()
    if context is not None:
        try:
            context.hooks.on_error(context, error, phase)
        except Exception:  # noqa: BLE001 - on_error must not mask the original failure
            logger.exception("a paralab_on_error implementation raised")
    try:
        writer.finish(result)
    except Exception:  # noqa: BLE001 - the partial result.json is already on disk
        writer.save(result)
    return RunError(message, result, plugin)


def _main_metric(spec: ExperimentSpec) -> str:
    metric = spec.metrics[0].name if spec.metrics else "accuracy"
    splits = spec.protocol.options.get("eval_splits") or ["test"]
    return f"{splits[0]}/{metric}"
