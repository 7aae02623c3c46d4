"""The paralab hook contract: the one file a plugin author reads.

A plugin is a module (named in the ``paralab`` entry-point group) that defines functions
decorated with :data:`hookimpl` whose names and parameters match the specs below, and that
declares the host API it was written for::

    # my_plugin/__init__.py
    from paralab import hookimpl, ModelSpec

    PARALAB_API = "1.0"

    @hookimpl
    def paralab_models():
        return [ModelSpec(name="tiny", factory="my_plugin.models:Tiny")]

Every hook starts with ``paralab_``. An implementation may take any subset of a hook's
parameters, by name. There are three groups:

* **Contribution hooks** return lists of the small typed specs of :mod:`paralab.components`.
  They are called when the registry indexes plugins, so they must be cheap: import nothing heavy
  at module level, and name factories by ``"module:attribute"`` strings. Names are unique
  across all plugins; a clash is an error that names both plugins and their versions.
* **Lifecycle hooks** observe a run. Every implementation is called, in registration order
  (entry points sorted by name, the host's own plugin first, per-run middleware last; pluggy
  calls the most recently registered implementation first, ``tryfirst``/``trylast`` adjust it).
  Return values are ignored. An implementation that raises fails the run with an error that
  names the plugin; the phases finished before it are kept in ``result.json``.
* **Middleware hooks** transform a value; pluggy wrappers (``@hookimpl(wrapper=True)``) are how
  differential privacy or secure aggregation wrap a client update (``paralab_process_update``)
  or one batch's per-example gradients (``paralab_process_gradients``, DP-SGD) without touching
  the method.

Lifecycle of one run (see docs/lifecycle.md for the diagram)::

    paralab_before_experiment
      ├─ paralab_before_phase ─ (training; paralab_process_update per update,
      │                          paralab_process_gradients per batch under DP-SGD)
      │    └─ evaluation ─ paralab_after_evaluation
      ├─ paralab_after_phase         (repeated for every epoch/experience/round/meta-batch)
    paralab_after_experiment  |  paralab_on_error
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from paralab.components import (
        AuditorSpec,
        DatasetSpec,
        LossSpec,
        MethodSpec,
        MetricSpec,
        MiddlewareSpec,
        ModelSpec,
        ProtocolSpec,
        TrackerSpec,
    )
    from paralab.context import Evaluation, Phase, RunContext, Update
    from paralab.methods import PerExampleGradients
    from paralab.results import Result

PROJECT = "paralab"
HOST_API_VERSION = "1.0"
"""The hook-contract version. A plugin declares ``PARALAB_API = "1.x"``; it is loaded when its
major version equals the host's and its minor version is not newer."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------------------------
# Contribution hooks: what a plugin adds. Called once when the registry indexes plugins.
# --------------------------------------------------------------------------------------------


@hookspec
def paralab_datasets() -> list[DatasetSpec]:
    """Return the datasets this plugin adds.

    Called once, when the registry indexes plugins. Every implementation is called (no
    first-result short cut); the host collects each plugin's list separately, so it knows who
    contributed what.

    :return: a list of :class:`paralab.components.DatasetSpec`; the factory is called as
        ``factory(root=None, **options)`` and returns a :class:`paralab.data.SharedDataset`.

    Example::

        @hookimpl
        def paralab_datasets():
            return [DatasetSpec(name="moons", factory="my_plugin.data:moons",
                                options={"n": 500, "noise": 0.1})]
    """


@hookspec
def paralab_models() -> list[ModelSpec]:
    """Return the models this plugin adds.

    Called once, when the registry indexes plugins. Every implementation is called (no
    first-result short cut); the host collects each plugin's list separately, so it knows who
    contributed what.

    :return: a list of :class:`paralab.components.ModelSpec`; the factory is called as
        ``factory(info, **options)`` with a :class:`paralab.data.DatasetInfo` and returns a
        ``torch.nn.Module`` mapping inputs to logits.

    Example::

        @hookimpl
        def paralab_models():
            return [ModelSpec(name="linear", factory="my_plugin.models:linear")]
    """


