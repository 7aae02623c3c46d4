"""Experiment specs: a TOML file or a Python object naming one component of each kind.

A spec is checked against the registry before anything runs. Every problem is reported at
once, each with its field path, the bad value, the valid choices (with a "did you mean") and
the plugin that provides each choice.

TOML form (every component is a name, or a table with ``name`` and its options)::

    name = "digits-mlp"
    seed = 0
    device = "auto"            # "cpu", "cuda", "cuda:1" or "auto" (CUDA when present)
    output = "runs"            # the run's folder is output/name

    dataset = "digits"
    model = { name = "mlp", hidden = [256, 256] }
    protocol = { name = "supervised", epochs = 10, batch_size = 32 }
    method = { name = "sgd", lr = 0.05 }
    metrics = ["accuracy", "loss"]
    auditors = []
    losses = []
    middleware = []
    trackers = []              # "csv", "tensorboard", "mlflow" (the paralab_tracking plugin)
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from paralab.components import supports
from paralab.options import Option
from paralab_registry import suggest

SINGLE = ("dataset", "model", "protocol", "method")
MANY = {"metrics": "metric", "auditors": "auditor", "losses": "loss", "middleware": "middleware",
        "trackers": "tracker"}
SETTINGS = ("name", "seed", "device", "output", "eval_batch_size", "on_nan", "description",
            "save_model", "checkpoint_every")
SETTING_OPTIONS = {
    "eval_batch_size": Option(4096, type=int, ge=1, help="rows per batch when evaluating"),
    "on_nan": Option("fail", choices=("fail", "warn"),
                     help="a NaN/inf training loss or parameter fails the run, or only warns"),
    "name": Option("experiment", type=str, min_length=1),
    "output": Option("runs", type=(str, None)),
    "description": Option("", type=str),
    "save_model": Option(True, type=bool,
                         help="save the trained model's weights in the run folder (model.safetensors)"),
    "checkpoint_every": Option(0, type=int, ge=0,
                               help="save a checkpoint every N phases, for `paralab resume` (0: never)"),
}
"""Declared constraints of the spec's own settings (``seed`` and ``device`` are checked apart)."""


class SpecError(ValueError):
    """An experiment spec is invalid; ``problems`` lists each one."""

    def __init__(self, problems: Sequence[str], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"invalid experiment spec{where}:\n{lines}")


