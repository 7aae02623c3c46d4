"""The conformance suite for one plugin: ``paralab check-plugin NAME`` and ``check_plugin()``.

It checks that the plugin loads and declares a compatible API, that its hookimpls match the
specs, that its module imports nothing heavy, that each contribution is well formed (its
declared options agree with its factory's signature and each default meets its own
constraints), and that each component builds, passes its interface check
(:mod:`paralab.interfaces`) and runs one tiny step on :func:`paralab.testing.tiny_dataset`.
A component may give the options of that tiny step in its spec's ``example``.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from paralab import host
from paralab.testing.kit import TINY, TinyDataPlugin

HEAVY_MODULES = (
    "torch",
    "pennylane",
    "qiskit",
    "avalanche",
    "learn2learn",
    "fairlearn",
    "ray",
    "captum",
    "shap",
    "lime",
    "sklearn",
    "pandas",
    "matplotlib",
    "tensorflow",
    "jax",
)
"""Modules a plugin's top-level module must not import: listing plugins must stay fast."""

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass
class Check:
    name: str
    status: str
    detail: str = ""


@dataclass
class ConformanceReport:
    plugin: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.status != FAIL for check in self.checks)

    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.status == FAIL]

    def to_dict(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "passed": self.passed,
            "checks": [check.__dict__ for check in self.checks],
        }

    def render(self) -> str:
        marks = {PASS: "ok  ", FAIL: "FAIL", SKIP: "skip"}
        lines = [f"conformance of plugin {self.plugin}:"]
        for check in self.checks:
            detail = f" — {check.detail}" if check.detail else ""
            lines.append(f"  {marks[check.status]} {check.name}{detail}")
        counts = {status: sum(c.status == status for c in self.checks) for status in marks}
        lines.append(
            f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped: "
            + ("PASSED" if self.passed else "FAILED")
        )
        return "\n".join(lines)

    def _run(self, name: str, function: Callable[[], str | None]) -> None:
        try:
            detail = function()
        except _Skip as skip:
            self.checks.append(Check(name, SKIP, str(skip)))
        except Exception as error:  # noqa: BLE001 - a failing component is a failed check
            last = traceback.format_exception_only(type(error), error)[-1].strip()
            self.checks.append(Check(name, FAIL, last))
        else:
            self.checks.append(Check(name, PASS, detail or ""))


class _Skip(Exception):
    pass


