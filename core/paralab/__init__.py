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
from typing import TYPE_CHECKING, Any

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
    TrackerSpec,
)
from paralab.hookspecs import HOST_API_VERSION, hookimpl, hookspec
from paralab.interfaces import (
    Auditor,
    ContinualStrategy,
    EpisodicMethod,
    EstimatorMethod,
    FederatedStrategy,
    GradientMethod,
    KernelMethod,
    LossTerm,
    Metric,
    Middleware,
    Protocol,
    Tracker,
)
from paralab.options import (
    Option,
    OptionError,
    count,
    fraction,
    non_negative,
    one_of,
    positive,
)
from paralab.spec import ComponentRef, ExperimentSpec, SpecError

__version__ = "0.1.0"

if TYPE_CHECKING:  # what mypy and IDEs see; at run time these load on first use (_LAZY)
    from paralab.checkpoints import load_model, resume
    from paralab.comparison import compare
    from paralab.context import Batch, ComponentFailure, Evaluation, Phase, RunContext, Update
    from paralab.data import DataNotFoundError, DatasetInfo, DataView, SharedDataset, load_dataset
    from paralab.data.builtin import stratified_split
    from paralab.evaluation import (
        Predictions,
        accuracy,
        grouped_mean,
        mean_confidence_interval,
        predict,
    )
    from paralab.health import NumericalError, NumericalWarning
    from paralab.host import get_registry
    from paralab.methods import (
        SGD,
        Adam,
        OptimizerMethod,
        PerExampleGradients,
        adam,
        clear_gradients,
    )
    from paralab.models import AsImage, mlp
    from paralab.overrides import apply_overrides
    from paralab.protocols.stacked_supervised import ELEMENTWISE_OPTIMIZERS
    from paralab.results import Result
    from paralab.runner import RunError, run
    from paralab.seed_axis import SeedAxis
    from paralab.seeds import run_seeds
    from paralab.stacked import STACKED_CHANNELS, STACKED_ROWS, StackedModel, Unstackable
    from paralab.study import Study, StudyInfo, load_study, run_study


def _absolute_data_root() -> None:
    """Resolve a relative ``PARALAB_DATA`` once, at import, against the folder paralab
    started in: a run or a test that changes directory later (and the subprocesses it
    starts) still finds the data (``PARALAB_DATA=../shared/data pytest`` in the README)."""
    import os

    value = os.environ.get("PARALAB_DATA")
    if value and not os.path.isabs(value):
        os.environ["PARALAB_DATA"] = os.path.abspath(value)


_absolute_data_root()

_LAZY = {
    "run": "paralab.runner",
    "RunError": "paralab.runner",
    "Result": "paralab.results",
    "RunContext": "paralab.context",
    "Phase": "paralab.context",
    "Update": "paralab.context",
    "Batch": "paralab.context",
    "ComponentFailure": "paralab.context",
    "Evaluation": "paralab.context",
    "OptimizerMethod": "paralab.methods",
    "PerExampleGradients": "paralab.methods",
    "SGD": "paralab.methods",
    "Adam": "paralab.methods",
    "adam": "paralab.methods",
    "clear_gradients": "paralab.methods",
    "Predictions": "paralab.evaluation",
    "predict": "paralab.evaluation",
    "accuracy": "paralab.evaluation",
    "grouped_mean": "paralab.evaluation",
    "mean_confidence_interval": "paralab.evaluation",
    "SharedDataset": "paralab.data",
    "DataView": "paralab.data",
    "DatasetInfo": "paralab.data",
    "DataNotFoundError": "paralab.data",
    "load_dataset": "paralab.data",
    "stratified_split": "paralab.data.builtin",
    "mlp": "paralab.models",
    "AsImage": "paralab.models",
    "NumericalError": "paralab.health",
    "NumericalWarning": "paralab.health",
    "get_registry": "paralab.host",
    "apply_overrides": "paralab.overrides",
    "load_model": "paralab.checkpoints",
    "resume": "paralab.checkpoints",
    "run_seeds": "paralab.seeds",
    "SeedAxis": "paralab.seed_axis",
    "StackedModel": "paralab.stacked",
    "Unstackable": "paralab.stacked",
    "STACKED_ROWS": "paralab.stacked",
    "STACKED_CHANNELS": "paralab.stacked",
    "ELEMENTWISE_OPTIMIZERS": "paralab.protocols.stacked_supervised",
    "Study": "paralab.study",
    "StudyInfo": "paralab.study",
    "run_study": "paralab.study",
    "load_study": "paralab.study",
    "compare": "paralab.comparison",
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
    "SGD",
    "Adam",
    "AsImage",
    "Auditor",
    "AuditorSpec",
    "Batch",
    "Component",
    "ComponentFailure",
    "ComponentRef",
    "ContinualStrategy",
    "DataNotFoundError",
    "DataView",
    "DatasetInfo",
    "DatasetSpec",
    "EpisodicMethod",
    "EstimatorMethod",
    "Evaluation",
    "Experiment",
    "ExperimentSpec",
    "FederatedStrategy",
    "GradientMethod",
    "KernelMethod",
    "LossSpec",
    "LossTerm",
    "MethodSpec",
    "Metric",
    "MetricSpec",
    "Middleware",
    "MiddlewareSpec",
    "ModelSpec",
    "NumericalError",
    "NumericalWarning",
    "OptimizerMethod",
    "Option",
    "OptionError",
    "PerExampleGradients",
    "Phase",
    "Predictions",
    "Protocol",
    "ProtocolSpec",
    "Result",
    "RunContext",
    "RunError",
    "SharedDataset",
    "SpecError",
    "Study",
    "StudyInfo",
    "Tracker",
    "TrackerSpec",
    "Update",
    "accuracy",
    "adam",
    "apply_overrides",
    "clear_gradients",
    "compare",
    "count",
    "fraction",
    "get_registry",
    "grouped_mean",
    "hookimpl",
    "hookspec",
    "load_dataset",
    "load_model",
    "load_study",
    "mean_confidence_interval",
    "mlp",
    "non_negative",
    "one_of",
    "positive",
    "predict",
    "resume",
    "run",
    "STACKED_ROWS",
    "STACKED_CHANNELS",
    "ELEMENTWISE_OPTIMIZERS",
    "SeedAxis",
    "StackedModel",
    "Unstackable",
    "run_seeds",
    "run_study",
    "stratified_split",
]
