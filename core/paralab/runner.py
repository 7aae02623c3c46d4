"""Run one experiment: validate, build once, let the protocol drive, save as it goes.

spec -> validate against the registry -> build the dataset (once per process) -> model,
method, metrics, auditors, loss terms, middleware -> ``paralab_before_experiment`` ->
protocol.execute(run) -> auditors' ``finalize`` -> ``paralab_after_experiment`` ->
``result.json``, the plot and ``summary.md``.

A failure anywhere is reported with the plugin that raised it; the phases finished before it
stay in ``result.json`` (status ``failed``) and the exception is re-raised as
:class:`RunError`, which carries the partial result.
"""

from __future__ import annotations

import platform
import random
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paralab.context import ComponentFailure, RunContext, logger
from paralab.data.cache import load_dataset
from paralab.data.files import DataNotFoundError
from paralab.host import Hooks, get_registry
from paralab.results import Result, ResultWriter
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
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _output_folder(spec: ExperimentSpec) -> Path | None:
    if spec.output is None:
        return None
    base = Path(spec.output) / spec.name
    folder, suffix = base, 1
    while (folder / "result.json").exists():
        suffix += 1
        folder = base.with_name(f"{base.name}-{suffix}")
    return folder


class _Stage:
    """Which component the runner is working on, to name the plugin when it raises."""

    def __init__(self) -> None:
        self.kind = "host"
        self.name = ""
        self.provider = ""
        self.path = ""
        self.built = False

    def set(self, kind: str, spec: Any = None, path: str = "") -> None:
        self.kind = kind
        self.name = getattr(spec, "name", "")
        self.provider = getattr(spec, "provider", "")
        self.path = path


