"""Options declared once: a default and the values a component accepts.

A component lists its options as ``{"name": Option(default, ...)}`` (a bare default is short
for ``Option(default)``). That one declaration feeds everything that needs it: the spec check
(every problem of a spec reported at once, before any folder exists), ``paralab list``,
``paralab show KIND NAME``, the generated docs and the property-based test that draws values
outside each declaration. Constraints follow scikit-learn's ``_parameter_constraints``: a
value must match one of the declared types and then every declared bound.

Standard library only: the registry and the CLI read declarations without importing torch.

>>> lr = Option(0.05, gt=0, help="step size")
>>> lr.problem(0.1) is None
True
>>> lr.problem(float("nan"))
'must be a finite number, got nan'
>>> lr.problem(0)
'must be > 0, got 0'
>>> Option(None, type=(int, None)).problem("x")
"expected int or None, got str 'x'"
>>> Option("sgd", choices=("sgd", "adam")).problem("adma")
"expected one of 'sgd', 'adam', got 'adma' (did you mean 'adam'?)"
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TypeSpec = type | None
"""A declared type: ``int``, ``float``, ``str``, ``bool``, ``list``, ``dict``, or ``None``."""

_NAMES = {type(None): "None", list: "list", dict: "table", float: "number"}


def _type_name(kind: TypeSpec) -> str:
    if kind is None:
        return "None"
    return _NAMES.get(kind, kind.__name__)


def _fits(value: Any, kind: TypeSpec) -> bool:
    """Whether ``value`` is of the declared type, as TOML and Python give values.

    An int is a number (``lr = 1``); a bool is never an int or a number; a tuple is a list.
    """
    if kind is None:
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is list:
        return isinstance(value, (list, tuple))
    if kind is dict:
        return isinstance(value, Mapping)
    return isinstance(value, kind)


def _inferred(default: Any) -> tuple[TypeSpec, ...]:
    """The type a bare default declares; ``None`` declares nothing (any value)."""
    if default is None:
        return ()
    for kind in (bool, int, float, str):
        if type(default) is kind:
            return (kind,)
    if isinstance(default, (list, tuple)):
        return (list,)
    if isinstance(default, Mapping):
        return (dict,)
    return (type(default),)


def _repr(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return repr(value)


@dataclass(frozen=True)
class Option:
    """One option: its ``default`` and the values it accepts.

    :param type: the accepted types, one or a tuple (``(int, None)``: an integer or nothing);
        default: the default's type (``float`` for ``0.05``; an ``int`` passes as a number).
    :param gt, ge, lt, le: bounds on a number (or on each number of a list, with ``items``).
    :param finite: reject NaN and infinity (on by default: they are meaningless nearly
        everywhere; set ``finite=False`` where ``inf`` means "no limit").
    :param choices: the only values allowed.
    :param min_length, max_length: bounds on the length of a list or string.
    :param items: the option each element of a list must satisfy.
    :param required: the spec must set it (the default is only a placeholder, not checked).
    :param help: one line for ``paralab show`` and the docs.
    """

    default: Any = None
    type: TypeSpec | tuple[TypeSpec, ...] = ()
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    finite: bool = True
    choices: Sequence[Any] | None = None
    min_length: int | None = None
    max_length: int | None = None
    items: Option | None = None
    required: bool = False
    help: str = ""

    def __post_init__(self) -> None:
        if self.type == ():
            declared: tuple[TypeSpec, ...] = _inferred(self.default)
        elif isinstance(self.type, tuple):
            declared = self.type
        else:
            declared = (self.type,)
        object.__setattr__(self, "type", declared)
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    @property
    def types(self) -> tuple[TypeSpec, ...]:
        """The accepted types; empty when any value goes."""
        assert isinstance(self.type, tuple)
        return self.type

    # ------------------------------------------------------------------------------ checking

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (a sentence quoting the constraint), or ``None``."""
        types = self.types
        if types and not any(_fits(value, kind) for kind in types):
            expected = " or ".join(_type_name(kind) for kind in types)
            return f"expected {expected}, got {type(value).__name__} {_repr(value)}"
        if value is None:
            return None
        if self.choices is not None and value not in self.choices:
            listed = ", ".join(repr(choice) for choice in self.choices)
            hint = ""
            if isinstance(value, str):
                close = difflib.get_close_matches(value, [str(c) for c in self.choices], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"expected one of {listed}, got {_repr(value)}{hint}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return self._number_problem(value)
        if isinstance(value, (list, tuple, str)):
            if self.min_length is not None and len(value) < self.min_length:
                return f"needs at least {self.min_length} entries, got {len(value)}: {value!r}"
            if self.max_length is not None and len(value) > self.max_length:
                return f"takes at most {self.max_length} entries, got {len(value)}: {value!r}"
        if isinstance(value, (list, tuple)) and self.items is not None:
            for position, item in enumerate(value):
                problem = self.items.problem(item)
                if problem:
                    return f"entry [{position}] {problem}"
        return None

    def _number_problem(self, value: float) -> str | None:
        if isinstance(value, float) and math.isnan(value):
            return "must be a number, got nan" if not self.finite else (
                "must be a finite number, got nan")
        if self.finite and isinstance(value, float) and math.isinf(value):
            return f"must be a finite number, got {value}"
        bounds = (("gt", ">", lambda a, b: a > b), ("ge", ">=", lambda a, b: a >= b),
                  ("lt", "<", lambda a, b: a < b), ("le", "<=", lambda a, b: a <= b))
        for attribute, sign, holds in bounds:
            bound = getattr(self, attribute)
            if bound is not None and not holds(value, bound):
                return f"must be {sign} {bound:g}, got {_repr(value)}"
        return None

    # ---------------------------------------------------------------------------- describing

    def constraint(self) -> str:
        """The constraint in words, as ``paralab show`` and the docs print it."""
        parts = []
        if self.types:
            parts.append(" or ".join(_type_name(kind) for kind in self.types))
        else:
            parts.append("any")
        if self.choices is not None:
            parts.append("one of " + ", ".join(repr(choice) for choice in self.choices))
        bounds = [f"{sign} {getattr(self, a):g}" for a, sign in
                  (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
                  if getattr(self, a) is not None]
        if bounds:
            parts.append(" and ".join(bounds))
        if self.min_length is not None:
            parts.append(f"length >= {self.min_length}")
        if self.max_length is not None:
            parts.append(f"length <= {self.max_length}")
        if self.items is not None:
            parts.append(f"each: {self.items.constraint()}")
        if not self.finite:
            parts.append("inf allowed")
        if self.required:
            parts.append("required")
        return ", ".join(parts)

    def describe(self) -> dict[str, Any]:
        """JSON-ready: default, constraint, help."""
        return {"default": jsonable(self.default), "constraint": self.constraint(),
                "help": self.help}


class OptionError(ValueError):
    """A ``ValueError`` that names the spec field it is about.

    Raise it from ``validate(run)`` when the problem belongs to another component's option
    than the one validating (a protocol that finds the method's ``buffer_size`` too large for
    the stream): the spec error then names that field instead of the validating component.

    >>> raise OptionError("method.buffer_size", "buffer_size = 5000 but the stream has 900 rows")
    Traceback (most recent call last):
    ...
    paralab.options.OptionError: buffer_size = 5000 but the stream has 900 rows
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def as_option(value: Any) -> Option:
    """A declaration from an :class:`Option` or a bare default."""
    return value if isinstance(value, Option) else Option(value)


def declared(options: Mapping[str, Any]) -> dict[str, Option]:
    """``{name: Option}`` from a component's ``options`` mapping."""
    return {name: as_option(value) for name, value in options.items()}


def defaults(options: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: default}`` from a component's ``options`` mapping."""
    return {name: option.default for name, option in declared(options).items()}


def jsonable(value: Any) -> Any:
    """Plain JSON for ``paralab list --json``: lists for tuples, ``"inf"``/``"nan"`` as strings,
    ``repr`` for anything else."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    return repr(value)


# Shorthands for the commonest declarations; each is an ordinary Option.


def positive(default: float, *, help: str = "", **more: Any) -> Option:
    """A number > 0 (a learning rate, a temperature)."""
    return Option(default, type=float, gt=0, help=help, **more)


def non_negative(default: float, *, help: str = "", **more: Any) -> Option:
    """A number >= 0 (a weight decay, a penalty strength)."""
    return Option(default, type=float, ge=0, help=help, **more)


def count(default: int, *, low: int = 1, help: str = "", **more: Any) -> Option:
    """An integer >= ``low`` (epochs, a batch size)."""
    return Option(default, type=int, ge=low, help=help, **more)


def fraction(default: float, *, help: str = "", **more: Any) -> Option:
    """A number in [0, 1]."""
    return Option(default, type=float, ge=0, le=1, help=help, **more)


def one_of(default: str, choices: Sequence[str], *, help: str = "") -> Option:
    """A string among ``choices``."""
    return Option(default, type=str, choices=tuple(choices), help=help)
