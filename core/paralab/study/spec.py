"""The ``[study]`` table: which spec, which seeds, which grid or search, where and how to run.

A study file names a base experiment and the configurations to run it in::

    [study]
    name = "digits_lr"                      # default: the file's stem
    spec = "digits_mlp.toml"                # relative to this file; or [study.base], or the
                                            # spec's fields at the top level of this file
    seeds = "0-4"                           # or [0, 1, 2, 3, 4], "0,2,7", 3
    grid = { "method.lr" = [0.01, 0.05, 0.1] }   # any spec path (the override grammar)
    overrides = ["protocol.epochs=5"]       # applied to the base before the grid
    executor = "local"                      # "local", "processes" or "ray"
    workers = 2                             # processes or Ray tasks at once
    ray_address = ""                        # a Ray cluster ("ray://..." or "HOST:PORT")
    output = "runs"                         # the study folder is output/name

    [study.search]                          # instead of a grid: sampled configurations
    kind = "random"                         # "random", "optuna" or "ray_tune"
    trials = 8
    objective = "test/accuracy"             # default: the runs' main metric
    direction = "maximize"                  # default: minimize for *loss/*error, else maximize
    seed = 0                                # the sampler's seed
    space = { "method.lr" = { low = 0.001, high = 0.3, log = true },
              "model.hidden" = [[64], [256, 256]] }   # a list is a set of choices

Reading checks the table's shape (every problem a :class:`paralab.SpecError` naming the field,
with a "did you mean" for unknown keys); :func:`paralab.run_study` then checks every
configuration against the registry before any run starts.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paralab.spec import (
    MANY,
    SETTINGS,
    SINGLE,
    ExperimentSpec,
    SpecError,
    name_problem,
    read_toml_file,
)
from paralab_registry import suggest

pass

STUDY_FIELDS = ("name", "spec", "base", "seeds", "grid", "overrides", "search", "executor",
                "workers", "ray_address", "output", "description")
SEARCH_FIELDS = ("kind", "trials", "space", "objective", "direction", "seed")
DIMENSION_FIELDS = ("low", "high", "log", "type", "choices")
EXECUTORS = ("local", "processes", "ray")
SEARCH_KINDS = ("random", "optuna", "ray_tune")
DIRECTIONS = ("maximize", "minimize")
_SPEC_FIELDS = set(SINGLE) | set(MANY) | set(SETTINGS)
_SEED_RANGE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


@dataclass(frozen=True)
class Dimension:
    """One searched spec path: a float or int range (``log`` for log-uniform), or choices."""

    path: str
    kind: str  # "float", "int" or "choice"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log, "type": self.kind}

    def corners(self) -> list[Any]:
        """Values that bound what a sampler can draw, to validate before any run."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


@dataclass(frozen=True)
class SearchSpec:
    """A sampled study: ``trials`` configurations drawn from ``space``."""

    kind: str
    trials: int
    space: tuple[Dimension, ...]
    objective: str | None = None
    direction: str = "maximize"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "trials": self.trials, "objective": self.objective,
                "direction": self.direction, "seed": self.seed,
                "space": {d.path: d.to_dict() for d in self.space}}


@dataclass(frozen=True)
class StudySpec:
    """A parsed ``[study]`` table. ``base`` is the base experiment's TOML table (before
    ``overrides`` and the grid); ``grid`` keeps the file's order of paths and values."""

    name: str
    base: dict[str, Any]
    seeds: tuple[int, ...]
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    overrides: tuple[str, ...] = ()
    search: SearchSpec | None = None
    executor: str = "local"
    workers: int | None = None
    ray_address: str = ""
    output: str = "runs"
    description: str = ""
    source: str = ""
    base_source: str = ""

    @property
    def folder(self) -> Path:
        """Where the study's folder goes: ``output/name``."""
        return Path(self.output) / self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "spec": self.base_source,
            "base": self.base,
            "seeds": list(self.seeds),
            "grid": {path: list(values) for path, values in self.grid},
            "overrides": list(self.overrides),
            "search": None if self.search is None else self.search.to_dict(),
            "executor": self.executor,
            "workers": self.workers,
            "ray_address": self.ray_address,
            "output": self.output,
            "description": self.description,
        }

    def with_changes(self, **changes: Any) -> StudySpec:
        """A copy with fields changed (``executor``, ``workers``, ``output``, ``overrides``),
        checked like the file's own values."""
        data = self.to_dict()
        table = {key: data[key] for key in ("name", "seeds", "grid", "overrides", "executor",
                                             "workers", "ray_address", "output", "description")}
        if self.search is not None:
            table["search"] = self.search.to_dict()
        table.update({key: value for key, value in changes.items() if value is not None})
        return parse_study(table, base=self.base, base_source=self.base_source,
                           source=self.source)