@hookspec
def paralab_protocols() -> list[ProtocolSpec]:
    """Return the protocols (shapes of training: a stream, episodes, rounds) this plugin adds.

    Called once, when the registry indexes plugins. Every implementation is called (no
    first-result short cut); the host collects each plugin's list separately, so it knows who
    contributed what.

    :return: a list of :class:`paralab.components.ProtocolSpec`; the factory is called as
        ``factory(**options)`` and returns an object with ``execute(run)``.

    Example::

        @hookimpl
        def paralab_protocols():
            return [ProtocolSpec(name="stream", factory="my_plugin.stream:Stream",
                                 options={"experiences": 5})]
    """


@hookspec
def paralab_methods() -> list[MethodSpec]:
    """Return the methods (learning algorithms within a protocol) this plugin adds.

    Called once, when the registry indexes plugins. Every implementation is called (no
    first-result short cut); the host collects each plugin's list separately, so it knows who
    contributed what.

    :return: a list of :class:`paralab.components.MethodSpec`, each naming the ``protocols``
        whose method interface it implements.

    Example::

        @hookimpl
        def paralab_methods():
            return [MethodSpec(name="sgd-nesterov", factory="my_plugin.methods:Nesterov",
                               protocols=("supervised",), options={"lr": 0.05})]
    """


@hookspec
def paralab_metrics() -> list[MetricSpec]:
    """Return the metrics this plugin adds.

    Called once, when the registry indexes plugins. Every implementation is called (no
    first-result short cut); the host collects each plugin's list separately, so it knows who
    contributed what.

    :return: a list of :class:`paralab.components.MetricSpec`; the factory returns
        ``metric(predictions, dataset) -> float | dict[str, float]``.

    Example::

        @hookimpl
        def paralab_metrics():
            return [MetricSpec(name="top2", factory="my_plugin.metrics:top2")]
    """


@hookspec
def paralab_auditors() -> list[AuditorSpec]:
    """Return the auditors (read-only analyses of any run's predictions) this plugin adds.

    Called once, when the registry indexes plugins. Every implementation is called (no
    first-result short cut); the host collects each plugin's list separately, so it knows who
    contributed what.

    :return: a list of :class:`paralab.components.AuditorSpec`; the factory returns an object
        with ``audit(run, phase, predictions) -> dict`` and optionally ``finalize(run) -> dict``.

    Example::

        @hookimpl
        def paralab_auditors():
            return [AuditorSpec(name="confidence", factory="my_plugin.audit:Confidence")]
    """


@hookspec
def paralab_losses() -> list[LossSpec]:
    """Return the loss terms (usable under any protocol) this plugin adds.

    Called once, when the registry indexes plugins. Every implementation is called (no
    first-result short cut); the host collects each plugin's list separately, so it knows who
    contributed what.

    :return: a list of :class:`paralab.components.LossSpec`; the factory returns
        ``term(batch: paralab.Batch) -> torch.Tensor``.

    Example::

        @hookimpl
        def paralab_losses():
            return [LossSpec(name="l2", factory="my_plugin.losses:L2", options={"weight": 1e-4})]
    """


@hookspec
def paralab_middleware() -> list[MiddlewareSpec]:
    """Return the middleware (per-run wrappers such as differential privacy) this plugin adds.

    Called once, when the registry indexes plugins. Every implementation is called (no
    first-result short cut); the host collects each plugin's list separately, so it knows who
    contributed what.

    :return: a list of :class:`paralab.components.MiddlewareSpec`; the factory returns an
        object with hookimpls that the host registers for one run.

    Example::

        @hookimpl
        def paralab_middleware():
            return [MiddlewareSpec(name="clip", factory="my_plugin.mw:Clip",
                                   options={"max_norm": 1.0})]
    """