def run(spec: ExperimentSpec | dict[str, Any] | str | Path, *, registry: Any = None) -> Result:
    """Run an experiment and return its :class:`Result`.

    ``spec`` is an :class:`ExperimentSpec`, a dict in the TOML layout, or a path to a TOML file.
    Raises :class:`paralab.SpecError` before anything runs when the spec is invalid (a factory
    that rejects an option value with ``ValueError`` counts as invalid too), and
    :class:`RunError` (with the partial result) when a component fails midway.

    >>> import paralab
    >>> result = paralab.run(dict(dataset="iris", model="mlp", output=None,
    ...                           protocol={"name": "supervised", "epochs": 2}))
    >>> result.status
    'completed'
    """
    spec = ExperimentSpec.coerce(spec)
    registry = registry or get_registry()
    spec.validate(registry)
    started = time.perf_counter()
    device = resolve_device(spec.device)
    seed_everything(spec.seed)
    writer = ResultWriter(_output_folder(spec))
    result = Result(
        name=spec.name,
        spec=spec.to_dict(),
        seed=spec.seed,
        device=str(device),
        path=str(writer.folder) if writer.enabled else "",
    )
    stage = _Stage()
    hooks = Hooks(registry)
    middleware: list[str] = []
    context: RunContext | None = None
    try:
        # Components that do not depend on the data first: a bad option value fails fast.
        def build(path: str, kind: str, ref: ComponentRef, *args: Any) -> Any:
            component = registry.component(kind, ref.name)
            stage.set(kind, component, path)
            return component.load()(*args, **ref.options)

        method = build("method", "method", spec.method)
        protocol = build("protocol", "protocol", spec.protocol)
        metrics = {ref.name: build(f"metrics[{i}]", "metric", ref) for i, ref in enumerate(spec.metrics)}
        auditors = {
            ref.name: build(f"auditors[{i}]", "auditor", ref) for i, ref in enumerate(spec.auditors)
        }
        loss_terms = {ref.name: build(f"losses[{i}]", "loss", ref) for i, ref in enumerate(spec.losses)}
        middleware_objects = [
            (position, ref, build(f"middleware[{position}]", "middleware", ref))
            for position, ref in enumerate(spec.middleware)
        ]
        dataset_ref = spec.dataset
        stage.set("dataset", registry.component("dataset", dataset_ref.name), "dataset")
        t0 = time.perf_counter()
        dataset = load_dataset(dataset_ref.name, device=device, registry=registry, **dataset_ref.options)
        result.timings["data"] = time.perf_counter() - t0
        model = None
        if spec.model is not None:
            model = build("model", "model", spec.model, dataset.info).to(device)
        for position, ref, plugin in reversed(middleware_objects):
            name = f"middleware[{position}]:{ref.name}:{id(plugin)}"
            registry.pm.register(plugin, name=name)
            middleware.append(name)
        result.plugins = [record.to_dict() for record in registry.plugins(include_builtin=True)]
        result.main_metric = registry.component("protocol", spec.protocol.name).main_metric or (
            _main_metric(spec)
        )
        context = RunContext(
            spec=spec,
            device=device,
            dataset=dataset,
            model=model,
            method=method,
            protocol=protocol,
            metrics=metrics,
            auditors=auditors,
            loss_terms=loss_terms,
            hooks=hooks,
            result=result,
            writer=writer,
            options={path: dict(ref.options) for path, _, ref in spec.components()},
        )
        # Components may check their options against the data before anything trains.
        checked = [("protocol", "protocol", spec.protocol.name, protocol),
                   ("method", "method", spec.method.name, method)]
        checked += [(f"auditors[{i}]", "auditor", r.name, auditors[r.name])
                    for i, r in enumerate(spec.auditors)]
        checked += [(f"losses[{i}]", "loss", r.name, loss_terms[r.name])
                    for i, r in enumerate(spec.losses)]
        checked += [(f"middleware[{i}]", "middleware", r.name, m) for i, r, m in middleware_objects]
        for path, kind, name, component in checked:
            validate = getattr(component, "validate", None)
            if callable(validate):
                stage.set(kind, registry.component(kind, name), path)
                validate(context)
        stage.built = True
        stage.set("hook")
        hooks.before_experiment(context)
        stage.set("protocol", registry.component("protocol", spec.protocol.name))
        t0 = time.perf_counter()
        protocol.execute(context)
        result.timings["protocol"] = time.perf_counter() - t0
        for name, auditor in auditors.items():
            stage.set("auditor", registry.component("auditor", name))
            finalize = getattr(auditor, "finalize", None)
            if finalize is not None:
                result.audits[name] = finalize(context)
        stage.set("hook")
        result.status = "completed"
        result.timings["total"] = time.perf_counter() - started
        hooks.after_experiment(context, result)
        result.packages = package_versions()
        writer.finish(result)
        return result
    except Exception as error:
        if isinstance(error, (ValueError, DataNotFoundError)) and not stage.built and stage.path:
            # Nothing was saved yet, so a rejected spec leaves no run folder behind.
            # A factory rejected an option value: bad input, reported like any spec error.
            raise SpecError(
                [f"{stage.path}: {stage.kind} {stage.name!r} ({stage.provider}): {error}"]
            ) from error
        if isinstance(error, ComponentFailure):
            stage.set(error.kind, registry.components[error.kind].get(error.name))
            error = error.__cause__ or error
        plugin = registry.plugin_of(error.__traceback__, prefer=stage.provider or None)
        where = f"{stage.kind} {stage.name!r}" if stage.name else stage.kind
        who = f"plugin {registry.records[plugin].label}" if plugin in registry.records else "the host"
        message = f"{who} failed in {where}: {type(error).__name__}: {error}"
        if context is not None and context.current_phase is not None:
            phase = context.current_phase
            message += f" (during {phase.kind} {phase.index})"
        result.status = "failed"
        result.error = {
            "plugin": plugin,
            "stage": stage.kind,
            "component": stage.name,
            "type": type(error).__name__,
            "message": str(error),
            "traceback": traceback.format_exc(),
        }
        result.timings["total"] = time.perf_counter() - started
        result.packages = package_versions()
        if context is not None:
            try:
                hooks.on_error(context, error, context.current_phase)
            except Exception:  # noqa: BLE001 - on_error must not mask the original failure
                logger.exception("a paralab_on_error implementation raised")
        try:
            writer.finish(result)
        except Exception:  # noqa: BLE001 - the partial result.json is already on disk
            writer.save(result)
        raise RunError(message, result, plugin) from error
    finally:
        for name in middleware:
            registry.pm.unregister(name=name)


def _main_metric(spec: ExperimentSpec) -> str:
    metric = spec.metrics[0].name if spec.metrics else "accuracy"
    splits = spec.protocol.options.get("eval_splits") or ["test"]
    return f"{splits[0]}/{metric}"