@dataclass(frozen=True)
class ComponentRef:
    """One component of a spec: its registry name and the options passed to its factory."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: Any, path: str) -> ComponentRef:
        if isinstance(value, ComponentRef):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            if "name" not in value or not isinstance(value["name"], str):
                raise SpecError([f"{path}: a component table needs name = '...', got {dict(value)}"])
            options = {key: item for key, item in value.items() if key != "name"}
            return cls(value["name"], options)
        raise SpecError([f"{path}: expected a name or a table with a name, got {value!r}"])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dict(self.options)}


@dataclass(frozen=True)
class ExperimentSpec:
    """What one run does. Build it in Python or read it with :meth:`from_toml`.

    >>> spec = ExperimentSpec(dataset="digits", model="mlp", protocol="supervised", method="sgd")
    >>> spec.method.name
    'sgd'
    """

    dataset: ComponentRef | str | Mapping[str, Any]
    model: ComponentRef | str | Mapping[str, Any] | None = None
    protocol: ComponentRef | str | Mapping[str, Any] = "supervised"
    method: ComponentRef | str | Mapping[str, Any] = "sgd"
    metrics: Sequence[ComponentRef | str | Mapping[str, Any]] = ("accuracy", "loss")
    auditors: Sequence[ComponentRef | str | Mapping[str, Any]] = ()
    losses: Sequence[ComponentRef | str | Mapping[str, Any]] = ()
    middleware: Sequence[ComponentRef | str | Mapping[str, Any]] = ()
    trackers: Sequence[ComponentRef | str | Mapping[str, Any]] = ()
    name: str = "experiment"
    seed: int = 0
    device: str = "auto"
    output: str | None = "runs"
    eval_batch_size: int = 4096
    on_nan: str = "fail"
    description: str = ""
    save_model: bool = True
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        problems: list[str] = []
        for key in SINGLE:
            if key == "model" and self.model is None:
                continue  # allowed for protocols that declare uses_model=False
            try:
                object.__setattr__(self, key, ComponentRef.parse(getattr(self, key), key))
            except SpecError as error:
                problems += error.problems
        for key in MANY:
            value = getattr(self, key)
            if isinstance(value, (str, Mapping, ComponentRef)):
                value = [value]
            if value is not None and not isinstance(value, (list, tuple)):
                problems.append(f"{key}: expected a list of components (names or tables), got "
                                f"{type(value).__name__} {value!r}")
                value = ()
            refs = []
            for position, item in enumerate(value or ()):
                try:
                    refs.append(ComponentRef.parse(item, f"{key}[{position}]"))
                except SpecError as error:
                    problems += error.problems
            object.__setattr__(self, key, tuple(refs))
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            problems.append(f"seed: expected an integer, got {self.seed!r}")
        elif not 0 <= self.seed < 2**63:
            problems.append(f"seed = {self.seed}: must be in [0, 2**63) (torch's seed range)")
        if not isinstance(self.device, str) or not _valid_device(self.device):
            problems.append(
                f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"
            )
        for key, option in SETTING_OPTIONS.items():
            problem = option.problem(getattr(self, key))
            if problem:
                problems.append(f"{key} = {getattr(self, key)!r}: {problem}")
        if isinstance(self.name, str):
            problem = name_problem(self.name)
            if problem:
                problems.append(f"name = {self.name!r}: {problem}")
        if problems:
            raise SpecError(problems)

    # ----------------------------------------------------------------------------- reading

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "") -> ExperimentSpec:
        allowed = set(SINGLE) | set(MANY) | set(SETTINGS)
        unknown = [key for key in data if key not in allowed]
        problems = [
            f"{key}: unknown field{suggest(key, allowed)}; fields: {', '.join(sorted(allowed))}"
            for key in unknown
        ]
        missing = [key for key in ("dataset",) if key not in data]
        problems += [f"{key}: required field is missing" for key in missing]
        if problems:
            raise SpecError(problems, source)
        try:
            return cls(**{key: value for key, value in data.items() if key in allowed})
        except SpecError as error:
            raise SpecError(error.problems, source) from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> ExperimentSpec:
        """Read a spec file; its ``name`` defaults to the file's stem."""
        return cls.from_dict(cls.read_toml(path), str(path))

    @staticmethod
    def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
        """A spec file's table, its ``name`` defaulting to the file's stem (not checked)."""
        path = Path(path)
        data = read_toml_file(path, "a spec is a TOML file", "spec")
        data.setdefault("name", path.stem)
        return data

    @classmethod
    def load(cls, value: Any, overrides: Sequence[str] = (), registry: Any = None) -> ExperimentSpec:
        """A spec from a spec, a mapping or a TOML path, with ``overrides`` applied
        (``["method.lr=0.01"]``, see :mod:`paralab.overrides`)."""
        if not overrides:
            return cls.coerce(value)
        from paralab.overrides import apply_overrides

        source = ""
        if isinstance(value, ExperimentSpec):
            data = value.to_dict()
        elif isinstance(value, Mapping):
            data = dict(value)
        elif isinstance(value, (str, os.PathLike)):
            source = str(value)
            data = cls.read_toml(value)
        else:
            raise TypeError(f"expected an ExperimentSpec, a dict or a TOML path, got {type(value)}")
        try:
            data = apply_overrides(data, overrides, registry)
        except SpecError as error:
            raise SpecError(error.problems, source) from None
        return cls.from_dict(data, source)

    @classmethod
    def coerce(cls, value: Any) -> ExperimentSpec:
        """A spec from a spec, a mapping or a path to a TOML file."""
        if isinstance(value, ExperimentSpec):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        if isinstance(value, (str, os.PathLike)):
            return cls.from_toml(value)
        raise TypeError(f"expected an ExperimentSpec, a dict or a TOML path, got {type(value)}")

    def replace(self, **changes: Any) -> ExperimentSpec:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (what ``result.json`` stores and TOML can hold)."""
        data: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in SINGLE:
                data[item.name] = None if value is None else value.to_dict()
            elif item.name in MANY:
                data[item.name] = [ref.to_dict() for ref in value]
            else:
                data[item.name] = value
        return data

    def to_toml(self) -> str:
        """The spec as a TOML file that :meth:`from_toml` reads back to an equal spec."""
        from paralab.overrides import toml_value as _toml

        lines, tables = [], []
        for key, value in self.to_dict().items():
            if value is None:
                continue  # TOML has no null: an absent model / output is the default
            if key in SINGLE:
                tables.append(f"\n[{key}]\n" + "".join(f"{k} = {_toml(v)}\n"
                                                       for k, v in value.items()))
            else:
                lines.append(f"{key} = {_toml(value)}")
        text = "\n".join(lines) + "\n" + "".join(tables)
        if self.output is None:
            text = "# output = None: this run writes no folder (set it in Python)\n" + text
        return text

    def components(self) -> list[tuple[str, str, ComponentRef]]:
        """``(field path, kind, ref)`` for every component the spec names."""
        named = [(key, key, getattr(self, key)) for key in SINGLE if getattr(self, key) is not None]
        for key, kind in MANY.items():
            named += [(f"{key}[{i}]", kind, ref) for i, ref in enumerate(getattr(self, key))]
        return named

    # ---------------------------------------------------------------------------- checking

    def validate(self, registry: Any) -> None:
        """Check names, options and protocol/method pairing; raise :class:`SpecError`."""
        registry.load()
        problems: list[str] = []
        specs: dict[str, Any] = {}
        for path, kind, ref in self.components():
            if ref.name not in registry.components.get(kind, {}):
                problems.append(f"{path}.name = {ref.name!r}: {registry.unknown_message(kind, ref.name)}")
                continue
            spec = registry.components[kind][ref.name]
            specs[path] = spec
            problems += _check_options(path, ref, spec)
            missing = spec.missing_modules(ref.options) if hasattr(spec, "missing_modules") else []
            if missing:
                problems.append(
                    f"{path}.name = {ref.name!r}: {kind} {ref.name!r} of plugin {spec.provider} "
                    f"needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                    f"not installed; {spec.install or 'install ' + ', '.join(missing)}"
                )
        method, protocol = specs.get("method"), specs.get("protocol")
        if self.model is None and protocol is not None and protocol.uses_model:
            problems.append(
                f"model: required by protocol {protocol.name!r} ({protocol.provider}); name one, "
                f"e.g. model = \"mlp\" (see `paralab list model`)"
            )
        if self.model is not None and protocol is not None and not protocol.uses_model:
            problems.append(
                f"model.name = {self.model.name!r}: protocol {protocol.name!r} "
                f"({protocol.provider}) trains no torch model, so the model would never be "
                f"used; remove `model` from the spec"
            )
        if method is not None and protocol is not None and not supports(method, protocol):
            pairs = [
                f"{m.name} ({m.provider})"
                for m in registry.components["method"].values()
                if supports(m, protocol)
            ]
            problems.append(
                f"method.name = {method.name!r}: method {method.name!r} of plugin "
                f"{method.provider} supports protocols {list(method.protocols)}"
                + (f" and any accepting {method.family!r} methods" if method.family else "")
                + f", not {protocol.name!r}; methods for {protocol.name!r}: {', '.join(pairs) or 'none'}"
            )
        if protocol is not None:
            problems += _ignored_components(self, protocol, specs, registry)
        if self.checkpoint_every and self.output is None:
            problems.append(
                f"checkpoint_every = {self.checkpoint_every}: output = None writes no run "
                f"folder, so no checkpoint would be saved; set output or checkpoint_every = 0"
            )
        if protocol is not None and self.checkpoint_every and not protocol.resumable:
            users = [f"{p.name} ({p.provider})" for p in registry.components["protocol"].values()
                     if p.resumable]
            problems.append(
                f"checkpoint_every = {self.checkpoint_every}: protocol {protocol.name!r} "
                f"({protocol.provider}) cannot continue from a checkpoint, so `paralab resume` "
                f"could not use one; resumable protocols: {', '.join(users) or 'none'}"
            )
        if problems:
            raise SpecError(problems)


_NAME_BYTES = 200
"""Room left in a file name of 255 bytes for the ``-N`` suffix of a repeated run."""


def read_toml_file(path: Path, kind: str, noun: str) -> dict[str, Any]:
    """A TOML file's table; every way it cannot be read is a :class:`SpecError` naming the
    file (``kind`` says what the file should be, ``noun`` what it is called)."""
    if not path.exists():
        raise SpecError([f"no such {noun} file: {path}"])
    if not path.is_file():  # a folder, or a FIFO that would block the read
        raise SpecError([f"{path} is not a regular file: {kind}"])
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise SpecError([f"not UTF-8 text (TOML files are UTF-8): {error}"], str(path)) from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError([f"not valid TOML: {error}"], str(path)) from None
    except RecursionError:
        raise SpecError(["TOML nested too deeply to read"], str(path)) from None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be the run's folder: it must be one plain path component (no
    ``/``, ``\\``, NUL, ``.`` or ``..``), so that it stays inside ``output``."""
    if "\x00" in name:
        return "contains a NUL character"
    if "/" in name or "\\" in name:
        return "must be one folder name, without '/' or '\\' (it names a folder inside output)"
    if name.strip() in (".", ".."):
        return "'.' and '..' are not folder names"
    if len(name.encode("utf-8")) > _NAME_BYTES:
        return f"longer than {_NAME_BYTES} bytes (a folder name holds 255)"
    return None