@hookspec
def paralab_trackers() -> list[TrackerSpec]:
    """Return the experiment trackers (CSV, TensorBoard, MLflow, ...) this plugin adds.

    Called once, when the registry indexes plugins. Every implementation is called (no
    first-result short cut); the host collects each plugin's list separately. A spec chooses trackers per run with
    ``trackers = ["csv", { name = "mlflow", tracking_uri = "sqlite:///mlflow.db" }]``; the
    factory's object implements lifecycle hooks and is registered for that one run.

    :return: a list of :class:`paralab.components.TrackerSpec`.

    Example::

        @hookimpl
        def paralab_trackers():
            return [TrackerSpec(name="stdout", factory="my_plugin.track:Stdout")]
    """


# --------------------------------------------------------------------------------------------
# Lifecycle hooks: observe a run. Every implementation is called; return values are ignored.
# --------------------------------------------------------------------------------------------


@hookspec
def paralab_before_experiment(run: RunContext) -> None:
    """Called once per run after the dataset, model, method and auditors are built and before
    the protocol starts.

    Every implementation is called (no first-result short cut); return values are ignored.

    :param run: the :class:`paralab.RunContext` (spec, dataset, model, device, output folder).

    Example::

        @hookimpl
        def paralab_before_experiment(run):
            print("starting", run.spec.name, "on", run.device)
    """


@hookspec
def paralab_after_experiment(run: RunContext, result: Result) -> None:
    """Called once per run after the protocol finished without error and the auditors were
    finalized, before ``result.json`` is written for the last time.

    Every implementation is called (no first-result short cut); return values are ignored.

    :param run: the :class:`paralab.RunContext`.
    :param result: the :class:`paralab.Result`; an implementation may add entries to
        ``result.artifacts``.

    Example::

        @hookimpl
        def paralab_after_experiment(run, result):
            print(result.metrics)
    """


@hookspec
def paralab_before_phase(run: RunContext, phase: Phase) -> None:
    """Called when a protocol opens a phase: an epoch, an experience of a stream, a federated
    round, a meta-batch of episodes.

    Every implementation is called (no first-result short cut); return values are ignored.

    :param run: the :class:`paralab.RunContext`.
    :param phase: the :class:`paralab.Phase` (``kind``, ``index``, ``info``); its ``metrics``
        are still empty.

    Example::

        @hookimpl
        def paralab_before_phase(run, phase):
            if phase.kind == "experience":
                print("classes", phase.info.get("classes"))
    """


@hookspec
def paralab_after_phase(run: RunContext, phase: Phase) -> None:
    """Called when a phase closes, after its evaluations; ``phase.metrics`` and
    ``phase.audits`` hold what was measured. The host saves the phase to ``result.json`` right
    after this hook, so a later failure cannot lose it.

    Every implementation is called (no first-result short cut); return values are ignored.

    :param run: the :class:`paralab.RunContext`.
    :param phase: the finished :class:`paralab.Phase`.

    Example::

        @hookimpl
        def paralab_after_phase(run, phase):
            print(phase.kind, phase.index, phase.metrics.get("test/accuracy"))
    """


@hookspec
def paralab_after_evaluation(run: RunContext, phase: Phase, evaluation: Evaluation) -> None:
    """Called after each evaluation point, once the predictions, metrics and auditors of one
    evaluated split are computed. The predictions are shared, not recomputed.

    Every implementation is called (no first-result short cut); return values are ignored.

    :param run: the :class:`paralab.RunContext`.
    :param phase: the :class:`paralab.Phase` the evaluation belongs to.
    :param evaluation: the :class:`paralab.Evaluation` (``split``, ``predictions``,
        ``metrics``, ``audits``).

    Example::

        @hookimpl
        def paralab_after_evaluation(run, phase, evaluation):
            print(evaluation.split, evaluation.metrics["accuracy"])
    """


@hookspec
def paralab_on_error(run: RunContext, error: BaseException, phase: Phase | None) -> None:
    """Called when the run fails: a component or a hook raised. The partial result is already
    saved. Exceptions raised here are logged and otherwise ignored.

    Every implementation is called (no first-result short cut); return values are ignored.

    :param run: the :class:`paralab.RunContext`.
    :param error: the exception.
    :param phase: the phase that was open, or ``None`` when the failure came outside a phase.

    Example::

        @hookimpl
        def paralab_on_error(run, error, phase):
            print("run failed in", phase, ":", error)
    """


