"""Discovery, loading and indexing of plugins, around one pluggy ``PluginManager``.

The registry is generic: the host passes its hook-spec module, entry-point group, API version
and the contribution hooks to index. It imports only pluggy and the standard library, so
listing plugins never imports torch; each plugin's top-level module must stay light too.

A plugin that fails to import, declares an incompatible API, implements a hook that matches no
spec, raises in a contribution hook or contributes a name another plugin already took is
recorded with its reason and skipped; everything else goes on. In strict mode each of those is
fatal (:class:`PluginLoadError`).
"""

from __future__ import annotations

import difflib
import importlib
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from importlib import metadata
from types import ModuleType, TracebackType
from typing import Any

import pluggy

from paralab_registry.records import ACTIVE, DISABLED, FAILED, INCOMPATIBLE, PluginRecord
from paralab_registry.settings import LoadSettings


class PluginLoadError(RuntimeError):
    """A plugin failed to load in strict mode."""


class UnknownPluginError(LookupError):
    """A name given in PARALAB_LOAD_PLUGINS, ``-p`` or ``check-plugin`` names no plugin."""


class UnknownComponentError(LookupError):
    """No plugin contributes a component of that kind and name."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a close choice exists, else an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def api_compatible(declared: object, host: str) -> str | None:
    """None when a plugin declaring API ``declared`` can run on host API ``host``, else why not."""
    if declared is None:
        return f"declares no PARALAB_API (this host provides API {host})"
    try:
        major, minor = (int(part) for part in str(declared).split(".")[:2])
        host_major, host_minor = (int(part) for part in host.split(".")[:2])
    except ValueError:
        return f"PARALAB_API {declared!r} is not 'MAJOR.MINOR'"
    if major != host_major or minor > host_minor:
        return f"written for host API {declared}, this host provides API {host}"
    return None


class PluginRegistry:
    """Loads plugins into a pluggy manager and indexes what each contributes.

    :param project: pluggy project name, also the hook prefix (``project_``).
    :param hookspecs: the module holding the hook specs.
    :param group: the entry-point group to discover.
    :param api_version: the host API version plugins must be compatible with.
    :param contribution_hooks: component kind -> the hook that yields specs of that kind.
    :param builtins: ``(name, plugin)`` pairs registered first, always, like any plugin.
    :param settings: which plugins to load (default: from the environment).
    """

    def __init__(
        self,
        *,
        project: str,
        hookspecs: ModuleType,
        group: str,
        api_version: str,
        contribution_hooks: Mapping[str, str],
        builtins: Iterable[tuple[str, object]] = (),
        settings: LoadSettings | None = None,
        entry_points: Callable[[], Iterable[metadata.EntryPoint]] | None = None,
    ) -> None:
        self.project = project
        self.group = group
        self.api_version = api_version
        self.contribution_hooks = dict(contribution_hooks)
        self.settings = settings or LoadSettings.from_env()
        self.hookspecs = hookspecs
        self.pm = pluggy.PluginManager(project)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.components: dict[str, dict[str, Any]] = {kind: {} for kind in contribution_hooks}
        self._modules: dict[str, str] = {}
        self._entry_points = entry_points or self._discover
        self._builtins = list(builtins)
        self._loaded = False
        if self.settings.trace:
            self.pm.trace.root.setwriter(lambda message: sys.stderr.write(message))
            self.pm.enable_tracing()

    # ----------------------------------------------------------------------------- loading

    def _discover(self) -> list[metadata.EntryPoint]:
        return list(metadata.entry_points(group=self.group))

    def load(self) -> PluginRegistry:
        """Register the builtins, then every selected entry point in name order (once)."""
        if self._loaded:
            return self
        self._loaded = True
        for name, plugin in self._builtins:
            self._register(PluginRecord(name=name, builtin=True, module=_module_of(plugin)), plugin)
        found: dict[str, metadata.EntryPoint] = {}
        if not self.settings.no_plugins or self.settings.include:
            for entry_point in sorted(self._entry_points(), key=lambda ep: (ep.name, ep.value)):
                if entry_point.name in found or entry_point.name in self.records:
                    self._fail(
                        PluginRecord(name=entry_point.name, module=entry_point.value,
                                     **_dist_fields(entry_point)),
                        f"the name {entry_point.name!r} is taken by "
                        f"{(self.records.get(entry_point.name) or _record_of(found[entry_point.name])).label}",
                    )
                    continue
                found[entry_point.name] = entry_point
        self._check_names(found)
        for name, entry_point in found.items():
            reason = self.settings.disabled_reason(name)
            record = PluginRecord(name=name, module=entry_point.value, **_dist_fields(entry_point))
            if reason is not None:
                if not self.settings.no_plugins:
                    record.status, record.reason = DISABLED, reason
                    self.records[name] = record
                continue
            self._load_entry_point(record, entry_point)
        for name in self.settings.include:
            if name not in found and name not in self.records:
                self._load_module_path(name)
        return self

    def _check_names(self, found: Mapping[str, metadata.EntryPoint]) -> None:
        known = set(found) | set(self.records)
        named = list(self.settings.include) + list(self.settings.block)
        named += list(self.settings.only or ())
        for name in named:
            if name in known or ("." in name and name in self.settings.include):
                continue
            raise UnknownPluginError(
                f"unknown plugin {name!r}{suggest(name, known)}; installed plugins: "
                f"{', '.join(sorted(known)) or 'none'}"
            )

    def _load_entry_point(self, record: PluginRecord, entry_point: metadata.EntryPoint) -> None:
        try:
            plugin = entry_point.load()
        except BaseException as error:  # noqa: BLE001 - any import failure is recorded
            if isinstance(error, KeyboardInterrupt):
                raise
            self._fail(record, f"import failed: {_short(error)}", error)
            return
        self._register(record, plugin)

    def _load_module_path(self, module_name: str) -> None:
        record = PluginRecord(name=module_name, module=module_name)
        try:
            plugin = importlib.import_module(module_name)
        except Exception as error:  # noqa: BLE001
            self._fail(record, f"import failed: {_short(error)}", error)
            return
        self._register(record, plugin)

    def _register(self, record: PluginRecord, plugin: object) -> None:
        declared = getattr(plugin, "PARALAB_API", None)
        record.api = "" if declared is None else str(declared)
        if not record.builtin:
            reason = api_compatible(declared, self.api_version)
            if reason is not None:
                record.status, record.reason = INCOMPATIBLE, reason
                self.records[record.name] = record
                if self.settings.strict:
                    raise PluginLoadError(f"plugin {record.label} is incompatible: {reason}")
                return
        try:
            self.pm.register(plugin, name=record.name)
        except Exception as error:  # noqa: BLE001 - pluggy's validation errors and name clashes
            self._fail(record, f"invalid hook implementation: {_short(error)}", error)
            return
        unknown = [
            impl.function.__name__
            for hook in self._unspecified_hooks()
            for impl in hook.get_hookimpls()
            if impl.plugin_name == record.name
        ]
        if unknown:
            self.pm.unregister(name=record.name)
            known = [
                name
                for name, caller in vars(self.pm.hook).items()
                if name.startswith(self.project + "_") and caller.has_spec()
            ]
            hints = "; ".join(f"{name}{suggest(name, known)}" for name in unknown)
            self._fail(record, f"implements hooks that match no spec: {hints}")
            return
        self._index(record, plugin)

    def _unspecified_hooks(self) -> list[Any]:
        return [
            caller
            for name, caller in vars(self.pm.hook).items()
            if name.startswith(self.project + "_") and not caller.has_spec()
        ]

    def _index(self, record: PluginRecord, plugin: object) -> None:
        """Collect the plugin's contributions; a clash or a raising hook fails the plugin."""
        contributed: dict[str, dict[str, Any]] = {}
        try:
            for kind, hook_name in self.contribution_hooks.items():
                caller = getattr(self.pm.hook, hook_name)
                for impl in caller.get_hookimpls():
                    if impl.plugin_name != record.name:
                        continue
                    for spec in impl.function() or ():
                        _check_spec(spec, kind, hook_name)
                        taken = self.components[kind].get(spec.name) or contributed.get(
                            kind, {}
                        ).get(spec.name)
                        if taken is not None:
                            other = self.records.get(taken.provider)
                            raise _Clash(
                                f"{kind} {spec.name!r} is contributed by both "
                                f"{other.label if other else taken.provider} and {record.label}"
                            )
                        contributed.setdefault(kind, {})[spec.name] = replace(
                            spec, provider=record.name
                        )
        except _Clash as clash:
            self.pm.unregister(name=record.name)
            self._fail(record, str(clash))
            return
        except Exception as error:  # noqa: BLE001
            self.pm.unregister(name=record.name)
            self._fail(record, f"contribution hook failed: {_short(error)}", error)
            return
        for kind, specs in contributed.items():
            self.components[kind].update(specs)
        record.contributions = {kind: sorted(specs) for kind, specs in contributed.items()}
        record.status = ACTIVE
        self.records[record.name] = record
        self._modules[record.name] = record.module.partition(":")[0] or _module_of(plugin)

    def _fail(self, record: PluginRecord, reason: str, error: BaseException | None = None) -> None:
        record.status, record.reason = FAILED, reason
        self.records[record.name] = record
        if self.settings.strict:
            raise PluginLoadError(f"plugin {record.label} failed: {reason}") from error

    def add(self, name: str, plugin: object) -> PluginRecord:
        """Register a plugin object at run time (tests, notebooks) through the same checks as
        an entry point: API version, hook validation, contribution indexing."""
        self.load()
        if name in self.records:
            raise ValueError(f"a plugin named {name!r} is already registered")
        record = PluginRecord(name=name, module=_module_of(plugin))
        self._register(record, plugin)
        return self.records[name]

    def remove(self, name: str) -> None:
        """Unregister a plugin and forget its contributions."""
        record = self.records.pop(name, None)
        if record is None:
            return
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        for kind, names in record.contributions.items():
            for component in names:
                self.components[kind].pop(component, None)
        self._modules.pop(name, None)

    def run_manager(self, extra: Iterable[tuple[str, object]] = ()) -> pluggy.PluginManager:
        """A plugin manager for one run: every plugin registered here, in the same order,
        then ``extra`` (the run's middleware). The process-wide manager is never changed, so
        two runs in one process (threads, a notebook) never see each other's middleware."""
        self.load()
        pm = pluggy.PluginManager(self.project)
        pm.add_hookspecs(self.hookspecs)
        for name, plugin in self.pm.list_name_plugin():
            if plugin is not None:
                pm.register(plugin, name=name)
        for name, plugin in extra:
            pm.register(plugin, name=name)
        if self.settings.trace:
            pm.trace.root.setwriter(lambda message: sys.stderr.write(message))
            pm.enable_tracing()
        return pm

    # ----------------------------------------------------------------------------- queries

    def plugins(self, *, include_builtin: bool = False) -> list[PluginRecord]:
        """Every known plugin, in load order; the builtins only when asked."""
        self.load()
        return [
            record for record in self.records.values() if include_builtin or not record.builtin
        ]

    def plugin(self, name: str) -> PluginRecord:
        self.load()
        try:
            return self.records[name]
        except KeyError:
            raise UnknownPluginError(
                f"unknown plugin {name!r}{suggest(name, self.records)}; installed plugins: "
                f"{', '.join(sorted(self.records)) or 'none'}"
            ) from None

    def component(self, kind: str, name: str) -> Any:
        """The spec of component ``name`` of ``kind``, with a did-you-mean when unknown."""
        self.load()
        try:
            return self.components[kind][name]
        except KeyError:
            raise UnknownComponentError(self.unknown_message(kind, name)) from None

    def unknown_message(self, kind: str, name: str) -> str:
        choices = self.components.get(kind, {})
        offered = ", ".join(
            f"{spec.name} ({spec.provider})" for spec in sorted(choices.values(), key=_by_name)
        )
        message = f"unknown {kind} {name!r}{suggest(str(name), choices)}; available: {offered or 'none'}"
        failed = [r for r in self.records.values() if r.status in (FAILED, INCOMPATIBLE)]
        if failed:
            message += "; plugins that did not load: " + ", ".join(
                f"{r.name} ({r.reason})" for r in failed
            )
        return message

    def plugin_of(self, tb: TracebackType | None, prefer: str | None = None) -> str | None:
        """The plugin whose code raised, read from a traceback: the innermost frame that
        belongs to a plugin's module wins. Where several plugins share that module, ``prefer``
        (the provider of the component that was running) breaks the tie."""
        culprits: list[str] = []
        while tb is not None:
            module = tb.tb_frame.f_globals.get("__name__", "")
            owners = [
                name
                for name, prefix in self._modules.items()
                if module == prefix or module.startswith(prefix + ".")
            ]
            if owners:
                culprits = owners
            tb = tb.tb_next
        if prefer in culprits or (not culprits and prefer in self.records):
            return prefer
        return culprits[0] if culprits else None


class _Clash(Exception):
    pass


def _by_name(spec: Any) -> str:
    return spec.name


def _check_spec(spec: object, kind: str, hook_name: str) -> None:
    if getattr(spec, "kind", None) != kind or not getattr(spec, "name", None):
        raise TypeError(f"{hook_name} must return {kind} specs with a name, got {spec!r}")


def _short(error: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(error), error)).strip()
    return text.splitlines()[-1] if text else type(error).__name__


def _module_of(plugin: object) -> str:
    return getattr(plugin, "__name__", None) or type(plugin).__module__


def _dist_fields(entry_point: metadata.EntryPoint) -> dict[str, str]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return {}
    return {"distribution": dist.metadata["Name"] or "", "version": dist.version or ""}


def _record_of(entry_point: metadata.EntryPoint) -> PluginRecord:
    return PluginRecord(name=entry_point.name, module=entry_point.value, **_dist_fields(entry_point))
