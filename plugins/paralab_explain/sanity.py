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
* ``"none"``: no change (a control: the correlation must be 1);
* ``"data"``: the data randomisation test: a copy of the model, re-initialised, is trained on
  the training rows with their labels *permuted* (it can only memorise), and its attributions
  are compared with the run's model's (:func:`data_randomization`). As a control the same
  re-initialised copy is trained the same way on the true labels: a method that depends on what
  the labels taught must correlate more with that retrained model than with the shuffled one.

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
    if randomization == "data":
        raise ExplainError("randomization: 'data' retrains the model; call data_randomization")
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


def retrained(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float,
              batch_size: int, seed: int) -> tuple[nn.Module, float]:
    """A copy of ``model`` with every layer re-initialised (seeded), trained by Adam on
    ``(x, y)`` for ``epochs`` passes of ``batch_size`` rows (0: full batch); returns it (in
    eval mode) and its accuracy on ``(x, y)``. The global random stream is left alone."""
    clone = randomized(model, [name for name, _ in layers(model)], seed)
    device = next((p.device for p in clone.parameters()), torch.device("cpu"))
    devices = [device.index or 0] if device.type == "cuda" else []
    x, y = x.to(device), y.to(device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    optimizer = torch.optim.Adam(clone.parameters(), lr=lr)
    size = len(x) if batch_size <= 0 else batch_size
    clone.train()
    with torch.random.fork_rng(devices=devices), torch.enable_grad():  # dropout's draws
        torch.manual_seed(seed)
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator).to(device)
            for start in range(0, len(x), size):
                rows = order[start:start + size]
                optimizer.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(clone(x[rows]), y[rows]).backward()
                optimizer.step()
    clone.eval()
    with torch.no_grad():
        accuracy = float((clone(x).argmax(1) == y).float().mean())
    return clone, accuracy


def shuffled_labels(y: torch.Tensor, seed: int) -> torch.Tensor:
    """``y`` permuted by a seeded generator (the data randomisation test's labels)."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    return y[order.to(y.device)]


def data_randomization(
    model: nn.Module,
    attributes: dict[str, Callable[[nn.Module], torch.Tensor]],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 50,
    lr: float = 0.01,
    batch_size: int = 128,
    seed: int = 0,
) -> dict[str, Any]:
    """The data randomisation test for several attribution methods at once.

    Two re-initialised copies of ``model`` are trained the same way on the training rows
    ``(x, y)``: one on ``y`` permuted, one on ``y`` itself (the control). For each method in
    ``attributes`` (``attribute(model) -> (rows, F)``, the same explained rows and targets) the
    report holds the rank correlations with the run's model of the shuffled model's attributions
    (``rank_correlation_abs``, ``rank_correlation``) and of the control's
    (``control_rank_correlation_abs``, ...), plus both models' training accuracies (the
    shuffled one's on its permuted labels: how far it memorised them).
    """
    labels = shuffled_labels(y, seed)
    shuffled, memorised = retrained(model, x, labels, epochs=epochs, lr=lr,
                                    batch_size=batch_size, seed=seed)
    control, fitted = retrained(model, x, y, epochs=epochs, lr=lr, batch_size=batch_size,
                                seed=seed)
    report: dict[str, Any] = {
        "randomization": "data", "train_rows": len(x),
        "shuffled_train_accuracy": memorised, "control_train_accuracy": fitted,
        "label_agreement": float((labels == y).float().mean()),
    }
    for method, attribute in attributes.items():
        before = attribute(model)
        entry = _compare(before, attribute(shuffled))
        entry.update({f"control_{key}": value
                      for key, value in _compare(before, attribute(control)).items()})
        report[method] = entry
    return report
