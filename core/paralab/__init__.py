"""paralab: a research plugin framework where AI paradigms compose in one experiment.

The public API for experiment scripts and plugin authors. Importing ``paralab`` is light (no
torch): the names that need torch load on first use.

>>> import paralab
>>> result = paralab.run({"dataset": "iris", "model": "mlp", "output": None,
...                       "protocol": {"name": "supervised", "epochs": 3}})
>>> result.metrics["test/accuracy"] > 0.5
True
"""

from __future__ import annotations

import importlib
from typing import Any

from paralab.components import (
    AuditorSpec,
    Component,
    DatasetSpec,
    LossSpec,
    MethodSpec,
    MetricSpec,
    MiddlewareSpec,
    ModelSpec,
    ProtocolSpec,
)
from paralab.hookspecs import HOST_API_VERSION, hookimpl, hookspec
from paralab.spec import ComponentRef, ExperimentSpec, SpecError

__version__ = "0.1.0"

_LAZY = {
    "run": "paralab.runner",
    "RunError": "paralab.runner",
    "Result": "paralab.results",
    "RunContext": "paralab.context",
    "Phase": "paralab.context",
    "Update": "paralab.context",
    "Batch": "paralab.context",
    "Evaluation": "paralab.context",
    "GradientMethod": "paralab.methods",
    "Predictions": "paralab.evaluation",
    "SharedDataset": "paralab.data",
    "DataView": "paralab.data",
    "DatasetInfo": "paralab.data",
    "load_dataset": "paralab.data",
    "get_registry": "paralab.host",
}

Experiment = ExperimentSpec
"""Alias: ``paralab.Experiment(dataset="digits", model="mlp", ...)``."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'paralab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "HOST_API_VERSION",
    "AuditorSpec",
    "Batch",
    "Component",
    "ComponentRef",
    "DataView",
    "DatasetInfo",
    "DatasetSpec",
    "Evaluation",
    "Experiment",
    "ExperimentSpec",
    "GradientMethod",
    "LossSpec",
    "MethodSpec",
    "MetricSpec",
    "MiddlewareSpec",
    "ModelSpec",
    "Phase",
    "Predictions",
    "ProtocolSpec",
    "Result",
    "RunContext",
    "RunError",
    "SharedDataset",
    "SpecError",
    "Update",
    "get_registry",
    "hookimpl",
    "hookspec",
    "load_dataset",
    "run",
]
