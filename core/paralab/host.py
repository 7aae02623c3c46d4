"""The host's one plugin registry per process, and typed calls of the lifecycle hooks.

The host never calls the untyped ``pm.hook.x(...)`` from its own code: :class:`Hooks` has one
method per hook, so a renamed parameter is a type error here, not a silent ``None`` in a
plugin (as tox does).
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pluggy

from paralab import hookspecs
from paralab_registry import LoadSettings, PluginRegistry

if TYPE_CHECKING:
    from paralab.context import Evaluation, Phase, RunContext, Update
    from paralab.methods import PerExampleGradients
    from paralab.results import Result

ENTRY_POINT_GROUP = "paralab"
BUILTIN_PLUGIN = "paralab"
CONTRIBUTION_HOOKS = {
    "dataset": "paralab_datasets",
    "model": "paralab_models",
    "protocol": "paralab_protocols",
    "method": "paralab_methods",
    "metric": "paralab_metrics",
    "auditor": "paralab_auditors",
    "loss": "paralab_losses",
    "middleware": "paralab_middleware",
    "tracker": "paralab_trackers",
}

_registry: PluginRegistry | None = None


def make_registry(settings: LoadSettings | None = None, **kwargs: Any) -> PluginRegistry:
    """A fresh registry with the host's specs and its own plugin registered first."""
    from paralab import builtin

    return PluginRegistry(
        project=hookspecs.PROJECT,
        hookspecs=hookspecs,
        group=ENTRY_POINT_GROUP,
        api_version=hookspecs.HOST_API_VERSION,
        contribution_hooks=CONTRIBUTION_HOOKS,
        builtins=[(BUILTIN_PLUGIN, builtin)],
        settings=settings,
        **kwargs,
    )


def configure(
    *, switches: Iterable[str] = (), no_plugins: bool = False, strict: bool = False
) -> PluginRegistry:
    """Replace the process registry, applying command-line switches over the environment."""
    global _registry
    _registry = make_registry(
        LoadSettings.from_env(switches=switches, no_plugins=no_plugins, strict=strict)
    )
    return _registry


def get_registry() -> PluginRegistry:
    """The process registry, loaded on first use (settings from the environment)."""
    global _registry
    if _registry is None:
        _registry = make_registry()
    return _registry.load()


def set_registry(registry: PluginRegistry | None) -> PluginRegistry | None:
    """Install ``registry`` as the process registry; return the previous one (for tests)."""
    global _registry
    previous, _registry = _registry, registry
    return previous