def light_import(module: str) -> list[str]:
    """The heavy modules that importing ``module`` pulls in, measured in a fresh interpreter."""
    code = (
        "import json, sys, importlib; importlib.import_module(sys.argv[1]); "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    # The same import path as this process, so plugins found through sys.path are found too.
    search_path = os.pathsep.join(entry for entry in sys.path if entry)
    environment = dict(os.environ, PARALAB_NO_PLUGINS="1", PYTHONPATH=search_path)
    completed = subprocess.run(
        [sys.executable, "-c", code, module],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise ImportError(f"importing {module} failed: {completed.stderr.strip().splitlines()[-1:]}")
    loaded = set(json.loads(completed.stdout.strip().splitlines()[-1]))
    return sorted(loaded & set(HEAVY_MODULES))


def check_plugin(name: str, *, registry: Any = None, import_check: bool = True) -> ConformanceReport:
    """Run the conformance suite on the installed plugin ``name`` (its canonical name)."""
    from paralab_registry import ACTIVE, LoadSettings

    report = ConformanceReport(name)
    base = registry or host.get_registry()
    record = base.plugin(name)
    report._run("loads", lambda: _loaded(record))
    report._run("keeps its names (no clash with another plugin)",
                lambda: _no_clash(record, base))
    if record.status != ACTIVE:
        return report
    module = record.module.partition(":")[0]
    if import_check and not record.builtin:
        report._run("imports nothing heavy at import time", lambda: _light(module))
    # A fresh registry with only this plugin (and the host's), plus the tiny dataset; the
    # caller's registry is left as it was.
    settings = LoadSettings(no_plugins=True) if record.builtin else LoadSettings(only=(name,))
    checked = host.make_registry(settings).load()
    checked.add(TINY, TinyDataPlugin())
    specs = [
        spec
        for kind in checked.components
        for spec in checked.components[kind].values()
        if spec.provider == name
    ]
    if not specs:
        report.checks.append(Check("contributes components", SKIP, "contributes none"))
    for spec in specs:
        report._run(f"{spec.kind} {spec.name!r} is well formed", lambda spec=spec: _well_formed(spec))
        runner = _RUNNERS.get(spec.kind)
        if runner is not None:
            report._run(
                f"{spec.kind} {spec.name!r} builds and runs a tiny step",
                lambda spec=spec, runner=runner: runner(spec, checked),
            )
    return report


def _loaded(record: Any) -> str:
    if record.status != "active":
        raise RuntimeError(f"status {record.status}: {record.reason}")
    counts = ", ".join(f"{len(v)} {k}" for k, v in record.contributions.items())
    return f"API {record.api or '?'}; {counts or 'no components'}"


def _no_clash(record: Any, registry: Any) -> str:
    """Fails when the plugin was refused a plugin or component name another one holds (an
    impostor of a bundled plugin, or the later of two third-party plugins); the holder passes,
    naming who tried to take its names."""
    clashes = [clash for clash in getattr(registry, "clashes", ()) if clash.involves(record)]
    lost = [clash for clash in clashes if clash.newcomer is record]
    if lost:
        raise RuntimeError("; ".join(
            f"{clash.what} belongs to {clash.holder.label}, refused to "
            f"{record.label}" for clash in lost
        ))
    kept = [f"{clash.what} against {clash.newcomer.label}" for clash in clashes]
    return ("keeps " + "; ".join(kept)) if kept else "no plugin claims its names"


def _light(module: str) -> str:
    heavy = light_import(module)
    if heavy:
        raise RuntimeError(
            f"`import {module}` imports {', '.join(heavy)}; import them inside the factories"
        )
    return f"import {module} pulls in none of the heavy libraries"


def _well_formed(spec: Any) -> str:
    if not spec.name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"name {spec.name!r} must be letters, digits, '_' or '-'")
    if not spec.description:
        raise ValueError("has no description (paralab list shows it to users)")
    json.dumps(spec.describe())
    unknown = set(spec.example) - set(spec.options) - {"skip", "root", "dataset", "model"}
    if unknown:
        raise ValueError(f"example names options it does not declare: {sorted(unknown)}")
    problems = declaration_problems(spec)
    if problems:
        raise ValueError("; ".join(problems))
    return f"{len(spec.options)} options declared, matching the factory"


_NOT_OPTIONS = {"info", "root"}
"""Factory parameters the host passes itself (a model's dataset info, a dataset's folder)."""


def factory_parameters(factory: Any) -> tuple[dict[str, Any], bool]:
    """``({name: default or inspect.Parameter.empty}, takes_more)`` of a factory's options.

    A class whose ``__init__`` passes ``**options`` on to its base contributes the base's
    parameters too (the most derived default wins); ``takes_more`` is True when the chain still
    ends in ``**kwargs`` (then names beyond the signature cannot be checked)."""
    targets = [factory]
    if inspect.isclass(factory):
        targets = [k.__init__ for k in factory.__mro__ if "__init__" in vars(k) and k is not object]
    parameters: dict[str, Any] = {}
    takes_more = False
    for target in targets:
        try:
            signature = inspect.signature(target)
        except (TypeError, ValueError):
            return parameters, True
        base = target is not targets[0]
        takes_more = False
        for name, parameter in signature.parameters.items():
            if name == "self" or name in _NOT_OPTIONS:
                continue
            if parameter.kind is parameter.VAR_KEYWORD:
                takes_more = True
            elif parameter.kind is not parameter.VAR_POSITIONAL:
                if base and parameter.default is parameter.empty:
                    continue  # a base's required argument: the subclass supplies it
                parameters.setdefault(name, parameter.default)
        if not takes_more:
            break
    return parameters, takes_more


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b
    )


def declaration_problems(spec: Any) -> list[str]:
    """Where a component's declared options and its factory disagree, or a default breaks its
    own declaration: the one declaration must be true to the code it describes."""
    problems = []
    declared = spec.declared_options()
    for name, option in declared.items():
        if not option.required:
            problem = option.problem(option.default)
            if problem:
                problems.append(f"option {name!r}: its default {option.default!r} {problem}")
    parameters, takes_more = factory_parameters(spec.load())
    for name, default in parameters.items():
        if name not in declared:
            problems.append(f"the factory takes {name!r}, which the spec does not declare")
            continue
        option = declared[name]
        if default is inspect.Parameter.empty:
            if not option.required:
                problems.append(f"option {name!r}: the factory has no default but the spec "
                                f"declares {option.default!r} (declare required=True)")
        elif not option.required and not _same(default, option.default):
            problems.append(f"option {name!r}: the spec declares default {option.default!r}, "
                            f"the factory {default!r}")
    if not takes_more:
        problems += [f"the spec declares {name!r}, which the factory does not take"
                     for name in declared if name not in parameters]
    return problems


def _tiny_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "conformance",
        "dataset": TINY,
        "model": {"name": "mlp", "hidden": [16]},
        "protocol": {"name": "supervised", "epochs": 1, "batch_size": 32},
        "method": "sgd",
        "output": None,
        "device": "cpu",
    }
    spec.update(overrides)
    return spec


def _options(spec: Any) -> dict[str, Any]:
    return {k: v for k, v in spec.example.items() if k not in ("skip", "dataset", "model")}


def _run_tiny(registry: Any, **overrides: Any) -> Any:
    from paralab.runner import run

    result = run(_tiny_spec(**overrides), registry=registry)
    if result.status != "completed":
        raise RuntimeError(f"run ended with status {result.status}")
    return result