def load_study(path: str | os.PathLike[str]) -> StudySpec:
    """Read a study file (a TOML file with a ``[study]`` table).

    >>> spec = load_study("examples/study_digits.toml")  # doctest: +SKIP
    >>> spec.seeds
    (0, 1, 2, 3, 4)
    """
    path = Path(path)
    data = read_toml_file(path, "a study is a TOML file with [study]", "study")
    return study_from_dict(data, source=str(path), folder=path.parent, default_name=path.stem)


def study_from_dict(data: Mapping[str, Any], *, source: str = "",
                    folder: str | os.PathLike[str] = ".", default_name: str = "study") -> StudySpec:
    """A study from a study file's data: ``{"study": {...}, <spec fields>...}``."""
    if "study" not in data:
        raise SpecError(["study: the file has no [study] table (a spec file is run with "
                         "`paralab run`; a study names spec, seeds and grid under [study])"],
                        source)
    table = data["study"]
    if not isinstance(table, Mapping):
        raise SpecError([f"study: expected a table, got {type(table).__name__}"], source)
    top = {key: value for key, value in data.items() if key != "study"}
    problems = [
        f"{key}: unknown top-level field{suggest(key, _SPEC_FIELDS | {'study'})}; a study file "
        f"holds [study] and, optionally, the base spec's fields"
        for key in top if key not in _SPEC_FIELDS
    ]
    given = [what for what, present in (("study.spec", "spec" in table),
                                        ("study.base", "base" in table),
                                        ("top-level spec fields", bool(top))) if present]
    if len(given) > 1:
        problems.append(f"study: the base experiment is given {len(given)} ways "
                        f"({', '.join(given)}); give exactly one")
    if not given:
        problems.append("study.spec: name the base experiment: spec = \"file.toml\" (relative "
                        "to the study file), a [study.base] table, or the spec's fields at the "
                        "top level of the study file")
    if problems:
        raise SpecError(problems, source)
    base_source = ""
    if "spec" in table:
        reference = table["spec"]
        if not isinstance(reference, str) or not reference:
            raise SpecError([f"study.spec: expected the path of a spec file, got {reference!r}"],
                            source)
        spec_path = Path(folder) / reference
        try:
            base = ExperimentSpec.read_toml(spec_path)
        except SpecError as error:
            raise SpecError([f"study.spec = {reference!r}: {p}" for p in error.problems],
                            source) from None
        base_source = str(spec_path)
    elif "base" in table:
        base = table["base"]
        if not isinstance(base, Mapping):
            raise SpecError([f"study.base: expected a spec table, got {type(base).__name__}"],
                            source)
        base = dict(base)
    else:
        base = dict(top)
    rest = {key: value for key, value in table.items() if key not in ("spec", "base")}
    rest.setdefault("name", default_name)
    return parse_study(rest, base=base, base_source=base_source, source=source)


