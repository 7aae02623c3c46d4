"""Numerical health: a run whose training loss or parameters turn NaN or infinite fails.

A diverged model still "evaluates" (to chance accuracy), so without this check a run whose
EWC penalty exploded reports ``completed`` and a number. The host checks every phase as it
closes: a non-finite value of any metric whose name holds ``loss``, or a non-finite parameter
of the run's model, fails the run (status ``failed``, the phase and the method named, the
phases before it kept) unless the spec sets ``on_nan = "warn"``.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from paralab.context import Phase, RunContext

logger = logging.getLogger("paralab")

_SUSPECTS = ("lr", "lambda", "weight", "strength", "mu", "alpha", "temperature", "noise")


class NumericalError(FloatingPointError):
    """Training produced NaN or infinity; ``phase`` says where, ``found`` what."""

    def __init__(self, message: str, phase: Phase, found: list[str]) -> None:
        super().__init__(message)
        self.phase = phase
        self.found = found


class NumericalWarning(UserWarning):
    """Training produced NaN or infinity and the spec asked only to be warned."""


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def non_finite_values(run: RunContext, phase: Phase) -> list[str]:
    """What in this phase is not finite: loss metrics and the model's parameters."""
    found = [
        f"{key} = {value}"
        for key, value in phase.metrics.items()
        if "loss" in key and _non_finite(value)
    ]
    model = run.model
    if model is not None:
        named = list(model.named_parameters())
        finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in named]) if named else None
        bad = [] if finite is None or bool(finite.all()) else [  # one device sync per phase
            name for (name, _), ok in zip(named, finite.tolist(), strict=True) if not ok
        ]
        if bad:
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            found.append(f"model parameters {shown}")
    return found


def likely_causes(run: RunContext) -> str:
    """The spec's step sizes and penalty strengths, the usual culprits."""
    suspects = [
        f"{path}.{key} = {value!r}"
        for path, options in run.options.items()
        for key, value in options.items()
        if any(word in key for word in _SUSPECTS) and isinstance(value, (int, float))
    ]
    if not suspects:
        return "a learning rate or penalty strength too large for this model"
    return "too large a step or penalty: " + ", ".join(suspects)


def check_phase(run: RunContext, phase: Phase) -> None:
    """Raise :class:`NumericalError` (or warn, with ``on_nan = "warn"``) when the phase left a
    non-finite loss or parameter."""
    found = non_finite_values(run, phase)
    if not found:
        return
    method = run.spec.method.name
    message = (
        f"training diverged in {phase.kind} {phase.index}: {'; '.join(found)} not finite "
        f"(method {method!r}); likely causes: {likely_causes(run)}. Set on_nan = \"warn\" in "
        "the spec to keep running"
    )
    if run.spec.on_nan == "warn":
        phase.info["numerical_warning"] = message
        logger.warning("%s: %s", run.spec.name, message)
        warnings.warn(message, NumericalWarning, stacklevel=2)
        return
    raise NumericalError(message, phase, found)