def _check_dataset(spec: Any, registry: Any) -> str:
    from paralab.data import DataNotFoundError, SharedDataset

    if "skip" in spec.example:
        raise _Skip(spec.example["skip"])
    try:
        dataset = spec.load()(**_options(spec))
    except DataNotFoundError as error:
        raise _Skip(f"data not available here: {error}") from None
    if not isinstance(dataset, SharedDataset):
        raise TypeError(f"factory returned {type(dataset).__name__}, not SharedDataset")
    missing = [s for s in spec.sensitive if s not in dataset.features]
    if missing:
        raise ValueError(f"declares sensitive features {missing} it does not provide")
    return f"{len(dataset)} rows, {dataset.info.n_classes} classes"


def _check_model(spec: Any, registry: Any) -> str:
    import torch

    from paralab.testing.kit import tiny_dataset

    dataset = tiny_dataset()
    model = spec.load()(dataset.info, **_options(spec))
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"factory returned {type(model).__name__}, not torch.nn.Module")
    x = dataset.x[:8]
    model.eval()
    with torch.inference_mode():  # evaluation first, as protocols do before training
        logits = model(x)
    if tuple(logits.shape) != (8, dataset.info.n_classes):
        raise ValueError(f"logits shape {tuple(logits.shape)}, expected (8, {dataset.info.n_classes})")
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = torch.nn.functional.cross_entropy(model(x), dataset.y[:8])
    loss.backward()
    optimizer.step()
    return "inference, then forward, backward and a step on a batch of 8"


def _pair(spec: Any, registry: Any) -> tuple[Any, Any]:
    if spec.kind == "method":
        protocol = registry.components["protocol"].get(spec.protocols[0]) if spec.protocols else None
        if protocol is None:
            raise ValueError(f"supports protocols {list(spec.protocols)}, none installed")
        return protocol, spec
    from paralab.components import supports

    methods = [m for m in registry.components["method"].values() if supports(m, spec)]
    if not methods:
        raise ValueError(f"no installed method supports protocol {spec.name!r}")
    return spec, methods[0]


def _training_overrides(protocol: Any, method: Any) -> dict[str, Any]:
    """The tiny spec's protocol and method, with the data and model their examples ask for."""
    overrides: dict[str, Any] = {
        "protocol": {"name": protocol.name, **_options(protocol)},
        "method": {"name": method.name, **_options(method)},
    }
    for source in (protocol, method):
        if "dataset" in source.example:
            overrides["dataset"] = source.example["dataset"]
        if "model" in source.example:
            overrides["model"] = source.example["model"]
    if not protocol.uses_model:
        overrides["model"] = None
    return overrides


def _check_training(spec: Any, registry: Any) -> str:
    protocol, method = _pair(spec, registry)
    result = _run_tiny(registry, **_training_overrides(protocol, method))
    return f"{protocol.name} + {method.name}: {len(result.phases)} phases"


def _check_metric(spec: Any, registry: Any) -> str:
    result = _run_tiny(registry, metrics=[{"name": spec.name, **_options(spec)}])
    key = next((k for k in result.metrics if k.endswith(f"/{spec.name}")), None)
    if key is None:
        raise ValueError("the metric recorded no value")
    return f"{key} computed"


def _check_auditor(spec: Any, registry: Any) -> str:
    result = _run_tiny(registry, auditors=[{"name": spec.name, **_options(spec)}])
    audited = [key for phase in result.phases for key in phase["audits"] if key.startswith(spec.name)]
    if not audited:
        raise ValueError("the auditor returned nothing at the evaluation points")
    return f"audited {len(audited)} evaluation points"


def _check_loss(spec: Any, registry: Any) -> str:
    result = _run_tiny(registry, losses=[{"name": spec.name, **_options(spec)}])
    if "train/loss" not in result.phases[-1]["metrics"]:
        raise ValueError("the tiny supervised run recorded no train/loss")
    return f"trained one epoch with it (train/loss {result.phases[-1]['metrics']['train/loss']:.3f})"


def _check_middleware(spec: Any, registry: Any) -> str:
    """A tiny run of a protocol that calls the middleware's hooks, with the middleware on."""
    from paralab.components import supports

    hooks = set(spec.hooks)
    protocols = [p for p in registry.components["protocol"].values()
                 if hooks & set(p.middleware_hooks)]
    if not protocols:
        raise ValueError(f"no installed protocol calls its hooks {sorted(hooks)}")
    protocol = protocols[0]
    method = next((m for m in registry.components["method"].values() if supports(m, protocol)),
                  None)
    if method is None:
        raise ValueError(f"no installed method runs under protocol {protocol.name!r}")
    overrides = _training_overrides(protocol, method)
    result = _run_tiny(registry, middleware=[{"name": spec.name, **_options(spec)}], **overrides)
    return f"under {protocol.name} + {method.name}: {len(result.phases)} phases"


_RUNNERS: dict[str, Callable[[Any, Any], str]] = {
    "dataset": _check_dataset,
    "model": _check_model,
    "protocol": _check_training,
    "method": _check_training,
    "metric": _check_metric,
    "auditor": _check_auditor,
    "loss": _check_loss,
    "middleware": _check_middleware,
}