def _valid_device(device: str) -> bool:
    if device in ("auto", "cpu", "cuda", "mps"):
        return True
    head, _, tail = device.partition(":")
    return head == "cuda" and tail.isdigit()


def _check_options(path: str, ref: ComponentRef, spec: Any) -> list[str]:
    """Every option of ``ref`` against its declaration in ``spec``: unknown names, types,
    bounds, choices, NaN and infinity; one message per problem, quoting the constraint."""
    problems = []
    allowed = spec.declared_options()
    if getattr(spec, "kind", "") == "dataset":
        allowed.setdefault("root", Option(None, type=(str, None)))
    for key, value in ref.options.items():
        if key not in allowed:
            valid = ", ".join(sorted(allowed)) or "none"
            problems.append(
                f"{path}.{key}: {spec.kind} {ref.name!r} ({spec.provider}) has no option "
                f"{key!r}{suggest(key, allowed)}; options: {valid}"
            )
            continue
        problem = allowed[key].problem(value)
        if problem:
            problems.append(
                f"{path}.{key} = {value!r}: {problem} ({spec.kind} {ref.name!r} of "
                f"{spec.provider or '?'}; see `paralab show {spec.kind} {ref.name}`)"
            )
    problems += _unused_options(path, ref, spec)
    for key, option in allowed.items():
        if option.required and key not in ref.options:
            problems.append(
                f"{path}.{key}: {spec.kind} {ref.name!r} ({spec.provider}) needs this option "
                f"({option.constraint()}{'; ' + option.help if option.help else ''}), e.g. "
                f"{{ name = \"{ref.name}\", {key} = ... }}"
            )
    return problems