class Hooks:
    """Typed calls of the lifecycle and middleware hooks of one plugin manager (a run's own,
    from :meth:`PluginRegistry.run_manager`, or a registry's)."""

    def __init__(self, source: PluginRegistry | pluggy.PluginManager) -> None:
        self.pm = source.pm if isinstance(source, PluginRegistry) else source
        self._hook = self.pm.hook
        self._acting: dict[str, tuple[str, ...]] = {}
        self.gradient_calls = 0
        """How many batches went through ``paralab_process_gradients`` (a protocol checks that
        its method really passes them, so DP cannot be silently skipped)."""

    def middleware_for(self, hook_name: str) -> tuple[str, ...]:
        """The plugins (a run's middleware is named ``middleware[i]:name``) that implement the
        middleware hook ``hook_name`` besides the host's own identity.

        Cached: a run's plugin manager is fixed once the run starts, and
        :meth:`paralab.OptimizerMethod.step` asks once per batch.
        """
        acting = self._acting.get(hook_name)
        if acting is None:
            caller = getattr(self._hook, hook_name)
            acting = tuple(impl.plugin_name for impl in caller.get_hookimpls()
                           if impl.plugin_name != BUILTIN_PLUGIN)
            self._acting[hook_name] = acting
        return acting

    def has_middleware_for(self, hook_name: str) -> bool:
        """Whether anything but the host's identity acts on the middleware hook ``hook_name``
        (``"paralab_process_gradients"``: then gradient methods compute per-example gradients)."""
        return bool(self.middleware_for(hook_name))

    def before_experiment(self, run: RunContext) -> None:
        self._lifecycle("paralab_before_experiment", run=run)

    def after_experiment(self, run: RunContext, result: Result) -> None:
        self._lifecycle("paralab_after_experiment", run=run, result=result)

    def before_phase(self, run: RunContext, phase: Phase) -> None:
        self._lifecycle("paralab_before_phase", run=run, phase=phase)

    def after_phase(self, run: RunContext, phase: Phase) -> None:
        self._lifecycle("paralab_after_phase", run=run, phase=phase)

    def after_evaluation(self, run: RunContext, phase: Phase, evaluation: Evaluation) -> None:
        self._lifecycle("paralab_after_evaluation", run=run, phase=phase, evaluation=evaluation)

    def on_error(self, run: RunContext, error: BaseException, phase: Phase | None) -> None:
        self._hook.paralab_on_error(run=run, error=error, phase=phase)

    def _lifecycle(self, hook_name: str, **arguments: Any) -> None:
        """Call a lifecycle hook; what a run's tracker raises there is the tracker's failure
        (``ComponentFailure("tracker", name)``), so the run names it, not "a hook"."""
        try:
            getattr(self._hook, hook_name)(**arguments)
        except Exception as error:
            from paralab.context import ComponentFailure

            name = self.raising_run_object(hook_name, error.__traceback__, "trackers[")
            if name:
                raise ComponentFailure("tracker", name, error) from error
            name = self.raising_run_object(hook_name, error.__traceback__, "callbacks[",
                                           full=True)
            if name:  # a per-run callback (paralab.run(..., callbacks=[...]))
                raise ComponentFailure("callback", name, error) from error
            raise

    def process_update(self, run: RunContext, update: Update) -> Update:
        return self._through_middleware("paralab_process_update", run=run, update=update)

    def process_gradients(self, run: RunContext,
                          gradients: PerExampleGradients) -> PerExampleGradients:
        self.gradient_calls += 1
        return self._through_middleware("paralab_process_gradients", run=run,
                                        gradients=gradients)

    def _through_middleware(self, hook_name: str, **arguments: Any) -> Any:
        """Call a middleware hook; what raises there is the middleware's failure (not the
        protocol's that called it, nor a federated client's), so it is re-raised as a
        ``ComponentFailure`` naming the middleware, which the runner maps to its plugin."""
        try:
            return getattr(self._hook, hook_name)(**arguments)
        except Exception as error:
            from paralab.context import ComponentFailure  # torch: only once something failed

            if isinstance(error, ComponentFailure):
                raise
            name = self.raising_middleware(hook_name, error.__traceback__)
            raise ComponentFailure("middleware", name, error) from error

    def raising_middleware(self, hook_name: str, tb: TracebackType | None) -> str:
        """The name of the run's middleware whose ``hook_name`` implementation raised, read
        from the traceback: the innermost frame running one of the middleware's hook
        implementations (a frame's ``self`` tells apart two entries of one middleware class);
        the only middleware on the hook when no frame is one; else ``""`` (the runner then
        names the plugin from the traceback alone)."""
        found = self.raising_run_object(hook_name, tb, "middleware[")
        if found:
            return found
        impls = [impl for impl in getattr(self._hook, hook_name).get_hookimpls()
                 if impl.plugin_name.startswith("middleware[")]
        if len({_middleware_name(i.plugin_name) for i in impls}) == 1:
            return _middleware_name(impls[0].plugin_name)
        return ""

    def raising_run_object(self, hook_name: str, tb: TracebackType | None, prefix: str,
                           full: bool = False) -> str:
        """The name of the run's object (``prefix`` ``"middleware["``, ``"trackers["`` or
        ``"callbacks["``) whose ``hook_name`` implementation is the innermost such frame of
        ``tb``, else ``""``; ``full``: its registered name (``"callbacks[0]:Probe"``)."""
        impls = [impl for impl in getattr(self._hook, hook_name).get_hookimpls()
                 if impl.plugin_name.startswith(prefix)]
        found = ""
        while tb is not None:
            frame = tb.tb_frame
            for impl in impls:
                if (getattr(impl.function, "__code__", None) is frame.f_code
                        and frame.f_locals.get("self", impl.plugin) is impl.plugin):
                    found = impl.plugin_name if full else _middleware_name(impl.plugin_name)
            tb = tb.tb_next
        return found


def _middleware_name(plugin_name: str) -> str:
    """``"middleware[0]:dp"`` (how the runner registers a run's middleware) -> ``"dp"``."""
    return plugin_name.split(":", 1)[1] if ":" in plugin_name else plugin_name
