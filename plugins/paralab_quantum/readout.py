"""Readout error: each measured qubit's classical bit flips with probability ``p``.

This is PennyLane ``default.mixed``'s ``readout_prob`` (a ``BitFlip(p)`` on every measured wire
after the observable's diagonalizing gates), and what a symmetric confusion matrix
``[[1-p, p], [p, 1-p]]`` per qubit does on hardware. It acts on the measured outcomes, not on the
state, so it composes with either simulator (statevector or density matrix) and costs nothing
extra:

* ``probs``: the probabilities go through the confusion matrix on each qubit's axis;
* ``expval``: a Pauli term of weight ``w`` (non-identity factors) is measured as a product of
  ``w`` flipped +-1 outcomes, so its expectation shrinks by ``(1 - 2p)**w``: the circuit runs
  with each term's coefficient rescaled, exact for any Hamiltonian measured term by term;
* ``var``: Z-only observables take the flipped probabilities (exact); a single Pauli term
  ``c P`` has outcomes ``+-c``, so its variance is ``c**2 - mean**2``. A variance of a sum of
  non-commuting terms has no single readout to flip: refused by name.

All of it is torch arithmetic on the simulator's output, so gradients flow through it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from paralab_quantum.circuit import Circuit, CircuitError
from paralab_quantum.observables import Observable, PauliTerm


def flip_probabilities(probabilities: torch.Tensor, p: float, n_qubits: int) -> torch.Tensor:
    """``(batch, 2**n)`` probabilities after an independent bit flip of probability ``p`` on
    every qubit (wire 0 is the most significant bit)."""
    if not p:
        return probabilities
    batch = probabilities.shape[0]
    out = probabilities.reshape(batch, *([2] * n_qubits))
    for axis in range(1, n_qubits + 1):
        out = (1 - p) * out + p * out.flip(axis)
    return out.reshape(batch, -1)


def _rescaled(observable: Observable, factor: float) -> Observable:
    terms = tuple(PauliTerm(t.coefficient * factor ** len(t.paulis), t.paulis)
                  for t in observable.terms)
    return Observable(terms, f"readout({observable})")


class Readout:
    """What to simulate for ``circuit`` under readout error ``p`` (:attr:`inner`) and how its
    output becomes the measured one (:meth:`__call__`).

    :raises CircuitError: a variance of a non-diagonal sum of several Pauli terms.
    """

    def __init__(self, circuit: Circuit, p: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise CircuitError(f"readout error must be a probability in [0, 1], got {p!r}")
        self.circuit, self.p, self.n = circuit, float(p), circuit.n_qubits
        measured = circuit.measured
        self.mode = circuit.measurement
        self.inner = circuit
        self._values: torch.Tensor | None = None
        self._squares: torch.Tensor | None = None
        if self.mode == "expval":
            self.inner = dataclasses.replace(
                circuit, observables=tuple(_rescaled(o, 1 - 2 * self.p) for o in measured))
        elif self.mode == "var" and all(o.diagonal for o in measured):
            from paralab_quantum.expectations import PauliSum

            self.mode = "var_diagonal"
            self.inner = dataclasses.replace(circuit, measurement="probs", observables=())
            self._values = torch.stack([PauliSum(o, self.n).diagonal_values(
                torch.float64, torch.device("cpu")) for o in measured], 1)
        elif self.mode == "var":
            several = [str(o) for o in measured if len(o.terms) > 1]
            if several:
                raise CircuitError(
                    f"a variance under readout error needs Z-only observables or single Pauli "
                    f"terms; {several[0]!r} sums non-commuting terms (measure its terms as "
                    "separate observables, or use measurement 'expval')")
            self.mode = "var_term"
            self.inner = dataclasses.replace(
                circuit, measurement="expval",
                observables=tuple(_rescaled(o, 1 - 2 * self.p) for o in measured))
            self._squares = torch.tensor([o.terms[0].coefficient ** 2 for o in measured],
                                         dtype=torch.float64)

    def __call__(self, outputs: torch.Tensor) -> torch.Tensor:
        """The measured outputs from the :attr:`inner` circuit's ``outputs``."""
        if self.mode == "expval":
            return outputs
        if self.mode == "var_term":
            assert self._squares is not None
            squares = self._squares.to(outputs.device, outputs.dtype)
            return (squares - outputs.square()).clamp_min(0)
        probabilities = flip_probabilities(outputs, self.p, self.n)
        if self.mode == "probs":
            return probabilities
        assert self._values is not None
        values = self._values.to(probabilities.device, probabilities.dtype)
        mean = probabilities @ values
        return (probabilities @ values.square() - mean.square()).clamp_min(0)

    def wrap(self, build: Callable[[Circuit], Callable]) -> Callable:
        """``build(inner)``'s simulator with the readout error applied to its outputs."""
        run = build(self.inner)

        def measured(x: torch.Tensor | None, weights: torch.Tensor | None) -> torch.Tensor:
            return self(run(x, weights))

        return measured


__all__ = ["Readout", "flip_probabilities"]
