"""Sanity checks for attributions (Adebayo et al. 2018): do they depend on the model at all?

An explanation that barely changes when the model's weights are replaced by random ones
explains the input (edges, magnitudes), not the model. The model-parameter randomisation test
re-initialises a copy of the model and compares the attributions of the same rows, for the
same classes, before and after, by the Spearman rank correlation per row (of absolute values,
as the paper's figures, and signed), averaged over rows: near 1 means "insensitive to the
model" (the check fails), near 0 means the attributions depend on what the model learned.

Randomisations (``randomization``):

* ``"cascading"``: the layers are re-initialised one more at a time from the output backwards,
  and the correlation is reported after each step (the paper's cascading test);
* ``"independent"``: each layer alone is re-initialised (the paper's independent test);
* ``"full"``: every layer at once;
* ``"none"``: no change (a control: the correlation must be 1).

A layer is a module with parameters of its own and a ``reset_parameters`` method (``Linear``,
``Conv2d``, norms, ...). Re-initialisation draws from a generator seeded with ``seed`` inside a
fork of the random stream, so the run's own randomness (its training) is not disturbed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from paralab_explain.choices import RANDOMIZATIONS
from paralab_explain.errors import ExplainError


def layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The re-initialisable layers of ``model``, input first (``named_modules`` order)."""
    return [(name, module) for name, module in model.named_modules()
            if hasattr(module, "reset_parameters") and any(True for _ in module.parameters(
                recurse=False))]


def randomized(model: nn.Module, names: Sequence[str], seed: int) -> nn.Module:
    """A copy of ``model`` whose layers ``names`` are re-initialised (seeded; the global random
    stream is restored afterwards)."""
    clone = copy.deepcopy(model)
    modules = dict(clone.named_modules())
    device = next((p.device for p in clone.parameters()), torch.device("cpu"))
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for name in names:
            modules[name].reset_parameters()
    return clone


def rank_correlation(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation per row of two ``(rows, F)`` tensors, ``(rows,)``.

    A row that is constant in either tensor has no ranking: its correlation is NaN."""
    def ranks(values: torch.Tensor) -> torch.Tensor:
        return values.double().argsort(dim=1).argsort(dim=1).double()

    a, b = ranks(first), ranks(second)
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    denominator = (a.norm(dim=1) * b.norm(dim=1))
    constant = (first.double().std(dim=1) == 0) | (second.double().std(dim=1) == 0)
    correlation = (a * b).sum(dim=1) / denominator.clamp(min=1e-30)
    return torch.where(constant, torch.full_like(correlation, float("nan")), correlation)


def _compare(before: torch.Tensor, after: torch.Tensor) -> dict[str, float]:
    absolute = rank_correlation(before.abs(), after.abs())
    signed = rank_correlation(before, after)
    return {"rank_correlation_abs": _mean(absolute), "rank_correlation": _mean(signed)}


def _mean(values: torch.Tensor) -> float:
    finite = values[~values.isnan()]
    return float(finite.mean()) if len(finite) else float("nan")


def parameter_randomization(
    model: nn.Module,
    attribute: Callable[[nn.Module], torch.Tensor],
    *,
    randomization: str = "cascading",
    seed: int = 0,
) -> dict[str, Any]:
    """The model-parameter randomisation test for one attribution method.

    ``attribute(model)`` returns the attributions ``(rows, F)`` of the same rows and targets by
    the given model. Returns the correlations (see the module docstring): for ``cascading`` and
    ``independent`` one entry per step in ``steps`` (layer names) and the last/lowest values at
    the top level; for ``full`` and ``none`` one comparison.
    """
    if randomization not in RANDOMIZATIONS:
        raise ExplainError(f"randomization: {randomization!r} unknown; valid: "
                           f"{', '.join(RANDOMIZATIONS)}")
    found = [name for name, _ in layers(model)]
    if not found and randomization != "none":
        raise ExplainError(
            f"randomization: the model {type(model).__name__} has no layer with parameters and "
            "reset_parameters() to re-initialise; use randomization = 'none' or another model")
    before = attribute(model)
    report: dict[str, Any] = {"randomization": randomization, "layers": len(found)}
    if randomization in ("full", "none"):
        names = found if randomization == "full" else []
        report.update(_compare(before, attribute(randomized(model, names, seed))))
        return report
    steps = []
    for position in range(len(found)):
        if randomization == "cascading":
            names = found[len(found) - 1 - position:]  # the output layer first
            label = found[len(found) - 1 - position]
        else:
            names = [found[position]]
            label = found[position]
        entry = {"layer": label, **_compare(before, attribute(randomized(model, names, seed)))}
        steps.append(entry)
    report["steps"] = steps
    if randomization == "cascading":  # every layer re-initialised at the last step
        report.update({key: steps[-1][key] for key in ("rank_correlation_abs", "rank_correlation")})
    else:  # the layer whose randomisation changes the attributions least
        report.update({key: max(step[key] for step in steps)
                       for key in ("rank_correlation_abs", "rank_correlation")})
    return report
