"""Configurations of a study: the grid's product, and the folder name that says each one.

A configuration is a set of ``PATH = value`` changes of the base spec, written as overrides
(``method.lr=0.01``, the grammar of :mod:`paralab.overrides`), so that a study's run is the run
``paralab run spec.toml --set method.lr=0.01 --seed 3`` would make. Its label is its folder
inside the study: ``lr=0.01``, ``lr=0.01,hidden=256x256``; the seeds' runs sit inside it as
``seed=0``, ``seed=1``, ...
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from paralab.overrides import parse_override, toml_value

BASE_LABEL = "base"
"""The folder of a study's only configuration when it has no grid."""

_LABEL_CHARACTERS = re.compile(r"[^A-Za-z0-9._=,+\-]")
_LABEL_BYTES = 120


@dataclass(frozen=True)
class Configuration:
    """One configuration: its folder ``label`` and the ``values`` it sets, by spec path."""

    label: str
    values: Mapping[str, Any] = field(default_factory=dict)

    @property
    def overrides(self) -> list[str]:
        """``["method.lr=0.01", ...]``: what ``paralab run --set`` would take."""
        return [f"{path}={toml_value(value)}" for path, value in self.values.items()]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "values": dict(self.values), "overrides": self.overrides}


def seed_folder(seed: int) -> str:
    """The run folder of one seed inside its configuration's folder."""
    return f"seed={int(seed)}"


def grid_configurations(grid: Sequence[tuple[str, Sequence[Any]]]) -> list[Configuration]:
    """Every combination of the grid's values, the first path varying slowest."""
    if not grid:
        return [Configuration(BASE_LABEL, {})]
    paths = [path for path, _ in grid]
    combinations = [dict(zip(paths, values))
                    for values in itertools.product(*(values for _, values in grid))]
    return labelled(combinations)


def labelled(combinations: Sequence[Mapping[str, Any]], prefix: str = "") -> list[Configuration]:
    """Configurations with unique folder names. ``prefix`` (``trial``) numbers them first,
    as a search's trials are: ``trial-003,lr=0.0123``."""
    keys = short_keys([path for combination in combinations for path in combination])
    labels: list[str] = []
    for position, combination in enumerate(combinations):
        parts = [f"{keys[path]}={format_value(value)}" for path, value in combination.items()]
        if prefix:
            parts.insert(0, f"{prefix}-{position:03d}")
        label = _LABEL_CHARACTERS.sub("_", ",".join(parts)) or BASE_LABEL
        if len(label.encode("utf-8")) > _LABEL_BYTES or label in labels or label in (".", ".."):
            digest = hashlib.sha1(json.dumps(combination, sort_keys=True, default=str)
                                  .encode()).hexdigest()[:8]
            label = f"{prefix or 'config'}-{position:03d}-{digest}"
        labels.append(label)
    return [Configuration(label, dict(combination))
            for label, combination in zip(labels, combinations)]


def short_keys(paths: Sequence[str]) -> dict[str, str]:
    """Each path's shortest readable name: its last field (``method.lr`` -> ``lr``), or the
    whole path when two paths share one (``method.lr`` and ``middleware[0].lr``)."""
    unique = list(dict.fromkeys(paths))
    last = {path: _last_name(path) for path in unique}
    names = list(last.values())
    return {path: (name if names.count(name) == 1 else path) for path, name in last.items()}


def _last_name(path: str) -> str:
    steps, _ = parse_override(f"{path}=0")
    names = [step for step in steps if isinstance(step, str)]
    return names[-1] if names else path


def format_value(value: Any) -> str:
    """A value as a folder name shows it: ``0.01``, ``256x256``, ``adam``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, list):
        return "x".join(format_value(item) for item in value) or "none"
    if isinstance(value, Mapping):
        name = value.get("name")
        digest = hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode())
        return f"{name or 'table'}-{digest.hexdigest()[:6]}"
    return str(value)


def split_values(text: str) -> list[str]:
    """``"0.01,0.1"`` -> ``["0.01", "0.1"]``; commas inside ``[]``, ``{}`` or quotes stay:
    ``"[64,64],[128]"`` -> ``["[64,64]", "[128]"]`` (the ``--grid PATH=V1,V2`` grammar)."""
    parts, depth, quote, current = [], 0, "", ""
    for character in text:
        if quote:
            if character == quote:
                quote = ""
        elif character in "\"'":
            quote = character
        elif character in "[{":
            depth += 1
        elif character in "]}":
            depth -= 1
        elif character == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += character
    parts.append(current.strip())
    return parts
