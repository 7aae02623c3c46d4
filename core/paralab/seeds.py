"""Several seeds of one configuration: :func:`run_seeds`.

A study runs every configuration over several seeds. Where the protocol declares
``seed_axis`` (and the configuration allows it) the seeds run together as one stacked model
(:mod:`paralab.seed_axis`, :mod:`paralab.stacked`): each seed's initial weights are those its
own run draws, each seed keeps its own data order, and each seed's run folder and
``result.json`` are what its separate run writes. Otherwise, and as the reference, they run one
after another, each exactly the run :func:`paralab.run` makes of that seed.

Every result says what happened in ``result.provenance["seed_axis"]``: ``stacked`` (how many
seeds trained together, 1 when sequential), ``why_not`` (why not stacked, or ``None``),
``chunk`` (the seeds stacked with this one) and, when stacked, the memory per seed.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from paralab.results import RESULT_FILE, Result, write_atomic
from paralab.spec import ExperimentSpec, SpecError

SEED_AXIS = "seed_axis"
"""The key of ``result.provenance`` that records how the seed ran."""

MEMORY_SHARE = 0.5
"""The share of the free memory (CUDA's, or the host's MemAvailable) that stacked seeds may
take when ``max_parallel_seeds`` is not given."""


def run_seeds(spec: Any, seeds: Sequence[int], *, registry: Any = None,
              overrides: Sequence[str] = (), study: Mapping[str, Any] | None = None,
              names: Sequence[str] | None = None, max_parallel_seeds: int | None = None,
              vectorize: bool = True) -> list[Result]:
    """One :class:`Result` per seed, in order, each what ``paralab.run`` of that seed returns
    (its own folder ``name`` or ``names[i]``). A failed run's partial result is in the list
    (status ``failed``); a rejected spec raises :class:`SpecError` before any seed runs (a
    rejection that depends on the seed, found when its run is built, raises when it is).

    Seeds are stacked (trained as one model) where the protocol declares ``seed_axis`` and
    the configuration allows it, at most ``max_parallel_seeds`` at a time (default: as many as
    fit :data:`MEMORY_SHARE` of the free memory); ``vectorize=False`` runs them one after
    another. ``result.provenance["seed_axis"]`` says which happened, and why.
    """
    from paralab.host import get_registry
    from paralab.seed_axis import prepare, seed_overrides

    registry = registry or get_registry()
    seeds = [int(seed) for seed in seeds]
    if names is not None and len(names) != len(seeds):
        raise SpecError([f"names: {len(names)} names for {len(seeds)} seeds"])
    if max_parallel_seeds is not None and (
            not isinstance(max_parallel_seeds, int) or isinstance(max_parallel_seeds, bool)
            or max_parallel_seeds < 1):
        raise SpecError([f"max_parallel_seeds = {max_parallel_seeds!r}: must be an integer "
                         f"of at least 1 (seeds stacked at a time)"])
    specs = []
    for position, seed in enumerate(seeds):  # every seed's spec is checked before any runs
        name = None if names is None else names[position]
        one = ExperimentSpec.load(spec, [*overrides, *seed_overrides(seed, name)], registry)
        one.validate(registry)
        specs.append(one)
    why = _why_not_spec(specs, registry) if vectorize else "vectorize = False"
    results: list[Result] = []
    position = 0
    chunk_size: int | None = None
    while position < len(seeds):
        if why:
            results += _sequential(spec, seeds[position:], names, position, registry,
                                   overrides, study, why)
            break

        def prepared(at: int) -> Any:
            return prepare(spec, seeds[at], registry=registry, overrides=overrides,
                           study=study, name=None if names is None else names[at])

        try:
            chunk = [prepared(position)]
        except SpecError:
            raise
        except Exception as error:  # noqa: BLE001 - the sequential run reports it properly
            why = f"building seed {seeds[position]} raised {type(error).__name__}: {error}"
            continue
        if chunk_size is None:
            chunk_size, estimate = _chunk_size(chunk[0], len(seeds) - position,
                                               max_parallel_seeds)
        stop = min(len(seeds), position + chunk_size)
        if stop - position < 2:
            why = ("max_parallel_seeds = 1" if max_parallel_seeds == 1 else
                   "one seed per chunk fits the memory budget" if chunk_size == 1 else
                   f"the last chunk has one seed (chunks of {chunk_size})")
            continue
        try:
            chunk += [prepared(at) for at in range(position + 1, stop)]
        except SpecError:
            raise
        except Exception as error:  # noqa: BLE001
            why = f"building a seed raised {type(error).__name__}: {error}"
            continue
        stacked_results, why = _stacked(chunk, estimate)
        if why:
            continue  # nothing ran: these seeds (and the rest) run one after another
        results += stacked_results
        position = stop
    return results


def _why_not_spec(specs: list[ExperimentSpec], registry: Any) -> str:
    """Why these specs cannot be stacked, from the specs alone (``""``: maybe they can)."""
    if len(specs) < 2:
        return "one seed"
    spec = specs[0]
    protocol = registry.component("protocol", spec.protocol.name)
    if not protocol.seed_axis:
        return f"protocol {protocol.name!r} does not declare seed_axis"
    if spec.middleware:
        return f"middleware {[m.name for m in spec.middleware]} acts on each run alone"
    if spec.losses:
        return f"loss terms {[m.name for m in spec.losses]} are not stacked yet"
    if spec.checkpoint_every:
        return "checkpoint_every: checkpoints hold one seed's optimizer state"
    if spec.model is None:
        return "the spec has no model to stack"
    return ""


def _executor(protocol: Any) -> Any:
    """The object with ``seed_axis_why_not``/``execute_seeds`` for this protocol, or None."""
    if callable(getattr(protocol, "execute_seeds", None)):
        return protocol
    return None


def _stacked(chunk: list[Any], estimate: int) -> tuple[list[Result], str]:
    """Run the prepared seeds of ``chunk`` stacked; ``([], why)`` when they cannot be (then
    nothing ran and no folder was claimed)."""
    from paralab import run_warnings, runner
    from paralab.seed_axis import SeedAxis, cuda_device, execute, interrupted
    from paralab.stacked import StackedModel, Unstackable

    runs = [p.context for p in chunk]
    executor = _executor(runs[0].protocol)
    if executor is None:
        return [], f"protocol object {type(runs[0].protocol).__name__} has no execute_seeds"
    why = executor.seed_axis_why_not(runs)
    if why:
        return [], why
    try:
        model = StackedModel([run.model for run in runs])
    except Unstackable as error:
        return [], str(error)
    device = runs[0].device
    cuda = cuda_device(device)
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for p in chunk:  # the specs are accepted: now each run has a folder of its own
        p.writer.claim()
        p.result.path = str(p.writer.folder) if p.writer.enabled else ""
    model.bind()
    axis = SeedAxis(chunk, model)
    seeds = [p.result.seed for p in chunk]
    record: dict[str, Any] = {"stacked": len(chunk), "why_not": None, "chunk": seeds,
                              "memory_per_seed_estimate_bytes": estimate}
    for p in chunk:
        p.result.provenance[SEED_AXIS] = record
    started = time.perf_counter()
    shared = chunk[0].result.warnings  # one computation: its warnings are every seed's
    for p in chunk:
        p.result.warnings = shared
    with runner._signals_interrupt(), run_warnings.collect(shared):
        try:
            execute(axis, executor)
        except KeyboardInterrupt as interrupt:
            running = axis.active()
            interrupted(axis, interrupt)
            if running:  # the CLI names this folder
                interrupt.result = chunk[running[0]].result  # type: ignore[attr-defined]
            raise
    record["seconds"] = time.perf_counter() - started
    if cuda:
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - baseline
        record["peak_memory_per_seed_bytes"] = int(peak / len(chunk))
        record["peak_memory_source"] = "torch.cuda.max_memory_allocated"
    else:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        record["peak_rss_growth_bytes"] = int(rss - rss_before)
        record["peak_memory_per_seed_bytes"] = estimate
        record["peak_memory_source"] = ("estimate: parameters, gradients, optimizer state "
                                        "and one batch's activations")
    for p in chunk:
        _resave(p.result)
    return [p.result for p in chunk], ""


def _sequential(spec: Any, seeds: Sequence[int], names: Sequence[str] | None, offset: int,
                registry: Any, overrides: Sequence[str], study: Mapping[str, Any] | None,
                why: str) -> list[Result]:
    from paralab.runner import RunError, run
    from paralab.seed_axis import seed_overrides

    results = []
    for position, seed in enumerate(seeds, offset):
        name = None if names is None else names[position]
        try:
            result = run(spec, registry=registry,
                         overrides=[*overrides, *seed_overrides(seed, name)],
                         study=None if study is None else {**study, "seed": int(seed)})
        except RunError as error:
            result = error.result
        result.provenance[SEED_AXIS] = {"stacked": 1, "why_not": why, "chunk": [int(seed)]}
        _resave(result)
        results.append(result)
    return results


def _resave(result: Result) -> None:
    """Write ``result.json`` again (its seed-axis record added) where the run has a folder."""
    if result.path and (Path(result.path) / RESULT_FILE).is_file():
        write_atomic(Path(result.path) / RESULT_FILE,
                     json.dumps(result.to_dict(), indent=2) + "\n")


# ----------------------------------------------------------------------------- memory


def memory_per_seed(prepared: Any) -> int:
    """An estimate of one stacked seed's training memory, in bytes: its parameters and
    buffers, their gradients, the optimizer's state (two moments for Adam-like, one
    momentum buffer for SGD with momentum) and, for one training batch, every layer's output
    twice (kept for the backward pass, and its gradient)."""
    from paralab.stacked import activation_elements

    run = prepared.context
    model = run.model
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    method = run.method
    name = type(method).__name__.lower() + " " + str(getattr(method, "optimizer_name", ""))
    states = 2 if "adam" in name else 1 if getattr(method, "momentum", 0) else 0
    batch = int(getattr(run.protocol, "batch_size", 32) or 32)
    activations = 0
    try:
        x = run.dataset.x[:batch]
        activations = activation_elements(model, x) * x.element_size() * 2
        activations += x.numel() * x.element_size()
    except Exception:  # noqa: BLE001 - the estimate is then parameters only
        activations = 0
    return int(parameters * (2 + states) + buffers + activations)


def _chunk_size(first: Any, remaining: int, max_parallel_seeds: int | None) -> tuple[int, int]:
    """How many seeds to stack at once, and the per-seed memory estimate."""
    from paralab.seed_axis import available_bytes

    estimate = memory_per_seed(first)
    if max_parallel_seeds is not None:
        return max(1, min(remaining, int(max_parallel_seeds))), estimate
    budget = available_bytes(first.context.device) * MEMORY_SHARE
    return max(1, min(remaining, int(budget // max(estimate, 1)))), estimate
