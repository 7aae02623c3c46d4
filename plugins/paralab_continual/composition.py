"""Strategies that compose: a base training loop plus a list of strategy plugins.

``method = { name = "naive", plugins = [{ name = "replay", buffer_size = 200 },
{ name = "ewc", ewc_lambda = 100 }] }`` trains with replay *and* EWC: each plugin is called at
the loop's callback points, so no consolidation is lost to a class hierarchy whose
``after_experience`` overrides do not call ``super()`` (Avalanche's design: a template with
``plugins=[...]``, ``avalanche/training/templates/base_sgd.py``).

Callback points, in the order the base loop (:class:`~paralab_continual.strategies.
ContinualStrategy`) reaches them; at each point the plugins are called **in list order**: the
method's own plugin first (``ewc`` is ``naive`` + the ``ewc`` plugin), then ``plugins`` as
the spec lists them (Avalanche calls its plugins in list order too):

=====================  ============================================================
``check``              the stream is built, before any run folder (reject bad input)
``setup``              the model exists, its parameters and optimizer are made
``before_experience``  after the optimizer reset of a new experience
``before_step``        before a minibatch's forward pass (A-GEM's reference gradient)
``augment``            returns the batch to train on (replay appends memory rows)
``objective``          returns the task loss replacing the cross-entropy, or None (ER-ACE);
                       at most one plugin of a strategy may define it
``regularizer``        returns a term added to the loss, or None (LwF's distillation)
``after_backward``     change the gradients before the update (penalties, projections)
``after_step``         observe the parameters after the update (SI's path integral)
``after_experience``   consolidate (Fisher, memory, teacher)
=====================  ============================================================

Each callback takes the strategy first (its ``parameters``, ``stream``, ``forward``,
``device``), then what the strategy's own method of that name takes. A plugin also has
``state_dict()`` / ``load_state_dict(state, strategy)`` (checkpoints) and ``memory_bytes()``
(what it stores, for the memory metrics).

Names resolve through the registry, so a third party adds a plugin with an ordinary
:class:`paralab.MethodSpec` of ``family = "continual_plugin"`` whose factory returns an object
with some of the callbacks above (no import of this package needed); with ``protocols =
()`` it is a plugin only. The bundled strategies (``ewc``, ``replay``, ...) carry the family
too and keep their names as methods: their plugin options are their method options minus
the base loop's (``lr``, ``optimizer``, ...).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from paralab import OptionError, get_registry
from paralab_continual import PLUGIN_FAMILY

CALLBACKS = ("check", "setup", "before_experience", "before_step", "augment", "objective",
             "regularizer", "after_backward", "after_step", "after_experience")
"""The callback points, in the order the base loop reaches them."""

FIELD = "method.plugins"


class StrategyPlugin:
    """Base of the bundled strategy plugins: every callback does nothing.

    A callback a subclass does not override is never called (the loop skips it), so an
    idle callback costs nothing per step."""

    name = "plugin"

    def state_dict(self) -> dict[str, Any]:
        """What the plugin learned between experiences (tensors and plain data)."""
        return {}

    def load_state_dict(self, state: dict[str, Any], strategy: Any) -> None:
        """Take back :meth:`state_dict` (after the strategy's ``setup``)."""

    def memory_bytes(self) -> int:
        """Bytes the plugin keeps between experiences (memories, importances, a teacher)."""
        return 0

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


def tensor_bytes(*groups: Any) -> int:
    """Bytes of the tensors in ``groups`` (tensors, lists of tensors, modules, None)."""
    import torch

    total = 0
    for group in groups:
        if group is None:
            continue
        if isinstance(group, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in group.state_dict().values())
        elif isinstance(group, torch.Tensor):
            total += group.numel() * group.element_size()
        else:
            total += sum(tensor_bytes(item) for item in group)
    return total


def frozen_copy(model: Any, state: dict[str, Any] | None = None) -> Any:
    """A copy of ``model`` in eval mode with no gradients (a teacher: iCaRL's, BiC's),
    holding ``state`` (a ``state_dict``) when given, else ``model``'s weights now."""
    import copy

    frozen = copy.deepcopy(model).eval()
    if state is not None:
        frozen.load_state_dict(state)
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    return frozen


def overridden(plugin: Any, callback: str) -> bool:
    """Whether ``plugin`` implements ``callback`` (a StrategyPlugin's no-op does not count)."""
    method = getattr(type(plugin), callback, None)
    if method is None:
        return callable(getattr(plugin, callback, None))
    return method is not getattr(StrategyPlugin, callback, None)


def callback_table(plugins: Sequence[Any]) -> dict[str, list[Callable[..., Any]]]:
    """For each callback point, the bound callbacks of the plugins that implement it.

    Two plugins that both replace the task loss (``objective``) cannot compose: which one
    trains would be an accident of the order, so it is an error naming them."""
    table = {name: [getattr(p, name) for p in plugins if overridden(p, name)]
             for name in CALLBACKS}
    owners = [getattr(p, "name", type(p).__name__) for p in plugins if overridden(p, "objective")]
    if len(owners) > 1:
        raise OptionError(FIELD, f"{FIELD}: plugins {owners} each replace the task loss "
                                 f"(objective); keep one of them")
    return table


def plugin_names(registry: Any | None = None) -> list[str]:
    """The registered strategy plugins (methods of family ``continual_plugin``)."""
    registry = registry or get_registry()
    registry.load()
    return sorted(name for name, spec in registry.components.get("method", {}).items()
                  if getattr(spec, "family", "") == PLUGIN_FAMILY)


def base_option_names() -> set[str]:
    """The base loop's options: a bundled strategy's plugin takes the others."""
    from paralab_continual.strategies import ContinualStrategy

    return set(inspect.signature(ContinualStrategy.__init__).parameters) - {"self"}


def resolve(entries: Sequence[Any], field: str = FIELD) -> list[Any]:
    """Build the plugins that ``entries`` (``[{name = ..., option = ...}, ...]``) name.

    Raises :class:`paralab.OptionError` naming the entry and what would be valid: an
    unknown plugin (with the registered ones), an unknown option (with the plugin's), a value
    outside its declaration (quoting the constraint)."""
    if not entries:
        return []
    registry = get_registry()
    valid = plugin_names(registry)
    plugins = []
    for position, entry in enumerate(entries):
        where = f"{field}[{position}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise OptionError(where, f"{where} = {entry!r}: a plugin is a table with a name, "
                                     f"e.g. {{ name = \"replay\" }}; plugins: {', '.join(valid)}")
        name = entry["name"]
        spec = registry.components.get("method", {}).get(name)
        if spec is None or getattr(spec, "family", "") != PLUGIN_FAMILY:
            what = "is not a strategy plugin" if spec is not None else "is unknown"
            raise OptionError(f"{where}.name", f"{where}.name = {name!r}: strategy plugin "
                                               f"{name!r} {what}; plugins: {', '.join(valid)}")
        factory = spec.load()
        own = getattr(factory, "plugin_from", None)
        declared = spec.declared_options()
        if callable(own):
            base = base_option_names()
            declared = {key: option for key, option in declared.items() if key not in base}
        options = {key: value for key, value in entry.items() if key != "name"}
        for key, value in options.items():
            if key not in declared:
                raise OptionError(
                    f"{where}.{key}", f"{where}.{key}: plugin {name!r} has no option {key!r}; "
                                      f"its options: {', '.join(sorted(declared)) or 'none'}")
            problem = declared[key].problem(value)
            if problem:
                raise OptionError(f"{where}.{key}", f"{where}.{key} = {value!r}: {problem}")
        unused = spec.unused_options(options, where)  # ewc's decay with mode = "separate"
        if unused:
            raise OptionError(unused[0].partition(":")[0], unused[0])
        arguments = {key: option.default for key, option in declared.items()}
        arguments.update(options)
        plugin = own(**arguments) if callable(own) else factory(**arguments)
        if not any(overridden(plugin, callback) for callback in CALLBACKS):
            raise OptionError(f"{where}.name", (
                f"{where}.name = {name!r}: the factory of plugin {name!r} ({spec.provider}) "
                f"returned a {type(plugin).__name__}, which implements none of the callbacks "
                f"{', '.join(CALLBACKS)}, so it would do nothing"))
        if not getattr(plugin, "name", None) or getattr(plugin, "name", None) == "plugin":
            with contextlib.suppress(AttributeError):  # read-only: it keeps its own
                plugin.name = name
        plugins.append(plugin)
    return plugins


def describe(plugins: Sequence[Any]) -> list[str]:
    """The plugins' names, in callback order."""
    return [str(getattr(p, "name", type(p).__name__)) for p in plugins]


def memory_bytes(plugins: Sequence[Any]) -> int:
    """What the plugins keep between experiences, in bytes (0 for one that cannot say)."""
    total = 0
    for plugin in plugins:
        measure = getattr(plugin, "memory_bytes", None)
        total += int(measure()) if callable(measure) else 0
    return total


__all__ = ["CALLBACKS", "StrategyPlugin", "callback_table", "describe", "frozen_copy",
           "memory_bytes", "resolve", "tensor_bytes"]

