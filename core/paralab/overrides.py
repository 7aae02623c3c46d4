"""Overrides of a spec's values: ``method.lr=0.01``, ``protocol.eval_splits=["test"]``, ``seed=3``.

One grammar for the command line (``paralab run spec.toml --set method.lr=0.01``), the Python
API (``paralab.run(spec, overrides=["method.lr=0.01"])``) and a study's grid: ``PATH=VALUE``,
where ``PATH`` is a top-level field (``seed``, ``device``), a component option
(``method.lr``, ``model.hidden``), a list element (``metrics[0]``) or an option of one
(``middleware[0].noise_multiplier``), and ``VALUE`` is a TOML value (``0.01``, ``true``,
``[256, 256]``, ``"cpu"``, ``{ name = "adam", lr = 0.001 }``); a value that is not TOML is
taken as a string, so ``method=adam`` and ``device=cpu`` need no quotes.

An override of a path the spec cannot have is a :class:`SpecError` naming the override and
what would be valid (with a "did you mean"), before anything runs.

>>> apply_overrides({"dataset": "iris", "method": "sgd"}, ["method.lr=0.5", "seed=3"])
{'dataset': 'iris', 'method': {'name': 'sgd', 'lr': 0.5}, 'seed': 3}
"""

from __future__ import annotations

import copy
import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from paralab_registry import suggest

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)((?:\[\d+\])*)")


class OverrideError(ValueError):
    """One override is malformed or names a path the spec cannot have."""


def parse_value(text: str) -> Any:
    """A TOML value; text that is not one is a plain string (``adam``, ``cpu``)."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def toml_value(value: Any) -> str:
    """A Python value written as TOML: the inverse of :func:`parse_value` (``--dry-run``'s
    resolved spec, a study's overrides)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = [f"{_toml_key(str(key))} = {toml_value(item)}" for key, item in value.items()]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(f"{value!r} ({type(value).__name__}) has no TOML form")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def parse_override(override: str) -> tuple[list[str | int], Any]:
    """``"metrics[0].name=loss"`` -> ``(["metrics", 0, "name"], "loss")``."""
    path, equals, text = override.partition("=")
    path = path.strip()
    if not equals or not path:
        raise OverrideError(f"{override!r}: an override is PATH=VALUE, e.g. method.lr=0.01")
    steps: list[str | int] = []
    for part in path.split("."):
        match = _STEP.fullmatch(part)
        if match is None:
            raise OverrideError(
                f"{override!r}: {part!r} is not a field name (letters, digits, '_', '-', "
                f"optionally followed by [index])"
            )
        steps.append(match.group(1))
        steps += [int(index) for index in re.findall(r"\[(\d+)\]", match.group(2))]
    return steps, parse_value(text.strip())


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str],
                    registry: Any = None) -> dict[str, Any]:
    """A copy of the spec ``data`` (the TOML layout) with each override applied in order.

    With a ``registry``, an option override is also checked against the component's declared
    options, so a misspelt option is reported as the override that misspelt it.
    """
    from paralab.spec import MANY, SETTINGS, SINGLE, SpecError

    result = copy.deepcopy(dict(data))
    problems = []
    fields = set(SINGLE) | set(MANY) | set(SETTINGS)
    for override in overrides:
        try:
            steps, value = parse_override(override)
            _apply(result, steps, value, override, fields, registry)
        except OverrideError as error:
            problems.append(f"--set {error}")
    if problems:
        raise SpecError(problems)
    return result