def _unused_options(path: str, ref: ComponentRef, spec: Any) -> list[str]:
    """Options the spec sets that the component's ``used_when`` says do nothing with the other
    options' values (``data_epochs`` with ``randomization = "full"``)."""
    check = getattr(spec, "unused_options", None)  # a Component; a bare declaration has none
    return check(ref.options, path) if callable(check) else []


def _ignored_components(
    spec: ExperimentSpec, protocol: Any, specs: Mapping[str, Any], registry: Any
) -> list[str]:
    """Loss terms and middleware the protocol would never apply: a run that lists them would
    record them as if they had acted (DP that adds no noise)."""
    problems = []
    protocols = list(registry.components.get("protocol", {}).values())
    if not protocol.applies_losses:
        users = [f"{p.name} ({p.provider})" for p in protocols if p.applies_losses]
        for position, ref in enumerate(spec.losses):
            if f"losses[{position}]" in specs:
                problems.append(
                    f"losses[{position}] = {ref.name!r}: protocol {protocol.name!r} "
                    f"({protocol.provider}) adds no loss terms to what it trains, so "
                    f"{ref.name!r} would never act; protocols that apply loss terms: "
                    f"{', '.join(users) or 'none'}"
                )
    method = specs.get("method")
    if protocol.applies_losses and method is not None and not method.applies_losses:
        users = [f"{m.name} ({m.provider})" for m in registry.components.get("method", {}).values()
                 if m.applies_losses and supports(m, protocol)]
        for position, ref in enumerate(spec.losses):
            if f"losses[{position}]" in specs:
                problems.append(
                    f"losses[{position}] = {ref.name!r}: method {method.name!r} "
                    f"({method.provider}) adds no loss terms to what it trains, so {ref.name!r} "
                    f"would never act; methods for {protocol.name!r} that do: "
                    f"{', '.join(users) or 'none'}"
                )
    for position, ref in enumerate(spec.middleware):
        middleware = specs.get(f"middleware[{position}]")
        if middleware is None:
            continue
        hooks = set(middleware.hooks)
        if hooks & set(protocol.middleware_hooks):
            continue
        users = [f"{p.name} ({p.provider})" for p in protocols if hooks & set(p.middleware_hooks)]
        problems.append(
            f"middleware[{position}] = {ref.name!r}: middleware {ref.name!r} "
            f"({middleware.provider}) acts through {', '.join(sorted(hooks)) or 'no hook'}, which "
            f"protocol {protocol.name!r} ({protocol.provider}) never calls, so it would never "
            f"act; protocols that call it: {', '.join(users) or 'none'}"
        )
    return problems
