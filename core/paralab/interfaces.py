"""The typed contracts of what component factories return.

A factory named in a :class:`paralab.ProtocolSpec`, :class:`paralab.MethodSpec`,
:class:`paralab.AuditorSpec`, :class:`paralab.LossSpec`, :class:`paralab.MiddlewareSpec` or
:class:`paralab.MetricSpec` returns an object that implements one of the classes below. The
host checks the object once, right after building it, and rejects a missing member with an
error naming the plugin, the component and the member, before anything trains.

Subclassing is the easy way (Python then refuses to build a class that leaves an abstract
method out), but not required: an object that has every member conforms, as
``collections.abc`` does for ``Iterable``. Each class's docstrings are the contract.

Every interface may add ``validate(run)``: called once the data and model are built and before
any training or run folder, it raises ``ValueError`` for options that do not fit the data (or
each other); the host reports that as a :class:`paralab.SpecError` naming the field.

The protocol decides which method interface it drives (``ProtocolSpec.method_interface``):

- ``supervised``: :class:`GradientMethod` (``setup``, then ``step`` per batch)
- ``continual``: :class:`ContinualStrategy` (``check``, ``bind``, ``setup``, per experience)
- ``episodic``: :class:`EpisodicMethod` (``setup``, ``meta_step``, ``predict``)
- ``federated``: :class:`FederatedStrategy` (``client_settings``, ``setup``, ``server_step``)
- ``estimator``: :class:`EstimatorMethod` (``fit``, ``predict``)
- ``kernel``: :class:`KernelMethod` (``fit``, ``logits``)
- ``addition``, ``hierarchical``: :class:`GradientMethod` (``step`` with an ``objective``)

Standard library only at import time (the registry and ``paralab show`` read it).

>>> from paralab.interfaces import Protocol, missing_members
>>> class Half:
...     def validate(self, run): ...
>>> missing_members(Half(), Protocol)
['execute']
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from paralab.context import Batch, Phase, RunContext
    from paralab.data.shared import SharedDataset
    from paralab.evaluation import Predictions


class Interface(ABC):  # noqa: B024 - a marker base; each interface declares its members
    """Base of every contract: ``required_attributes`` lists plain attributes (not methods)
    an implementation must have, besides the abstract methods."""

    required_attributes: tuple[str, ...] = ()

    def validate(self, run: RunContext) -> None:  # noqa: B027 - optional, empty by default
        """Check options against the built run; raise ``ValueError`` to reject the spec."""


# ------------------------------------------------------------------------------- protocol


class Protocol(Interface):
    """The shape of training: the outer loop and when evaluation happens."""

    @abstractmethod
    def execute(self, run: RunContext) -> None:
        """Drive the run: open phases with ``run.phase(kind, index)``, train the model through
        ``run.method`` (only through the protocol's declared method interface), evaluate with
        ``run.evaluate(split)``. Add the spec's loss terms with ``run.extra_loss(batch)`` when
        the spec declares ``applies_losses``, and pass updates through the middleware hooks it
        declares (``run.process_update(update)``).

        Optional, for protocols whose spec declares ``resumable``:
        ``checkpoint_state(run) -> dict`` returns what the protocol needs to continue after
        the phases closed so far (tensors and plain data: it is saved with ``torch.save`` and
        read with ``weights_only=True``), and ``restore_state(run, state)`` takes it back
        before ``execute`` runs again (see :mod:`paralab.checkpoints`)."""


# -------------------------------------------------------------------------------- methods


class GradientMethod(Interface):
    """Minibatch training of a torch model, driven batch by batch (``supervised``, and every
    protocol whose ``accepts`` lists ``"gradient"``). :class:`paralab.OptimizerMethod` is the
    ready implementation to subclass (``sgd`` and ``adam`` are)."""

    @abstractmethod
    def setup(self, run: RunContext | None, model: torch.nn.Module) -> None:
        """Prepare to train ``model`` (create the optimizer); called once before training."""

    @abstractmethod
    def loss(self, run: RunContext | None, batch: Batch) -> torch.Tensor:
        """The scalar to minimize on ``batch`` (whose ``logits`` are computed), including the
        spec's loss terms (``run.extra_loss(batch)``)."""

    @abstractmethod
    def step(self, run: RunContext | None, model: torch.nn.Module, x: torch.Tensor,
             y: torch.Tensor, indices: torch.Tensor, objective: Any = None) -> float:
        """One update on a batch (``indices`` index the shared dataset); returns its loss.

        The logits are ``model(x)``; the loss is :meth:`loss` of a :class:`paralab.Batch`
        whose ``objective`` is ``objective``. Protocols whose targets are not class labels (the
        ``addition`` protocol learns digits from sums, ``hierarchical`` one sigmoid per class
        node) pass ``objective(batch) -> scalar`` to replace cross-entropy; the method's own
        :meth:`loss` (and with it any override) still decides what is minimized."""


class ContinualStrategy(Interface):
    """A continual-learning strategy, driven experience by experience (``continual``).

    ``stream`` and ``experience`` are the continual plugin's ``Stream`` and ``Experience``:
    index views into the shared dataset with their classes, task ids and transforms."""

    @abstractmethod
    def check(self, stream: Any, dataset: SharedDataset) -> None:
        """Raise ``ValueError`` when the strategy cannot serve this stream (before training)."""

    @abstractmethod
    def bind(self, stream: Any) -> None:
        """Keep the stream the run trains on."""

    @abstractmethod
    def setup(self, run: RunContext | None, model: torch.nn.Module) -> None:
        """Prepare to train ``model``; called once before the first experience."""

    @abstractmethod
    def before_experience(self, run: RunContext, experience: Any) -> None:
        """Called before training on ``experience``."""

    @abstractmethod
    def train_experience(self, run: RunContext, experience: Any, epochs: int,
                         batch_size: int) -> float | None:
        """Train on one experience; returns the mean training loss, or ``None`` when no rows
        were trained (``joint`` after its one offline phase on the union)."""

    @abstractmethod
    def after_experience(self, run: RunContext, experience: Any) -> None:
        """Called after training on ``experience`` (consolidate importance, fill a memory)."""


class EpisodicMethod(Interface):
    """A few-shot method, driven by meta-batches of N-way K-shot episodes (``episodic``).

    ``batch`` is the few-shot plugin's ``TaskBatch``: support and query inputs, targets and
    shared-dataset indices of each task, stacked."""

    @abstractmethod
    def setup(self, run: RunContext | None, model: torch.nn.Module, ways: int,
              sample: torch.Tensor) -> None:
        """Prepare for episodes of up to ``ways`` classes; ``sample`` is a few inputs. Raise
        here, not midway, when the model cannot serve the method."""

    @abstractmethod
    def meta_step(self, run: RunContext | None, model: torch.nn.Module, batch: Any) -> float:
        """One outer update from a meta-batch; returns the mean query loss."""

    @abstractmethod
    def predict(self, run: RunContext | None, model: torch.nn.Module,
                batch: Any) -> torch.Tensor:
        """Query logits ``(tasks, ways * queries, ways)`` after adapting to each support set,
        without learning from the batch."""


class FederatedStrategy(Interface):
    """A federated algorithm: what clients optimize and how the server applies the aggregate
    (``federated``). ``lr`` is the clients' learning rate, ``mu`` a proximal strength (0: none);
    parameters are ``{name: tensor}`` dicts."""

    required_attributes = ("lr", "mu")

    @abstractmethod
    def client_settings(self, epochs: int, batch_size: int) -> tuple[int, int | None]:
        """``(local epochs, local batch size or None for each client's whole data)``."""

    @abstractmethod
    def setup(self, params: dict[str, torch.Tensor]) -> None:
        """Called once with the initial global parameters."""

    @abstractmethod
    def server_step(self, params: dict[str, torch.Tensor], delta: dict[str, torch.Tensor],
                    round_index: int) -> dict[str, torch.Tensor]:
        """The next global parameters from the current ones and the aggregated delta."""


class EstimatorMethod(Interface):
    """Fits a scikit-learn estimator, with or without a fairness mitigation (``estimator``)."""

    @abstractmethod
    def fit(self, estimator: Any, x: Any, y: Any, groups: Any, seed: int) -> None:
        """Fit on numpy arrays; ``groups`` holds the sensitive features' codes per row."""

    @abstractmethod
    def predict(self, x: Any, groups: Any, seed: int) -> tuple[Any, Any]:
        """``(labels, P(y = 1))`` for each row."""


class KernelMethod(Interface):
    """A kernel machine fitted once (``kernel``)."""

    @abstractmethod
    def fit(self, x: torch.Tensor, y: torch.Tensor, n_classes: int) -> None:
        """Fit on the train split's inputs and targets."""

    @abstractmethod
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``(rows, n_classes)`` for the evaluation engine."""


# -------------------------------------------------------------------- the cross-cutting kinds


class Metric(Interface):
    """A metric of one evaluation point."""

    @abstractmethod
    def __call__(self, predictions: Predictions, dataset: SharedDataset) -> Any:
        """A number or a JSON-ready dict from the predictions computed once for all."""


class Auditor(Interface):
    """A read-only analysis of a run's predictions."""

    @abstractmethod
    def audit(self, run: RunContext, phase: Phase | None, predictions: Predictions) -> Any:
        """Called at every evaluation point; the JSON-ready value is recorded in the phase
        under ``auditor/split``. Must not change the model or the predictions."""

    def finalize(self, run: RunContext) -> Any:
        """Called once after the protocol (write tables and plots to ``run.output_dir``);
        a value other than ``None`` is recorded under ``result.audits[name]``."""
        return None


class LossTerm(Interface):
    """A term added to the training loss by every protocol that ``applies_losses``."""

    @abstractmethod
    def __call__(self, batch: Batch) -> torch.Tensor:
        """A differentiable scalar on one training batch (``batch.logits`` are computed)."""


class Middleware(Interface):
    """A per-run plugin object: its ``@hookimpl`` methods on the middleware hooks its spec
    declares (``MiddlewareSpec.hooks``, default ``paralab_process_update``) wrap what the
    protocol passes through them; lifecycle hookimpls (``paralab_after_phase``) see only the
    run that names the middleware.

    Optional, for runs with ``checkpoint_every``: ``checkpoint_state(run) -> dict`` and
    ``restore_state(run, state)`` save and take back what the middleware accumulates (a DP
    accountant's steps, its noise generator), so a resumed run continues its counts."""


class Tracker(Interface):
    """A per-run plugin object that records the run elsewhere (CSV, TensorBoard, MLflow): its
    ``@hookimpl`` methods on the lifecycle hooks (``paralab_before_experiment``,
    ``paralab_after_phase``, ``paralab_after_experiment``, ``paralab_on_error``) see only the
    run whose spec lists it in ``trackers``. It must implement at least one of them (checked at
    build). Optional: ``before_study(study)`` and ``after_study(study)``, which a study calls
    once around its runs (MLflow's parent run), with a :class:`paralab.StudyInfo`; and, like
    middleware, ``checkpoint_state(run)`` / ``restore_state(run, state)`` for resumed runs."""


TRACKER_HOOKS = ("paralab_before_experiment", "paralab_before_phase", "paralab_after_phase",
                 "paralab_after_evaluation", "paralab_after_experiment", "paralab_on_error")
"""The hooks through which a tracker records (it implements at least one)."""


INTERFACES: dict[str, type[Interface]] = {
    cls.__name__: cls
    for cls in (Protocol, GradientMethod, ContinualStrategy, EpisodicMethod, FederatedStrategy,
                EstimatorMethod, KernelMethod, Metric, Auditor, LossTerm, Middleware, Tracker)
}
"""Interfaces by name, as ``ProtocolSpec.method_interface`` names them."""

KIND_INTERFACES: dict[str, type[Interface]] = {
    "protocol": Protocol,
    "metric": Metric,
    "auditor": Auditor,
    "loss": LossTerm,
    "middleware": Middleware,
    "tracker": Tracker,
}
"""The interface of each kind whose contract does not depend on the protocol (a method's
comes from its protocol's ``method_interface``)."""


def resolve(name: str) -> type[Interface]:
    """The interface named ``name``: a key of :data:`INTERFACES` or ``"module:Class"``."""
    if name in INTERFACES:
        return INTERFACES[name]
    module, _, attribute = name.partition(":")
    if not module or not attribute:
        raise ValueError(
            f"unknown interface {name!r}: use one of {', '.join(INTERFACES)} or 'module:Class'"
        )
    return getattr(importlib.import_module(module), attribute)


def missing_members(obj: Any, interface: type) -> list[str]:
    """The members of ``interface`` that ``obj`` lacks (an empty list: it conforms)."""
    if isinstance(obj, interface):
        names = sorted(getattr(interface, "__abstractmethods__", ()))
        # A subclass cannot leave an abstract method out, but it can set it to None.
        missing = [name for name in names if not callable(getattr(obj, name, None))]
    else:
        names = sorted(
            name for klass in interface.__mro__ for name in getattr(klass, "__abstractmethods__", ())
        )
        missing = [name for name in dict.fromkeys(names) if not callable(getattr(obj, name, None))]
    attributes = getattr(interface, "required_attributes", ())
    missing += [name for name in attributes if not hasattr(obj, name)]
    return missing
