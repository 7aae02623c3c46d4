"""The host's one plugin registry per process, and typed calls of the lifecycle hooks.

The host never calls the untyped ``pm.hook.x(...)`` from its own code: :class:`Hooks` has one
method per hook, so a renamed parameter is a type error here, not a silent ``None`` in a
plugin (as tox does).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy

from paralab import hookspecs
from paralab_registry import LoadSettings, PluginRegistry

if TYPE_CHECKING:
    from paralab.context import Evaluation, Phase, RunContext, Update
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

    def before_experiment(self, run: RunContext) -> None:
        self._hook.paralab_before_experiment(run=run)

    def after_experiment(self, run: RunContext, result: Result) -> None:
        self._hook.paralab_after_experiment(run=run, result=result)

    def before_phase(self, run: RunContext, phase: Phase) -> None:
        self._hook.paralab_before_phase(run=run, phase=phase)

    def after_phase(self, run: RunContext, phase: Phase) -> None:
        self._hook.paralab_after_phase(run=run, phase=phase)

    def after_evaluation(self, run: RunContext, phase: Phase, evaluation: Evaluation) -> None:
        self._hook.paralab_after_evaluation(run=run, phase=phase, evaluation=evaluation)

    def on_error(self, run: RunContext, error: BaseException, phase: Phase | None) -> None:
        self._hook.paralab_on_error(run=run, error=error, phase=phase)

    def process_update(self, run: RunContext, update: Update) -> Update:
        return self._hook.paralab_process_update(run=run, update=update)