def _apply(data: dict[str, Any], steps: list[str | int], value: Any, override: str,
           fields: set[str], registry: Any) -> None:
    from paralab.spec import MANY, SINGLE

    head = steps[0]
    assert isinstance(head, str)
    if head not in fields:
        raise OverrideError(
            f"{override!r}: the spec has no field {head!r}{suggest(head, fields)}; fields: "
            f"{', '.join(sorted(fields))}"
        )
    if len(steps) == 1:
        data[head] = value
        return
    if head in SINGLE:
        if isinstance(steps[1], int):
            raise OverrideError(f"{override!r}: {head} is one component, not a list")
        data[head] = _set_option(data.get(head, _default(head)), [head], steps[1:], value,
                                 override, registry, head)
        return
    if head in MANY:
        items = data.get(head) or []
        items = [items] if isinstance(items, (str, Mapping)) else list(items)
        index = steps[1]
        if not isinstance(index, int):
            raise OverrideError(
                f"{override!r}: {head} is a list; name an element, e.g. {head}[0].{index}"
            )
        if not 0 <= index < len(items):
            raise OverrideError(
                f"{override!r}: {head} has {len(items)} element(s), so [{index}] does not exist"
                + (f"; indices 0..{len(items) - 1}" if items else "")
            )
        if len(steps) == 2:
            items[index] = value
        else:
            items[index] = _set_option(items[index], [head, index], steps[2:], value, override,
                                       registry, MANY[head])
        data[head] = items
        return
    raise OverrideError(f"{override!r}: {head} is a single value; set it as {head}=VALUE")


def _set_option(component: Any, where: list[str | int], steps: list[str | int], value: Any,
                override: str, registry: Any, kind: str) -> Any:
    """``component`` (a name or a table) with the option at ``steps`` set to ``value``."""
    label = _label(where)
    if component is None:
        raise OverrideError(f"{override!r}: the spec names no {label}; set it first ({label}=NAME)")
    table = {"name": component} if isinstance(component, str) else dict(component)
    option = steps[0]
    if not isinstance(option, str):
        raise OverrideError(f"{override!r}: {label} is a component, not a list")
    if option != "name" and registry is not None and isinstance(table.get("name"), str):
        declared = _declared(registry, kind, table["name"])
        if declared is not None and option not in declared:
            raise OverrideError(
                f"{override!r}: {kind} {table['name']!r} has no option {option!r}"
                f"{suggest(option, declared)}; options: {', '.join(sorted(declared)) or 'none'}"
            )
    if len(steps) == 1:
        table[option] = value
        return table
    inner = table.get(option)
    if isinstance(steps[1], int):
        if not isinstance(inner, list) or not 0 <= steps[1] < len(inner):
            raise OverrideError(f"{override!r}: {label}.{option} has no element [{steps[1]}]")
        if len(steps) > 2:
            raise OverrideError(f"{override!r}: only one level of [index] is supported inside an option")
        inner = list(inner)
        inner[steps[1]] = value
        table[option] = inner
        return table
    if not isinstance(inner, Mapping):
        raise OverrideError(f"{override!r}: {label}.{option} is not a table")
    nested = dict(inner)
    _set_nested(nested, steps[1:], value, override)
    table[option] = nested
    return table


def _set_nested(table: dict[str, Any], steps: list[str | int], value: Any, override: str) -> None:
    key = steps[0]
    if not isinstance(key, str):
        raise OverrideError(f"{override!r}: [index] inside a nested table is not supported")
    if len(steps) == 1:
        table[key] = value
        return
    inner = table.get(key)
    if not isinstance(inner, Mapping):
        raise OverrideError(f"{override!r}: {key!r} is not a table")
    nested = dict(inner)
    _set_nested(nested, steps[1:], value, override)
    table[key] = nested


def _default(field_name: str) -> Any:
    """The spec's default for a field the data leaves out (``method`` is ``"sgd"``)."""
    from dataclasses import MISSING, fields

    from paralab.spec import ExperimentSpec

    for item in fields(ExperimentSpec):
        if item.name == field_name:
            return None if item.default is MISSING else item.default
    return None


def _declared(registry: Any, kind: str, name: str) -> dict[str, Any] | None:
    registry.load()
    spec = registry.components.get(kind, {}).get(name)
    if spec is None:
        return None  # the spec's validation names the unknown component
    declared = dict(spec.declared_options())
    if kind == "dataset":
        declared.setdefault("root", None)
    return declared


def _label(where: list[str | int]) -> str:
    text = ""
    for step in where:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text
