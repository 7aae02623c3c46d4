"""Discovery, loading and indexing of plugins, around one pluggy ``PluginManager``.

The registry is generic: the host passes its hook-spec module, entry-point group, API version
and the contribution hooks to index. It imports only pluggy and the standard library, so
listing plugins never imports torch; each plugin's top-level module must stay light too.

A plugin that fails to import, declares an incompatible API, implements a hook that matches no
spec, raises in a contribution hook (any ``BaseException``: ``SystemExit`` and a plugin's own
``KeyboardInterrupt`` too, see :mod:`paralab_registry.containment`), yields a malformed record
(see :mod:`paralab_registry.validation`) or claims a name another plugin holds is recorded with
its reason and skipped; everything else goes on. In strict mode each of those is fatal
(:class:`PluginLoadError`, naming the plugin that failed).

Names, and who keeps them: plugins load in a fixed order, the host's builtins first, then the
entry points of the bundled distribution (the one that ships the host, named like the pluggy
project: ``paralab``), then every other entry point in (name, distribution) order. A plugin
name or a component name (kind, name) belongs to the first plugin in that order that claims
it; any later claimant fails with a reason naming both plugins, distributions and versions.
So a bundled plugin's names can never be taken by a third-party distribution, whatever the
order of ``sys.path``, and between two third-party distributions the first in that order wins.
A refused duplicate entry point is recorded as ``NAME@DISTRIBUTION``. Component names of a
bundled plugin are reserved only while it is loaded (``-p no:NAME`` frees them); its plugin
name always is.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from importlib import metadata
from types import ModuleType, TracebackType
from typing import Any

import pluggy

from paralab_registry.containment import SigintWatch, is_users_interrupt
from paralab_registry.records import (
    ACTIVE,
    DISABLED,
    FAILED,
    INCOMPATIBLE,
    MISSING,
    NameClash,
    PluginRecord,
)
from paralab_registry.settings import LoadSettings
from paralab_registry.validation import RecordError, checked_record


class PluginLoadError(RuntimeError):
    """A plugin failed to load in strict mode; ``record`` is the plugin that failed."""

    def __init__(self, message: str, record: PluginRecord | None = None) -> None:
        super().__init__(message)
        self.record = record


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
    if not isinstance(declared, str):
        # 1.10 as a float is 1.1: a number cannot say which contract it means.
        return (f"PARALAB_API = {declared!r} is a {type(declared).__name__}; it must be a "
                f"string such as \"{host}\"")
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
    :param bundled_distribution: the distribution whose plugins are the host's own (their
        names cannot be taken); default: the distribution named like ``project``.
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
        bundled_distribution: str | None = None,
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
        self.clashes: list[NameClash] = []
        """Every refused claim on a name, for ``check-plugin`` and ``paralab plugins``."""
        self.bundled_distribution = canonical(bundled_distribution or project)
        self._claims: dict[str, PluginRecord] = {}
        self.components: dict[str, dict[str, Any]] = {kind: {} for kind in contribution_hooks}
        self._modules: dict[str, str] = {}
        self._entry_points = entry_points or self._discover
        self._builtins = list(builtins)
        self._loaded = False
        self._trace(self.pm)

    # ----------------------------------------------------------------------------- loading

    def _discover(self) -> list[metadata.EntryPoint]:
        return list(metadata.entry_points(group=self.group))

    def load(self) -> PluginRegistry:
        """Register the builtins, then the selected entry points in load order (once)."""
        if self._loaded:
            return self
        self._loaded = True
        selecting = not self.settings.no_plugins or self.settings.include
        entry_points = sorted(self._entry_points(), key=self._load_order) if selecting else []
        self._register_builtins()
        names = {entry_point.name for entry_point in entry_points}
        self._check_names(names)
        for entry_point in entry_points:
            self._consider(entry_point)
        for name in self.settings.include:
            if name not in names and name not in self._claims:
                self._load_module_path(name)
        return self

    def _load_order(self, entry_point: metadata.EntryPoint) -> tuple[int, str, str, str]:
        """Bundled entry points first, then the rest by (name, distribution): the first
        claimant of a name keeps it."""
        distribution = canonical(_dist_fields(entry_point).get("distribution", ""))
        bundled = distribution == self.bundled_distribution
        return (0 if bundled else 1, entry_point.name, distribution, entry_point.value)

    def _register_builtins(self) -> None:
        version = _version_of(self.bundled_distribution) if self._builtins else ""
        for name, plugin in self._builtins:
            record = PluginRecord(name=name, builtin=True, bundled=True, module=_module_of(plugin),
                                  distribution=self.bundled_distribution, version=version)
            self._claims[name] = record
            self._register(record, plugin)

    def _consider(self, entry_point: metadata.EntryPoint) -> None:
        """Record, refuse or load one entry point."""
        record = _record_of(entry_point)
        record.bundled = canonical(record.distribution) == self.bundled_distribution
        reason = self.settings.disabled_reason(entry_point.name)
        if reason is not None:
            if not self.settings.no_plugins:
                record.status, record.reason = DISABLED, reason
                self._store(record)
            return
        holder = self._claims.get(entry_point.name)
        if holder is not None:
            self._refuse(record, holder, f"the plugin name {entry_point.name!r}")
            return
        self._claims[entry_point.name] = record
        self._load_entry_point(record, entry_point)

    def _store(self, record: PluginRecord) -> None:
        """Keep ``record`` under its name, or ``NAME@DISTRIBUTION`` when the name is taken."""
        if self.records.get(record.name, record) is not record:
            base = f"{record.name}@{record.distribution or record.module or '?'}"
            key, count = base, 1
            while key in self.records:
                count += 1
                key = f"{base}#{count}"
            record.name = key
        self.records[record.name] = record

    def _refuse(self, record: PluginRecord, holder: PluginRecord, what: str) -> None:
        """Fail ``record``, a later claimant of ``what`` that ``holder`` keeps."""
        reason = self._clash_reason(what, holder, record, verb="claimed")
        self.clashes.append(NameClash(what=what, holder=holder, newcomer=record))
        self._fail(record, reason)

    def _check_names(self, found: Iterable[str]) -> None:
        known = set(found) | set(self.records)
        named = list(self.settings.include) + list(self.settings.block)
        named += list(self.settings.only or ())
        for name in named:
            if name in known or (name in self.settings.include and importable(name)):
                continue
            raise UnknownPluginError(
                f"unknown plugin {name!r}{suggest(name, known)}: no entry point and no "
                f"importable module of that name; installed plugins: "
                f"{', '.join(sorted(known)) or 'none'}"
            )

    def _load_entry_point(self, record: PluginRecord, entry_point: metadata.EntryPoint) -> None:
        loaded, plugin = self._contained(record, "import failed", entry_point.load)
        if loaded:
            self._register(record, plugin)

    def _load_module_path(self, module_name: str) -> None:
        record = PluginRecord(name=module_name, module=module_name)
        self._claims[module_name] = record
        loaded, plugin = self._contained(
            record, "import failed", lambda: importlib.import_module(module_name)
        )
        if loaded:
            self._register(record, plugin)

    def _contained(self, record: PluginRecord, what: str | Callable[[], str],
                   call: Callable[[], Any], plugin: object = None) -> tuple[bool, Any]:
        """Run plugin code; ``(True, value)``, or ``(False, None)`` with the plugin failed and
        the reason ``"WHAT: ERROR"`` (``what`` may be computed at failure time).

        Any ``BaseException`` fails only the plugin, except a ``KeyboardInterrupt`` that is
        the user's Ctrl-C (:func:`paralab_registry.containment.is_users_interrupt`)."""
        watch = SigintWatch()
        try:
            with watch:
                return True, call()
        except (_Clash, RecordError) as error:
            reason = str(error)
            failure: BaseException = error
        except BaseException as error:  # noqa: BLE001 - plugin code must not stop the host
            modules = [record.module.partition(":")[0], _module_of(plugin) if plugin else ""]
            if is_users_interrupt(error, watch, modules):
                raise
            stage = what() if callable(what) else what
            reason, failure = f"{stage}: {_short(error)}", error
        if plugin is not None and self.pm.is_registered(plugin):
            self.pm.unregister(plugin)
        self._fail(record, reason, failure)
        return False, None

    def _register(self, record: PluginRecord, plugin: object) -> None:
        read, declared = self._contained(
            record, "reading PARALAB_API failed", lambda: getattr(plugin, "PARALAB_API", None), plugin
        )
        if not read:
            return
        record.api = "" if declared is None else str(declared)
        if not record.builtin:
            reason = api_compatible(declared, self.api_version)
            if reason is not None:
                record.status, record.reason = INCOMPATIBLE, reason
                self._store(record)
                if self.settings.strict:
                    raise PluginLoadError(
                        f"plugin {record.label} is incompatible: {reason}", record
                    )
                return
        registered, _ = self._contained(
            record, "invalid hook implementation",
            lambda: self.pm.register(plugin, name=record.name), plugin,
        )
        if not registered:
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
        """Collect the plugin's contributions; a clash, a malformed record or a raising hook
        fails the plugin (and unregisters it), leaving everything indexed before intact."""
        current = {"hook": "contribution hook"}
        contributed: dict[str, dict[str, Any]] = {}

        def collect() -> None:
            for kind, hook_name in self.contribution_hooks.items():
                current["hook"] = f"contribution hook {hook_name} failed"
                caller = getattr(self.pm.hook, hook_name)
                for impl in caller.get_hookimpls():
                    if impl.plugin_name == record.name:
                        self._collect(record, kind, hook_name, impl.function() or (), contributed)

        indexed, _ = self._contained(record, lambda: current["hook"], collect, plugin)
        if not indexed:
            return
        for kind, specs in contributed.items():
            self.components[kind].update(specs)
        record.contributions = {kind: sorted(specs) for kind, specs in contributed.items()}
        record.hooks = sorted(
            name for name, caller in vars(self.pm.hook).items()
            if name.startswith(self.project + "_")
            and any(impl.plugin_name == record.name for impl in caller.get_hookimpls()))
        record.missing = _missing_requirements(contributed)
        record.status = MISSING if record.missing else ACTIVE
        if record.missing:
            record.reason = "; ".join(record.missing)
        self._store(record)
        self._modules[record.name] = record.module.partition(":")[0] or _module_of(plugin)

    def _collect(self, record: PluginRecord, kind: str, hook_name: str, specs: Iterable[Any],
                 contributed: dict[str, dict[str, Any]]) -> None:
        """Check each record ``hook_name`` yielded and claim its (kind, name)."""
        mine = contributed.setdefault(kind, {})
        for index, spec in enumerate(specs):
            changes = checked_record(spec, kind=kind, hook=hook_name, index=index)
            if spec.name in mine:
                raise RecordError(f"{hook_name} yields {kind} {spec.name!r} twice")
            taken = self.components[kind].get(spec.name)
            if taken is not None:
                holder = self.records.get(taken.provider) or PluginRecord(name=taken.provider)
                what = f"{kind} {spec.name!r}"
                self.clashes.append(NameClash(what=what, holder=holder, newcomer=record))
                raise _Clash(self._clash_reason(what, holder, record))
            mine[spec.name] = replace(spec, **changes, provider=record.name)

    def _clash_reason(self, what: str, holder: PluginRecord, newcomer: PluginRecord,
                      verb: str = "contributed") -> str:
        """Both plugins with distribution and version, who keeps the name and why."""
        rule = (
            f"bundled with {self.bundled_distribution}, so it always keeps its names"
            if holder.bundled
            else "first in load order: bundled plugins, then by name and distribution"
        )
        return (
            f"{what} is {verb} by both {holder.label} and {newcomer.label}; "
            f"{holder.name} keeps it ({rule}), {newcomer.label} is refused"
        )

    def _fail(self, record: PluginRecord, reason: str, error: BaseException | None = None) -> None:
        record.status, record.reason = FAILED, reason
        self._store(record)
        if self.settings.strict:
            raise PluginLoadError(f"plugin {record.label} failed: {reason}", record) from error

    def add(self, name: str, plugin: object) -> PluginRecord:
        """Register a plugin object at run time (tests, notebooks) through the same checks as
        an entry point: API version, hook validation, contribution indexing.

        :raises PluginLoadError: the object would be ignored (no or an incompatible
            ``PARALAB_API``, hooks that match no spec, ``paralab_*`` methods not marked
            ``@hookimpl``, a name clash); it is not registered. An entry point in that state
            is listed with its reason instead, since nobody called for it by hand."""
        self.load()
        if name in self.records:
            raise ValueError(f"a plugin named {name!r} is already registered")
        unmarked = unmarked_hooks(plugin, self.project, self.pm)
        if unmarked:
            raise PluginLoadError(
                f"plugin {name!r}: {unmarked}; pluggy would ignore them", None)
        record = PluginRecord(name=name, module=_module_of(plugin))
        self._register(record, plugin)
        record = self.records[name]
        if record.status in (FAILED, INCOMPATIBLE):
            self.remove(name)
            raise PluginLoadError(f"plugin {name!r} was not added: {record.reason}", record)
        return record

    def check_callback(self, name: str, callback: object) -> None:
        """Raise :class:`PluginLoadError` unless ``callback`` is a valid per-run hook object:
        a compatible ``PARALAB_API``, every ``paralab_*`` method a marked implementation of a
        lifecycle hook (a callback contributes no components: that takes a plugin)."""
        reason = api_compatible(getattr(callback, "PARALAB_API", None), self.api_version)
        if reason is not None:
            raise PluginLoadError(f"{name}: {reason}; set PARALAB_API = \"{self.api_version}\"")
        unmarked = unmarked_hooks(callback, self.project, self.pm)
        if unmarked:
            raise PluginLoadError(f"{name}: {unmarked}; pluggy would ignore them")
        known = {hook for hook, caller in vars(self.pm.hook).items()
                 if hook.startswith(self.project + "_") and caller.has_spec()}
        marked = [attr for attr in dir(callback) if attr.startswith(self.project + "_")]
        unknown = [attr for attr in marked if attr not in known]
        if unknown:
            raise PluginLoadError(f"{name}: implements hooks that match no spec: "
                                  + "; ".join(f"{h}{suggest(h, known)}" for h in unknown))
        transforming = sorted(h for h in marked if h in MIDDLEWARE_HOOKS)
        if transforming:
            raise PluginLoadError(
                f"{name}: callbacks observe a run; {', '.join(transforming)} transforms what "
                "training passes through middleware, which only protocols that call it would "
                "run (elsewhere it would silently do nothing): declare it as middleware "
                "(a MiddlewareSpec) and name it in the spec's middleware")
        contributing = sorted(set(marked) & set(self.contribution_hooks.values()))
        if contributing:
            raise PluginLoadError(
                f"{name}: callbacks observe a run; {', '.join(contributing)} contribute "
                "components, which a plugin registered with the registry does")

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
        self._trace(pm)
        return pm

    def _trace(self, pm: pluggy.PluginManager) -> None:
        """Print every hook call to stderr when tracing is on (``PARALAB_TRACE_HOOKS=1``)."""
        if self.settings.trace:
            pm.trace.root.setwriter(lambda message: sys.stderr.write(message))
            pm.enable_tracing()

    # ----------------------------------------------------------------------------- queries

    def plugins(self, *, include_builtin: bool = False) -> list[PluginRecord]:
        """Every known plugin, in load order; the builtins only when asked."""
        self.load()
        return [
            record for record in self.records.values() if include_builtin or not record.builtin
        ]

    def plugin(self, name: str) -> PluginRecord:
        """The record of plugin ``name``: a canonical name, ``NAME@DISTRIBUTION`` (a refused
        duplicate) or the name of a distribution that provides exactly one plugin."""
        self.load()
        if name in self.records:
            return self.records[name]
        provided = [
            record for record in self.records.values()
            if not record.builtin and record.distribution
            and canonical(record.distribution) == canonical(name)
        ]
        if len(provided) == 1:
            return provided[0]
        if provided:
            raise UnknownPluginError(
                f"distribution {name!r} provides several plugins, name one: "
                f"{', '.join(record.name for record in provided)}"
            )
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


