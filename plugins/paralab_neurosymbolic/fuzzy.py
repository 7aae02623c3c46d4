"""Logic Tensor Networks' fuzzy semantics (Badreddine et al., AIJ 2022; LTNtorch).

Truth values live in [0, 1]; a formula's truth is computed by differentiable connectives and
aggregators, and training maximises the satisfaction of the axioms (loss ``1 - sat``), instead
of the probability of a world (ProbLog, the semantic loss). Two t-norm families, each with the
connectives LTNtorch pairs with it:

* ``product``: and ``x*y``, or ``x + y - x*y`` (probabilistic sum), implies ``1 - x + x*y``
  (Reichenbach), not ``1 - x``;
* ``lukasiewicz``: and ``max(x + y - 1, 0)``, or ``min(x + y, 1)``, implies ``min(1 - x + y, 1)``,
  not ``1 - x``.

Quantifiers are LTN's generalised means: ``forall`` is ``1 - mean((1 - x)**p)**(1/p)``
(``AggregPMeanError``), ``exists`` is ``mean(x**p)**(1/p)`` (``AggregPMean``). ``stable``
applies LTNtorch's guards (``pi_0``, ``pi_1`` with eps = 1e-4) so gradients stay finite at 0
and 1. ``tests/test_neurosymbolic_fuzzy.py`` checks each against LTNtorch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TNORMS = ("product", "lukasiewicz")
EPS = 1e-4


def _pi_0(x: torch.Tensor) -> torch.Tensor:
    """Keep away from 0: ``(1 - eps) x + eps`` (LTNtorch's ``pi_0``)."""
    return (1 - EPS) * x + EPS


def _pi_1(x: torch.Tensor) -> torch.Tensor:
    """Keep away from 1: ``(1 - eps) x`` (LTNtorch's ``pi_1``)."""
    return (1 - EPS) * x


@dataclass(frozen=True)
class FuzzyLogic:
    """The connectives and quantifiers of one t-norm family (see the module docstring)."""

    tnorm: str = "product"
    p_exists: float = 2.0
    p_forall: float = 2.0
    stable: bool = True

    def __post_init__(self) -> None:
        if self.tnorm not in TNORMS:
            raise ValueError(f"tnorm {self.tnorm!r} unknown; choose from {', '.join(TNORMS)}")
        if not (self.p_exists >= 1 and self.p_forall >= 1):
            raise ValueError(f"the aggregators' p must be >= 1, got exists {self.p_exists}, "
                             f"forall {self.p_forall}")

    def not_(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 - x

    def and_(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.tnorm == "lukasiewicz":
            return torch.clamp(x + y - 1.0, min=0.0)
        if self.stable:
            x, y = _pi_0(x), _pi_0(y)
        return x * y

    def or_(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.tnorm == "lukasiewicz":
            return torch.clamp(x + y, max=1.0)
        if self.stable:
            x, y = _pi_1(x), _pi_1(y)
        return x + y - x * y

    def implies(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.tnorm == "lukasiewicz":
            return torch.clamp(1.0 - x + y, max=1.0)
        if self.stable:
            x, y = _pi_0(x), _pi_1(y)
        return 1.0 - x + x * y

    def exists(self, xs: torch.Tensor, dim: int | tuple[int, ...] | None = None) -> torch.Tensor:
        """The generalised mean ``mean(x**p)**(1/p)``: a smooth maximum as p grows."""
        if self.stable:
            xs = _pi_0(xs)
        mean = xs.pow(self.p_exists).mean() if dim is None else xs.pow(self.p_exists).mean(dim)
        return mean.pow(1.0 / self.p_exists)

    def forall(self, xs: torch.Tensor, dim: int | tuple[int, ...] | None = None) -> torch.Tensor:
        """``1 - mean((1 - x)**p)**(1/p)``: a smooth minimum as p grows."""
        if self.stable:
            xs = _pi_1(xs)
        errors = (1.0 - xs).pow(self.p_forall)
        mean = errors.mean() if dim is None else errors.mean(dim)
        return 1.0 - mean.pow(1.0 / self.p_forall)


def exactly_one_satisfaction(truth: torch.Tensor, logic: FuzzyLogic) -> torch.Tensor:
    """The satisfaction of ``forall x: (exists c: A_c(x)) and (forall c < d: not (A_c(x) and
    A_d(x)))`` over a batch: ``truth[b, c]`` is the truth of ``A_c`` at example ``b``. Returns
    one number (the ``forall`` over the batch)."""
    classes = truth.shape[-1]
    if classes < 2:
        raise ValueError(f"exactly_one needs at least 2 outputs, got {classes}")
    first, second = torch.triu_indices(classes, classes, offset=1, device=truth.device)
    some = logic.exists(truth, dim=-1)
    pairs = logic.not_(logic.and_(truth[:, first], truth[:, second]))
    at_most_one = logic.forall(pairs, dim=-1)
    return logic.forall(logic.and_(some, at_most_one), dim=0)