def parse_study(table: Mapping[str, Any], *, base: Mapping[str, Any], base_source: str = "",
                source: str = "") -> StudySpec:
    """Check a ``[study]`` table (without ``spec``/``base``) and build the :class:`StudySpec`."""
    problems: list[str] = []
    for key in table:
        if key not in STUDY_FIELDS:
            problems.append(f"study.{key}: unknown field{suggest(key, STUDY_FIELDS)}; fields: "
                            f"{', '.join(STUDY_FIELDS)}")
    name = table.get("name", base.get("name", "study"))
    if not isinstance(name, str) or not name:
        problems.append(f"study.name: expected a non-empty string, got {name!r}")
        name = "study"
    elif (problem := name_problem(name)) is not None:
        problems.append(f"study.name = {name!r}: {problem}")
    seeds = _seeds(table.get("seeds", base.get("seed", 0)), problems)
    grid = _grid(table.get("grid", {}), problems)
    overrides = table.get("overrides", [])
    if isinstance(overrides, str):
        overrides = [overrides]
    if not isinstance(overrides, Sequence) or not all(isinstance(o, str) for o in overrides):
        problems.append(f"study.overrides: expected a list of PATH=VALUE strings, got {overrides!r}")
        overrides = []
    search = None
    if "search" in table:
        search = _search(table["search"], problems)
        if search is not None and grid:
            problems.append("study.grid: a study has a grid or a search, not both (put fixed "
                            "choices into search.space as lists)")
    executor = table.get("executor", "local")
    if executor not in EXECUTORS:
        problems.append(f"study.executor = {executor!r}: one of {', '.join(EXECUTORS)}"
                        f"{suggest(str(executor), EXECUTORS)}")
        executor = "local"
    workers = table.get("workers")
    if workers is not None and (not _is_int(workers) or workers < 1):
        problems.append(f"study.workers = {workers!r}: a positive integer (processes or Ray "
                        f"tasks at once)")
        workers = None
    address = table.get("ray_address", "")
    if not isinstance(address, str):
        problems.append(f"study.ray_address = {address!r}: a string (\"\" starts a local Ray)")
        address = ""
    if address and executor != "ray":
        problems.append(f"study.ray_address = {address!r}: only the ray executor uses it "
                        f"(executor = {executor!r})")
    output = table.get("output", base.get("output") or "runs")
    if not isinstance(output, str) or not output:
        problems.append(f"study.output = {output!r}: the folder for the study's folder (a "
                        f"study always writes its runs)")
        output = "runs"
    description = table.get("description", "")
    if not isinstance(description, str):
        problems.append(f"study.description: expected a string, got {description!r}")
        description = ""
    if problems:
        raise SpecError(problems, source)
    return StudySpec(name=name, base=dict(base), seeds=tuple(seeds), grid=tuple(grid),
                     overrides=tuple(overrides), search=search, executor=executor,
                     workers=workers, ray_address=address, output=output,
                     description=description, source=source, base_source=base_source)


def parse_seeds(value: Any) -> tuple[int, ...]:
    """``"0-4"`` -> ``(0, 1, 2, 3, 4)``; also ``"0,2,7"``, ``"0-2,9"``, ``3``, ``[0, 5]``."""
    problems: list[str] = []
    seeds = _seeds(value, problems)
    if problems:
        raise SpecError(problems)
    return tuple(seeds)


def _seeds(value: Any, problems: list[str]) -> list[int]:
    where = "study.seeds"
    if _is_int(value):
        seeds = [value]
    elif isinstance(value, str):
        seeds = []
        for part in value.split(","):
            match = _SEED_RANGE.fullmatch(part)
            if match is None:
                problems.append(f"{where} = {value!r}: {part.strip()!r} is not a seed or a "
                                f"range; write e.g. \"0-4\", \"0,2,7\" or [0, 1, 2]")
                return []
            first, last = int(match.group(1)), int(match.group(2) or match.group(1))
            if last < first:
                problems.append(f"{where} = {value!r}: the range {first}-{last} is empty")
                return []
            if last - first >= 100_000:
                problems.append(f"{where} = {value!r}: {last - first + 1} seeds is too many")
                return []
            seeds += list(range(first, last + 1))
    elif isinstance(value, Sequence) and value and all(_is_int(seed) for seed in value):
        seeds = list(value)
    else:
        problems.append(f"{where} = {value!r}: a list of integers, a range such as \"0-4\", or "
                        f"one integer")
        return []
    bad = [seed for seed in seeds if not 0 <= seed < 2**63]
    if bad:
        problems.append(f"{where}: seeds must be in [0, 2**63), got {bad[0]}")
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        problems.append(f"{where}: seed {repeated[0]} is listed twice (each seed runs once per "
                        f"configuration)")
    return seeds


def _grid(value: Any, problems: list[str]) -> list[tuple[str, tuple[Any, ...]]]:
    from paralab.overrides import OverrideError, parse_override

    if not isinstance(value, Mapping):
        problems.append(f"study.grid: expected a table of PATH = [values], got {value!r}")
        return []
    grid = []
    for path, values in value.items():
        where = f"study.grid[{path!r}]"
        try:
            parse_override(f"{path}=0")
        except OverrideError as error:
            problems.append(f"{where}: {error}")
            continue
        if not isinstance(values, list) or not values:
            problems.append(f"{where} = {values!r}: a non-empty list of values, e.g. "
                            f"\"{path}\" = [0.01, 0.1]")
            continue
        if any(_is_nan(item) for item in values):
            problems.append(f"{where}: NaN is not a grid value")
            continue
        repeated = [item for position, item in enumerate(values) if item in values[:position]]
        if repeated:
            problems.append(f"{where}: the value {repeated[0]!r} is listed twice")
            continue
        grid.append((str(path), tuple(values)))
    return grid