def canonical(distribution: str) -> str:
    """A distribution name as packaging compares them (PEP 503: ``Paralab_X`` is ``paralab-x``)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except Exception:  # noqa: BLE001 - not installed as a distribution (a source checkout)
        return ""


def _record_of(entry_point: metadata.EntryPoint) -> PluginRecord:
    return PluginRecord(name=entry_point.name, module=entry_point.value, **_dist_fields(entry_point))


def importable(module_name: str) -> bool:
    """Whether ``NAME`` can be imported (found on sys.path, not imported; dotted or not):
    ``-p NAME`` and the components' declared requirements ask it."""
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):  # a parent package that is missing, or an empty name
        return False


def _missing_requirements(contributed: dict[str, dict[str, Any]]) -> list[str]:
    """``"missing captum (auditor attributions, method = 'integrated_gradients'): pip install
    'paralab[explain]'"`` for each component whose declared modules are not installed
    (looked up with ``importlib.util.find_spec``: nothing is imported)."""
    lines = []
    for kind, specs in sorted(contributed.items()):
        for name, spec in sorted(specs.items()):
            always = [m for m in getattr(spec, "requires", ()) if not importable(m)]
            if always:
                lines.append(f"missing {', '.join(always)} ({kind} {name})"
                             + (f": {spec.install}" if getattr(spec, "install", "") else ""))
            for option, by_value in (getattr(spec, "requires_when", None) or {}).items():
                for value, modules in by_value.items():
                    absent = [m for m in modules if not importable(m) and m not in always]
                    if absent:
                        lines.append(f"missing {', '.join(absent)} ({kind} {name} with "
                                     f"{option} = {value!r})"
                                     + (f": {spec.install}" if getattr(spec, "install", "")
                                        else ""))
    return lines


MIDDLEWARE_HOOKS = ("paralab_process_update", "paralab_process_gradients")
"""The hooks a run's middleware transforms through (a protocol calls them or not)."""


def unmarked_hooks(plugin: object, project: str, pm: pluggy.PluginManager) -> str:
    """``"paralab_after_phase is not marked @paralab.hookimpl"`` for methods named like a hook
    that pluggy would silently skip ("" when there are none)."""
    names = []
    for attr in dir(plugin):
        if not attr.startswith(project + "_") or attr.isupper():
            continue
        method = getattr(plugin, attr, None)
        if callable(method) and pm.parse_hookimpl_opts(plugin, attr) is None:
            names.append(attr)
    if not names:
        return ""
    return (f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} not marked "
            f"@{project}.hookimpl")
