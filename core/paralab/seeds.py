"""Several seeds of one configuration: :func:`run_seeds`.

A study runs every configuration over several seeds. Where the protocol declares
``seed_axis`` (and the configuration allows it) the seeds can run together as one stacked
model; otherwise, and as the reference, they run one after another, each exactly the run
:func:`paralab.run` would make of that seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from paralab.results import Result


def run_seeds(spec: Any, seeds: Sequence[int], *, registry: Any = None,
              overrides: Sequence[str] = (), study: Mapping[str, Any] | None = None,
              names: Sequence[str] | None = None) -> list[Result]:
    """One :class:`Result` per seed, in order, each what ``paralab.run`` of that seed returns
    (its own folder ``name`` or ``names[i]``). A failed run's partial result is in the list
    (status ``failed``); a rejected spec raises :class:`SpecError` before any seed runs."""
    from paralab.runner import RunError, run

    results = []
    for position, seed in enumerate(seeds):
        extra = [f"seed={int(seed)}"]
        if names is not None:
            extra.append(f"name={names[position]!r}".replace("'", '"'))
        try:
            results.append(run(spec, registry=registry, overrides=[*overrides, *extra],
                               study=None if study is None else {**study, "seed": int(seed)}))
        except RunError as error:
            results.append(error.result)
    return results