def _search(value: Any, problems: list[str]) -> SearchSpec | None:
    if not isinstance(value, Mapping):
        problems.append(f"study.search: expected a table (kind, trials, space, objective, "
                        f"direction), got {value!r}")
        return None
    count = len(problems)
    for key in value:
        if key not in SEARCH_FIELDS:
            problems.append(f"study.search.{key}: unknown field{suggest(key, SEARCH_FIELDS)}; "
                            f"fields: {', '.join(SEARCH_FIELDS)}")
    kind = value.get("kind", "random")
    if kind not in SEARCH_KINDS:
        problems.append(f"study.search.kind = {kind!r}: one of {', '.join(SEARCH_KINDS)}"
                        f"{suggest(str(kind), SEARCH_KINDS)}")
    trials = value.get("trials")
    if not _is_int(trials) or trials < 1:
        problems.append(f"study.search.trials = {trials!r}: the number of configurations to "
                        f"try, a positive integer")
    objective = value.get("objective")
    if objective is not None and (not isinstance(objective, str) or not objective):
        problems.append(f"study.search.objective = {objective!r}: a final metric's name, e.g. "
                        f"\"test/accuracy\"")
    direction = value.get("direction")
    if direction is None:
        name = objective or ""
        direction = "minimize" if name.endswith(("loss", "error")) else "maximize"
    elif direction not in DIRECTIONS:
        problems.append(f"study.search.direction = {direction!r}: \"maximize\" or \"minimize\""
                        f"{suggest(str(direction), DIRECTIONS)}")
    seed = value.get("seed", 0)
    if not _is_int(seed) or seed < 0:
        problems.append(f"study.search.seed = {seed!r}: a non-negative integer (the sampler's)")
    space = value.get("space")
    dimensions: list[Dimension] = []
    if not isinstance(space, Mapping) or not space:
        problems.append("study.search.space: a table of PATH = { low = .., high = .., log = .. } "
                        "or PATH = [choices], e.g. \"method.lr\" = { low = 0.001, high = 0.3, "
                        "log = true }")
    else:
        for path, item in space.items():
            dimension = _dimension(str(path), item, problems)
            if dimension is not None:
                dimensions.append(dimension)
    if len(problems) > count:
        return None
    return SearchSpec(kind=kind, trials=trials, space=tuple(dimensions), objective=objective,
                      direction=direction, seed=seed)


def _dimension(path: str, item: Any, problems: list[str]) -> Dimension | None:
    from paralab.overrides import OverrideError, parse_override

    where = f"study.search.space[{path!r}]"
    try:
        parse_override(f"{path}=0")
    except OverrideError as error:
        problems.append(f"{where}: {error}")
        return None
    if isinstance(item, list):
        item = {"choices": item}
    if not isinstance(item, Mapping):
        problems.append(f"{where} = {item!r}: a range {{ low = .., high = .. }} or a list of "
                        f"choices")
        return None
    for key in item:
        if key not in DIMENSION_FIELDS:
            problems.append(f"{where}.{key}: unknown field{suggest(key, DIMENSION_FIELDS)}; "
                            f"fields: {', '.join(DIMENSION_FIELDS)}")
            return None
    if "choices" in item:
        choices = item["choices"]
        if set(item) != {"choices"}:
            problems.append(f"{where}: choices exclude low/high/log/type")
            return None
        if not isinstance(choices, list) or not choices:
            problems.append(f"{where}.choices: a non-empty list")
            return None
        return Dimension(path, "choice", choices=tuple(choices))
    low, high = item.get("low"), item.get("high")
    if not all(_is_number(bound) for bound in (low, high)):
        problems.append(f"{where}: low and high must be numbers, got low={low!r}, high={high!r}")
        return None
    kind = item.get("type", "int" if _is_int(low) and _is_int(high) else "float")
    if kind not in ("int", "float"):
        problems.append(f"{where}.type = {kind!r}: \"int\" or \"float\"")
        return None
    if kind == "int" and not (_is_int(low) and _is_int(high)):
        problems.append(f"{where}: an int range needs integer bounds, got {low!r}..{high!r}")
        return None
    if not low < high:
        problems.append(f"{where}: low ({low!r}) must be below high ({high!r})")
        return None
    log = item.get("log", False)
    if not isinstance(log, bool):
        problems.append(f"{where}.log = {log!r}: true or false")
        return None
    if log and low <= 0:
        problems.append(f"{where}: a log range needs low > 0, got {low!r}")
        return None
    if kind == "float":
        low, high = float(low), float(high)
    return Dimension(path, kind, low=low, high=high, log=log)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