# --------------------------------------------------------------------------------------------
# Middleware hooks: transform a value. Wrappers are the intended implementations.
# --------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def paralab_process_update(run: RunContext, update: Update) -> Update:
    """Transform a model update before it is applied or aggregated: a federated client's
    parameter delta, a continual or supervised step's delta when a protocol asks for it.

    The host's own plugin returns the update unchanged (``trylast``), so the first result wins
    and wrappers see it: a wrapper's ``result = yield`` receives the update, and what the
    wrapper returns replaces it. Wrappers run in the order the spec lists the middleware
    (the first listed is the outermost). The first result wins (``firstresult``).

    :param run: the :class:`paralab.RunContext`.
    :param update: the :class:`paralab.Update` (``delta``: a dict of parameter tensors,
        ``source``: a client id or ``None``, ``weight``: examples behind it, ``info``).
    :return: the update to use.

    Example::

        @hookimpl(wrapper=True)
        def paralab_process_update(run, update):
            update = yield
            return update.replace(delta={k: v.clamp(-1, 1) for k, v in update.delta.items()})
    """


@hookspec(firstresult=True)
def paralab_process_gradients(run: RunContext,
                              gradients: PerExampleGradients) -> PerExampleGradients:
    """Transform one training batch's per-example gradients before the optimizer applies them:
    DP-SGD (Abadi et al. 2016) clips each example's gradient and adds Gaussian noise to the sum.

    Called by :meth:`paralab.OptimizerMethod.step` (``sgd``, ``adam`` and their subclasses) for
    every batch, and only when the run has an implementation besides the host's: otherwise the
    method takes its plain batched step and no per-example gradient is computed. Protocols that
    step through a gradient method declare it in ``ProtocolSpec.middleware_hooks``
    (``supervised`` does), and say how they sample batches in the open phase's
    ``info["sampling"]`` (``scheme``: ``"poisson"`` or ``"shuffle"``, ``sample_rate``,
    ``expected_batch_size``), which the method copies into ``gradients.info``.

    The host's own plugin returns the gradients unchanged (``trylast``), so wrappers see them:
    a wrapper's ``result = yield`` receives the value, and what it returns replaces it.
    Wrappers run in the order the spec lists the middleware (the first listed is the
    outermost). The first result wins (``firstresult``). The optimizer applies
    ``result.gradient()``: ``summed`` (default: the sum of ``per_example`` over the examples)
    divided by ``batch_size``.

    :param run: the :class:`paralab.RunContext`.
    :param gradients: the :class:`paralab.PerExampleGradients` (``per_example``: parameter name
        -> ``(rows, *shape)``, one row per example; ``batch_size``: the divisor, the expected
        batch size under Poisson sampling; ``summed``: set by middleware that replaces the sum;
        ``info``).
    :return: the gradients to apply.

    Example::

        @hookimpl(wrapper=True)
        def paralab_process_gradients(run, gradients):
            gradients = yield
            # Clip every example's gradient to L2 norm 1 (no noise: not private on its own).
            rows = gradients.per_example
            norms = sum(g.flatten(1).pow(2).sum(1) for g in rows.values()).sqrt()
            factor = (1.0 / norms.clamp(min=1e-12)).clamp(max=1.0)
            clipped = {n: g * factor.view(-1, *[1] * (g.dim() - 1)) for n, g in rows.items()}
            return gradients.replace(per_example=clipped, summed=None)
    """


def hook_names() -> list[str]:
    """Every hook this contract defines, in file order."""
    return [name for name in globals() if name.startswith("paralab_")]


def describe_hooks() -> dict[str, Any]:
    """Hook name -> its options (firstresult ...) and parameters, for docs and tests."""
    import inspect

    described: dict[str, Any] = {}
    for name in hook_names():
        function = globals()[name]
        options = getattr(function, f"{PROJECT}_spec", {})
        described[name] = {
            "parameters": list(inspect.signature(function).parameters),
            "firstresult": bool(options.get("firstresult")),
            "doc": inspect.getdoc(function) or "",
        }
    return described
