"""Type checks of the records a contribution hook yields, at indexing.

A record that passes indexing is shown by ``paralab list`` and looked up by every run, so a
malformed one (``name=('t',)``, ``options=[...]``) used to be marked active and then crash
those commands with a raw ``TypeError``. Every field of a record is checked here against its
dataclass annotation, read generically (:func:`dataclasses.fields` and
:func:`typing.get_type_hints`), so the registry needs no knowledge of the host's spec classes
and a field added to a spec is checked without a change here. Dataclass values inside a record
(an ``Option`` in ``options``) are checked the same way.

Two fields have a rule beyond their type: ``name`` must be a non-empty string of letters,
digits, ``_`` and ``-`` (a spec names it in TOML, the CLI prints it in columns), and a
``factory`` given as a string must look like ``"package.module:attribute"``. A declared
``tuple[str, ...]`` also accepts a list of strings (normalised to a tuple), never a bare string.
Finally, when the record has a ``describe()`` method (as the host's specs do), its result must
serialise to JSON, because ``paralab list --json`` prints it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
"""A component name: letters, digits, ``_`` and ``-`` (``sgd``, ``sgd-nesterov``)."""

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
FACTORY_PATTERN = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}(\.{_IDENTIFIER})*")
"""A factory named by a string: ``package.module:attribute``."""

_MAX_DEPTH = 8
"""How deep nested dataclasses and containers are followed (an Option's ``items``...)."""


class RecordError(Exception):
    """A contribution record has a field of the wrong type or shape."""


def checked_record(record: object, *, kind: str, hook: str, index: int) -> dict[str, Any]:
    """Check every field of ``record`` (the ``index``-th item ``hook`` yielded); return the
    field values to replace (lists normalised to tuples), or raise :class:`RecordError`
    naming the hook, the record and the field."""
    where = _where(record, hook, index)
    if getattr(record, "kind", None) != kind:
        raise RecordError(
            f"{where}: {hook} must yield {kind} specs, got {type(record).__name__} "
            f"of kind {getattr(record, 'kind', None)!r}"
        )
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        raise RecordError(f"{where}: a {kind} spec must be a dataclass instance, got {record!r}")
    hints = _hints(type(record))
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        hint = hints.get(field.name, Any)
        if _is_str_tuple(hint) and isinstance(value, list):
            value = changes[field.name] = tuple(value)
        problem = _field_problem(field.name, value, hint)
        if problem is not None:
            raise RecordError(f"{where}: field {field.name!r} {problem}")
    _check_describe(record, where)
    return changes


def _where(record: object, hook: str, index: int) -> str:
    name = getattr(record, "name", None)
    named = f" ({name!r})" if isinstance(name, str) else ""
    return f"{hook} record #{index}{named}"


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The class's resolved annotations, once per class: ``get_type_hints`` evaluates every
    string annotation (~0.5 ms a call), and listing plugins checks hundreds of records."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an unresolvable annotation is checked as Any
        return {}


def _is_str_tuple(hint: Any) -> bool:
    return typing.get_origin(hint) is tuple and typing.get_args(hint) == (str, Ellipsis)


def _field_problem(name: str, value: Any, hint: Any) -> str | None:
    problem = _type_problem(value, hint, 0)
    if problem is not None:
        return problem
    if name == "name" and not (isinstance(value, str) and NAME_PATTERN.fullmatch(value)):
        return f"must be a non-empty name of letters, digits, '_' or '-', got {value!r}"
    if name == "factory" and isinstance(value, str) and not FACTORY_PATTERN.fullmatch(value):
        return f"must look like 'package.module:attribute' (or be a callable), got {value!r}"
    return None


def _type_problem(value: Any, hint: Any, depth: int) -> str | None:
    """Why ``value`` does not fit the annotation ``hint`` (a sentence), or None."""
    if depth > _MAX_DEPTH or hint is Any or isinstance(hint, typing.TypeVar):
        return None
    origin = typing.get_origin(hint)
    if origin is typing.ClassVar:
        return None
    if origin is typing.Union or isinstance(hint, types.UnionType):
        options = typing.get_args(hint)
        if any(_type_problem(value, option, depth + 1) is None for option in options):
            return None
        return f"must be {_describe(hint)}, got {_shown(value)}"
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        return None if value in allowed else f"must be one of {allowed!r}, got {_shown(value)}"
    if origin is not None:
        return _generic_problem(value, hint, origin, depth)
    if hint is None or hint is type(None):
        return None if value is None else f"must be None, got {_shown(value)}"
    if not isinstance(hint, type):
        return None
    if not _fits(value, hint):
        return f"must be {_describe(hint)}, got {_shown(value)}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass_problem(value, depth)
    return None


def _fits(value: Any, hint: type) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    try:
        return isinstance(value, hint)
    except TypeError:
        return True


def _generic_problem(value: Any, hint: Any, origin: Any, depth: int) -> str | None:
    args = typing.get_args(hint)
    if origin is Callable or origin is typing.Callable:
        return None if callable(value) else f"must be callable, got {_shown(value)}"
    if isinstance(origin, type) and issubclass(origin, Mapping):
        if not isinstance(value, Mapping):
            return f"must be {_describe(hint)}, got {_shown(value)}"
        key_hint, value_hint = args if len(args) == 2 else (Any, Any)
        for key, item in value.items():
            problem = _type_problem(key, key_hint, depth + 1)
            if problem is not None:
                return f"has a key {problem}"
            problem = _type_problem(item, value_hint, depth + 1)
            if problem is None and dataclasses.is_dataclass(item) and not isinstance(item, type):
                problem = _dataclass_problem(item, depth + 1)
            if problem is not None:
                return f"[{key!r}] {problem}"
        return None
    if origin is tuple:
        return _tuple_problem(value, hint, args, depth)
    if isinstance(origin, type) and issubclass(origin, Sequence):
        if not isinstance(value, origin) or isinstance(value, (str, bytes)):
            return f"must be {_describe(hint)}, got {_shown(value)}"
        return _items_problem(value, args[0] if args else Any, depth)
    if isinstance(origin, type) and not _fits(value, origin):
        return f"must be {_describe(hint)}, got {_shown(value)}"
    return None


def _tuple_problem(value: Any, hint: Any, args: tuple[Any, ...], depth: int) -> str | None:
    if not isinstance(value, tuple):
        return f"must be {_describe(hint)}, got {_shown(value)}"
    if len(args) == 2 and args[1] is Ellipsis:
        return _items_problem(value, args[0], depth)
    if args and len(args) != len(value):
        return f"must be {_describe(hint)}, got {_shown(value)}"
    for position, (item, item_hint) in enumerate(zip(value, args)):
        problem = _type_problem(item, item_hint, depth + 1)
        if problem is not None:
            return f"[{position}] {problem}"
    return None


def _items_problem(value: Sequence[Any], item_hint: Any, depth: int) -> str | None:
    for position, item in enumerate(value):
        problem = _type_problem(item, item_hint, depth + 1)
        if problem is not None:
            return f"[{position}] {problem}"
    return None


def _dataclass_problem(value: Any, depth: int) -> str | None:
    """A nested dataclass (an ``Option``) is checked field by field too."""
    hints = _hints(type(value))
    for field in dataclasses.fields(value):
        problem = _type_problem(getattr(value, field.name), hints.get(field.name, Any), depth + 1)
        if problem is not None:
            return f"({type(value).__name__}.{field.name}) {problem}"
    return None


def _check_describe(record: object, where: str) -> None:
    describe = getattr(record, "describe", None)
    if not callable(describe):
        return
    try:
        json.dumps(describe())
    except Exception as error:  # noqa: BLE001 - a record paralab list cannot print
        raise RecordError(
            f"{where}: describe() (what paralab list prints) fails: "
            f"{type(error).__name__}: {error}"
        ) from error


def _describe(hint: Any) -> str:
    if hint is type(None) or hint is None:
        return "None"
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return {float: "a number", Mapping: "a mapping"}.get(hint, f"a {hint.__name__}")
    origin = typing.get_origin(hint)
    if origin is typing.Union or isinstance(hint, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(hint))
    args = typing.get_args(hint)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"a tuple of {_plural(args[0])}"
    if origin is Callable:
        return "a callable"
    if isinstance(origin, type) and issubclass(origin, Mapping):
        key, item = args if len(args) == 2 else (Any, Any)
        return f"a mapping of {_plural(key)} to {_plural(item)}"
    if isinstance(origin, type) and issubclass(origin, Sequence):
        return f"a sequence of {_plural(args[0] if args else Any)}"
    return str(hint)


def _plural(hint: Any) -> str:
    if hint is Any:
        return "values"
    if isinstance(hint, type):
        return {str: "strings", float: "numbers", int: "integers"}.get(hint, hint.__name__)
    return _describe(hint)


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
