"""The small typed specs that plugins yield from contribution hooks.

A spec says *what* a plugin adds (a name, a description, its options with their defaults) and
*where* the code lives. The code itself is named by a ``"module:attribute"`` string (or given as
a callable) and imported only when an experiment uses the component, so listing plugins costs
nothing: ``paralab plugins`` never imports torch, pennylane or qiskit.

This module is standard library only, on purpose: the registry and the CLI import it.

Example, in a plugin's top-level module::

    from paralab.components import ModelSpec
    from paralab.hookspecs import hookimpl

    @hookimpl
    def paralab_models():
        return [ModelSpec(name="tiny", factory="my_plugin.models:Tiny",
                          description="A one-layer network.", options={"width": 16})]
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from paralab.options import Option, declared, defaults, jsonable

KINDS: tuple[str, ...] = (
    "dataset",
    "model",
    "protocol",
    "method",
    "metric",
    "auditor",
    "loss",
    "middleware",
    "tracker",
)
"""Every kind of component an experiment can name, in the order a spec lists them."""


@dataclass(frozen=True)
class Component:
    """Base of every contribution: a unique ``name`` and a lazily imported ``factory``.

    ``options`` maps each option the factory accepts to its declaration: an
    :class:`paralab.Option` (default and constraints) or a bare default (short for
    ``Option(default)``: the default's type, finite numbers). A spec that passes an option not
    listed here, or a value outside its declaration, is rejected before anything is built,
    with the valid ones named. The factory's signature must agree (a test checks it).
    ``provider`` is filled in by the host (the plugin's canonical name); plugins leave it empty.
    Pass everything after ``name`` and ``factory`` by keyword.

    What the factory returns must implement the kind's interface in :mod:`paralab.interfaces`
    (checked once, at build). It may define ``validate(run)``: the host calls it once the data
    and model are built, before any hook or training and before the run's folder exists, so
    options can be checked against the data and against each other. A ``ValueError`` raised
    there rejects the spec with a :class:`paralab.SpecError` naming the field; a ``ValueError``
    from the factory itself is a bug in the factory and fails the run.
    """

    kind: ClassVar[str] = "component"

    name: str
    factory: str | Callable[..., Any]
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    provider: str = ""
    example: Mapping[str, Any] = field(default_factory=dict)
    """Options for a tiny smoke run, used by the conformance kit (``paralab check-plugin``):
    for example ``{"epochs": 1}``. A dataset's example may set ``{"skip": "why"}``."""
    requires: tuple[str, ...] = ()
    """Top-level modules the factory's object imports at run time (``("captum",)``): when one
    is not installed, ``paralab plugins`` says so with :attr:`install` and a spec naming the
    component is a :class:`paralab.SpecError` before anything runs, instead of a bare
    ``ModuleNotFoundError`` mid-run."""
    requires_when: Mapping[str, Mapping[Any, tuple[str, ...]]] = field(default_factory=dict)
    """Modules needed only for some option values: ``{"method": {"kernel_shap": ("shap",)}}``
    (the value may also be an item of a list-valued option)."""
    install: str = ""
    """How to install what :attr:`requires` names (``"pip install 'paralab[explain]'"``)."""
    used_when: Mapping[str, Mapping[str, tuple[Any, ...]]] = field(default_factory=dict)
    """Options that act only when another option has one of some values:
    ``{"data_epochs": {"randomization": ("data",)}}``. A spec setting such an option while the
    other has another value is a :class:`paralab.SpecError` naming both, since the value would
    silently do nothing. Where the other option is a list (``methods``), one of its items must
    be among the values."""

    def __post_init__(self) -> None:
        unknown = [name for key, by in self.used_when.items() for name in (key, *by)
                   if name not in self.options]
        if unknown:
            raise ValueError(f"{self.kind} {self.name!r}: used_when names {sorted(set(unknown))}, "
                             f"which are not among its options ({', '.join(self.options)})")

    def missing_modules(self, options: Mapping[str, Any] | None = None) -> list[str]:
        """The required modules that are not installed (found on ``sys.path`` without being
        imported), for these option values; ``None``: for any value."""
        wanted = list(self.requires)
        for option, by_value in self.requires_when.items():
            if options is None:
                wanted += [m for modules in by_value.values() for m in modules]
                continue
            value = options.get(option, self.defaults().get(option))
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            for item in values:
                try:
                    wanted += list(by_value.get(item, ()))
                except TypeError:  # unhashable: not a declared value; validation names it
                    continue
        from paralab_registry import importable

        return [m for m in dict.fromkeys(wanted) if not importable(m)]

    def load(self) -> Callable[..., Any]:
        """Import and return the factory named by ``"module:attribute"`` (or the callable)."""
        if callable(self.factory):
            return self.factory
        module_name, _, attribute = str(self.factory).partition(":")
        if not module_name or not attribute:
            raise ValueError(
                f"{self.kind} {self.name!r} of plugin {self.provider or '?'}: factory "
                f"{self.factory!r} must look like 'package.module:attribute'"
            )
        module = importlib.import_module(module_name)
        try:
            return getattr(module, attribute)
        except AttributeError:
            raise ImportError(
                f"{self.kind} {self.name!r} of plugin {self.provider or '?'}: module "
                f"{module_name!r} has no attribute {attribute!r}"
            ) from None

    def declared_options(self) -> dict[str, Option]:
        """Every option as an :class:`paralab.Option` (bare defaults expanded)."""
        return declared(self.options)

    def defaults(self) -> dict[str, Any]:
        """Every option's default."""
        return defaults(self.options)

    def unused_options(self, options: Mapping[str, Any], path: str) -> list[str]:
        """The options set in ``options`` that :attr:`used_when` says would do nothing with the
        other options' values (unset ones at their defaults), one problem each, named from
        ``path`` (``"method"``, ``"method.plugins[0]"``). A list-valued other option matches
        when one of its items is among the values."""
        problems = []
        known = self.defaults()
        for key, conditions in self.used_when.items():
            if key not in options:
                continue
            for other, values in conditions.items():
                actual = options.get(other, known.get(other))
                listed = isinstance(actual, (list, tuple))  # methods = [...]: any item will do
                if any(item in values for item in actual) if listed else actual in values:
                    continue
                wanted = " or ".join(repr(v) for v in values)
                shown = list(actual) if listed else actual
                problems.append(
                    f"{path}.{key}: {self.kind} {self.name!r} ({self.provider}) uses it only "
                    f"when {other} {'includes' if listed else '='} {wanted}, and here {other} "
                    f"= {shown!r}: it would do nothing; remove it or set {other}")
        return problems

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary, as ``paralab list`` and ``paralab plugins --json`` print it."""
        extra = {
            key: value
            for key, value in self._extra().items()
            if value or isinstance(value, bool)
        }
        missing = self.missing_modules()
        return {
            "kind": self.kind,
            "name": self.name,
            "provider": self.provider,
            "description": self.description,
            "options": {key: jsonable(value) for key, value in self.defaults().items()},
            "constraints": {key: option.constraint()
                            for key, option in self.declared_options().items()},
            **({"requires": list(self.requires)} if self.requires else {}),
            **({"requires_when": {o: {str(v): list(m) for v, m in by.items()}
                                  for o, by in self.requires_when.items()}}
               if self.requires_when else {}),
            **({"install": self.install} if self.install else {}),
            **({"used_when": {o: {k: [jsonable(v) for v in vs] for k, vs in by.items()}
                              for o, by in self.used_when.items()}}
               if self.used_when else {}),
            **({"missing": missing} if missing else {}),
            **extra,
        }

    def _extra(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class DatasetSpec(Component):
    """A dataset: ``factory(root=None, **options) -> paralab.data.SharedDataset``.

    ``needs_root`` marks loaders of real files (MNIST, Omniglot, Adult ...): they take
    ``root=`` or read ``$PARALAB_DATA/<name>``. ``sensitive`` names the sensitive features the
    dataset declares (for fairness audits).
    """

    kind: ClassVar[str] = "dataset"
    needs_root: bool = False
    sensitive: tuple[str, ...] = ()

    def _extra(self) -> dict[str, Any]:
        return {"needs_root": self.needs_root, "sensitive": list(self.sensitive)}


@dataclass(frozen=True)
class ModelSpec(Component):
    """A model: ``factory(info: paralab.data.DatasetInfo, **options) -> torch.nn.Module``.

    The module maps a batch of inputs to logits of shape ``(batch, info.n_classes)``.
    """

    kind: ClassVar[str] = "model"


@dataclass(frozen=True)
class ProtocolSpec(Component):
    """A protocol, the shape of training: ``factory(**options)`` returns a
    :class:`paralab.interfaces.Protocol`, whose ``execute(run)`` drives the outer loop, opens
    phases with ``run.phase(...)`` and evaluates with ``run.evaluate(...)``.

    It declares what it consumes, so that a spec naming a component the protocol would ignore
    is rejected before anything is built: the interface its method must implement
    (``method_interface``), whether it adds the spec's loss terms (``applies_losses``), which
    middleware hooks it calls (``middleware_hooks``) and whether it trains the spec's model
    (``uses_model``).
    """

    kind: ClassVar[str] = "protocol"
    uses_model: bool = True
    """False for protocols that train something other than the spec's torch model (a kernel
    SVM, a scikit-learn estimator): the spec may then omit ``model``."""
    accepts: tuple[str, ...] = ()
    """Method families this protocol drives, besides the methods that name it: ``("gradient",)``
    accepts every :class:`paralab.GradientMethod` (``sgd``, ``adam`` and any plugin's)."""
    main_metric: str = ""
    """The metric the run's curve and summary lead with (``"average_accuracy"``,
    ``"meta_test/accuracy"``); default: the first eval split's first metric."""
    method_interface: str = ""
    """The interface the run's method must implement: a class name in
    :mod:`paralab.interfaces` (``"GradientMethod"``, ``"EpisodicMethod"`` ...) or a
    ``"module:Class"`` of the plugin's own. Checked when the method is built."""
    applies_losses: bool = False
    """True when the protocol adds the spec's loss terms to what it optimizes (through
    ``run.extra_loss``); a spec naming ``losses`` under a protocol that does not is rejected."""
    middleware_hooks: tuple[str, ...] = ()
    """The middleware hooks the protocol calls (``("paralab_process_update",)``); middleware
    acting on none of them is rejected."""
    resumable: bool = False
    """True when the protocol object implements ``checkpoint_state(run)`` and
    ``restore_state(run, state)``, so that ``checkpoint_every`` and ``paralab resume`` continue
    an interrupted run to the metrics of an uninterrupted one; a spec asking for checkpoints
    under another protocol is rejected."""
    seed_axis: bool = False
    """True when the protocol can run several seeds of one configuration at once, as one
    stacked model (:func:`paralab.run_seeds`); otherwise seeds run one after another."""

    def _extra(self) -> dict[str, Any]:
        return {
            "resumable": self.resumable,
            "seed_axis": self.seed_axis,
            "uses_model": self.uses_model,
            "accepts": list(self.accepts),
            "main_metric": self.main_metric,
            "method_interface": self.method_interface,
            "applies_losses": self.applies_losses,
            "middleware_hooks": list(self.middleware_hooks),
        }


@dataclass(frozen=True)
class MethodSpec(Component):
    """A learning algorithm inside a protocol: ``factory(**options)``.

    ``protocols`` lists the protocols whose method interface the object implements; an
    experiment pairing the method with another protocol is rejected before it runs.
    """

    kind: ClassVar[str] = "method"
    protocols: tuple[str, ...] = ()
    family: str = ""
    """A method interface shared across protocols (``"gradient"`` for GradientMethods); a
    protocol whose ``accepts`` lists it takes the method too."""
    applies_losses: bool = True
    """False for a method that never adds the spec's loss terms even under a protocol that
    applies them (an adapter training through another library's loop): a spec pairing it with
    ``losses`` is rejected."""

    def _extra(self) -> dict[str, Any]:
        return {"protocols": list(self.protocols), "family": self.family,
                "applies_losses": self.applies_losses}


def supports(method: MethodSpec, protocol: ProtocolSpec) -> bool:
    """Whether ``method`` can run inside ``protocol``: it names the protocol, or the protocol
    accepts the method's family."""
    return protocol.name in method.protocols or bool(
        method.family and method.family in protocol.accepts
    )


@dataclass(frozen=True)
class MetricSpec(Component):
    """A metric: ``factory(**options)`` returns a :class:`paralab.interfaces.Metric`,
    ``metric(predictions, dataset) -> float | dict``.

    It reads the predictions the evaluation engine computed once per evaluation point.
    """

    kind: ClassVar[str] = "metric"


@dataclass(frozen=True)
class AuditorSpec(Component):
    """A read-only analysis of a run: ``factory(**options)`` returns a
    :class:`paralab.interfaces.Auditor`, whose ``audit(run, phase, predictions) -> dict`` is
    called at every evaluation point and ``finalize(run) -> dict | None`` once at the end (to
    write tables and plots to ``run.output_dir``).
    """

    kind: ClassVar[str] = "auditor"


@dataclass(frozen=True)
class LossSpec(Component):
    """A loss term: ``factory(**options)`` returns a :class:`paralab.interfaces.LossTerm`,
    ``term(batch: paralab.Batch) -> torch.Tensor`` (a scalar added to the training loss) under
    every protocol that declares ``applies_losses``.
    """

    kind: ClassVar[str] = "loss"


@dataclass(frozen=True)
class MiddlewareSpec(Component):
    """Middleware: ``factory(**options)`` returns a :class:`paralab.interfaces.Middleware`, a
    plugin object whose hookimpls (usually ``@hookimpl(wrapper=True)`` on
    ``paralab_process_update``) take part in the one run that names it, in the order the spec
    lists it; other runs in the same process never see it.

    ``hooks`` names the middleware hooks it acts through; a spec naming it under a protocol
    that calls none of them is rejected (DP under a protocol that never passes an update
    through middleware would add no noise).
    """

    kind: ClassVar[str] = "middleware"
    hooks: tuple[str, ...] = ("paralab_process_update",)

    def _extra(self) -> dict[str, Any]:
        return {"hooks": list(self.hooks)}


@dataclass(frozen=True)
class TrackerSpec(Component):
    """An experiment tracker (CSV files, TensorBoard, MLflow): ``factory(**options)`` returns a
    :class:`paralab.interfaces.Tracker`, a plugin object whose lifecycle hookimpls
    (``paralab_before_experiment``, ``paralab_after_phase``, ``paralab_after_experiment``,
    ``paralab_on_error``) take part in the one run whose spec lists it in ``trackers``, like
    middleware. A study calls its optional ``before_study(study)`` / ``after_study(study)``.

    A tracker only records, but what it raises fails the run (naming the tracker): a run whose
    tracking silently stopped would show curves that are not all there.
    """

    kind: ClassVar[str] = "tracker"


SPEC_TYPES: dict[str, type[Component]] = {
    spec.kind: spec
    for spec in (
        DatasetSpec,
        ModelSpec,
        ProtocolSpec,
        MethodSpec,
        MetricSpec,
        AuditorSpec,
        LossSpec,
        MiddlewareSpec,
        TrackerSpec,
    )
}
