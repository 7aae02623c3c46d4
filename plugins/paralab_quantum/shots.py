"""Shots during training: sampled expectations, differentiated by the parameter-shift rule.

What a model sees on hardware: each Pauli term of each observable is estimated from ``shots``
+-1 outcomes (its mean is ``2 * Binomial(shots, (1 + <P>) / 2) / shots - 1``, the exact law of a
sample mean of a +-1 variable), and a gradient is itself estimated from shot-sampled circuits
at shifted parameters, never from the state. :class:`ShotParameterShift` does both on the
torch simulators (statevector, or density matrix under :class:`~paralab_quantum.density.Noise`;
a readout error scales each term's mean before it is sampled).

Every gate parameter occurrence (an embedding angle, a weight, a re-uploaded input) is one
column of a per-row parameter matrix; the circuit is compiled once with each occurrence as its
own input, so all shifted circuits of a batch are one batched simulator call. The rule per
gate parameter comes from the operation table (:func:`shift_rule`): a parameter in one Pauli
rotation of an uncontrolled gate (generator eigenvalues +-1/2: frequency 1) takes the two-term
rule ``[f(t + pi/2) - f(t - pi/2)] / 2``; a controlled one (eigenvalues 0, +-1/2 - phase:
frequencies 1/2 and 1 for CRX/CRY/CRZ) the four-term rule with shifts pi/2 and 3pi/2 and
coefficients ``(sqrt 2 +- 1) / (4 sqrt 2)`` (Wierichs et al. 2022; PennyLane's CRX rule), or
the two-term rule when only frequency 1 occurs (CP). Torch's chain rule then carries the
parameter gradients back to the weights and to whatever computed the inputs (a hybrid model's
classical front). ``shots = 0`` is the analytic rule: exact expectations, exact shifts.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from paralab_quantum.circuit import Angle, Circuit, CircuitError, Gate, resolve
from paralab_quantum.operations import OPERATIONS

_C = math.sqrt(2)
_TWO_TERM = ((math.pi / 2, 0.5), (-math.pi / 2, -0.5))
_FOUR_TERM = ((math.pi / 2, (_C + 1) / (4 * _C)), (-math.pi / 2, -(_C + 1) / (4 * _C)),
              (3 * math.pi / 2, -(_C - 1) / (4 * _C)), (-3 * math.pi / 2, (_C - 1) / (4 * _C)))


def shift_rule(name: str, index: int) -> tuple[tuple[float, float], ...]:
    """``(shift, coefficient)`` pairs: ``df/dt = sum c * f(t + shift)`` for parameter ``index``
    of gate ``name``, from the record's rotations, phase and controls.

    :raises CircuitError: the parameter's frequencies are not covered by a built rule.
    """
    op = OPERATIONS[name]
    base = OPERATIONS[op.target] if op.controls else op
    factors = [r for r in base.rotations if r.index == index]
    if len(factors) != 1:
        raise CircuitError(f"gate {name} parameter {index}: no parameter-shift rule (it enters "
                           f"{len(factors)} rotations; one is needed)")
    if not op.controls:
        return _TWO_TERM  # generator +-1/2 (a global phase does not change expectations)
    phase = base.phase[index] if base.phase else 0.0
    eigen = {0.0, round(0.5 - phase, 12), round(-0.5 - phase, 12)}
    frequencies = {round(abs(a - b), 12) for a in eigen for b in eigen} - {0.0}
    if frequencies <= {1.0}:
        return _TWO_TERM
    if frequencies <= {0.5, 1.0}:
        return _FOUR_TERM
    raise CircuitError(f"gate {name} parameter {index}: frequencies {sorted(frequencies)} have "
                       "no built parameter-shift rule")


class ShotParameterShift:
    """``circuit``'s expectations estimated from ``shots`` per Pauli term, differentiable by
    the parameter-shift rule (each shifted circuit also sampled). Call with ``(x, weights)``
    like a simulator; ``generator`` seeds the sampling.

    :raises CircuitError: measurement other than ``expval``, an amplitude embedding (a state
        preparation, not a rotation), or a gate without a rule.
    """

    def __init__(self, circuit: Circuit, shots: int, *, noise: Any = None,
                 dtype: torch.dtype = torch.complex128, memory_limit: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        if circuit.measurement != "expval":
            raise CircuitError(f"shots with the parameter-shift rule estimate expectations: "
                               f"measurement must be 'expval', got {circuit.measurement!r}")
        if circuit.amplitude:
            raise CircuitError("shots with the parameter-shift rule need rotation embeddings "
                               "(angle or zz), not 'amplitude' (a state preparation)")
        if not isinstance(shots, int) or shots < 0:
            raise CircuitError(f"shots must be an integer >= 0 (0: exact), got {shots!r}")
        self.circuit, self.shots, self.generator = circuit, shots, generator
        self.occurrences: list[Angle] = []
        self.rules: list[tuple[tuple[float, float], ...]] = []
        gates = []
        for gate in circuit.program():
            params = []
            for k, angle in enumerate(gate.params):
                if angle.source == "const":
                    params.append(angle)
                    continue
                self.rules.append(shift_rule(gate.name, k))
                params.append(Angle("x", len(self.occurrences)))
                self.occurrences.append(angle)
            gates.append(Gate(gate.name, gate.wires, params=tuple(params)))
        # every Pauli term once, with its coefficients in each observable
        words: dict[tuple, int] = {}
        self.constants = torch.zeros(len(circuit.measured), dtype=torch.float64)
        entries = []
        for o, observable in enumerate(circuit.measured):
            for term in observable.terms:
                if not term.paulis:
                    self.constants[o] += term.coefficient
                    continue
                t = words.setdefault(term.paulis, len(words))
                entries.append((t, o, term.coefficient))
        self.mixing = torch.zeros(len(words), len(circuit.measured), dtype=torch.float64)
        for t, o, c in entries:
            self.mixing[t, o] += c
        from paralab_quantum.observables import Observable, PauliTerm

        terms = tuple(Observable((PauliTerm(1.0, w),), "") for w in words)
        readout = float(getattr(noise, "readout", 0.0) or 0.0)
        self.scale = torch.tensor([(1 - 2 * readout) ** len(w) for w in words],
                                  dtype=torch.float64)
        flat = Circuit(circuit.n_qubits, embedding=None, ansatz=None, gates=tuple(gates),
                       measurement="expval", observables=terms or (Observable.pauli_z(0),))
        if noise is not None and noise.channels():
            import dataclasses

            from paralab_quantum.density import DensityMatrixSimulator

            simulator: Any = DensityMatrixSimulator(
                flat, dataclasses.replace(noise, readout=0.0), dtype=dtype,
                memory_limit=memory_limit)
            simulator._pure.angles = _identity
        else:
            from paralab_quantum.simulator import TorchSimulator

            simulator = TorchSimulator(flat, dtype=dtype, memory_limit=memory_limit)
            simulator.angles = _identity
        self._simulator = simulator
        self._has_terms = bool(words)

    def parameters_of(self, x: torch.Tensor | None, weights: torch.Tensor) -> torch.Tensor:
        """Every gate parameter occurrence's value per row, ``(batch, K)`` (differentiable)."""
        angles = None
        if x is not None and self.circuit.reads_inputs:
            x = x.reshape(x.shape[0], -1).to(torch.float64)
            self.circuit.check_features(x.shape[1], "shot simulator")
            angles = torch.stack(self.circuit.angle_terms(list(x.unbind(1))), 1)
        batch = 1 if x is None else x.shape[0]
        weights = weights.reshape(-1).to(torch.float64)
        columns = [resolve(a, angles, weights, lambda v, i: v[..., i]) for a in self.occurrences]
        columns = [c.expand(batch) if c.dim() == 0 else c for c in columns]
        if not columns:
            return torch.zeros(batch, 0, dtype=torch.float64, device=weights.device)
        return torch.stack(columns, 1)

    def terms(self, values: torch.Tensor) -> torch.Tensor:
        """Each Pauli term's estimated mean ``(rows, n_terms)`` at parameters ``values``."""
        exact = self._simulator(values, None).to(torch.float64)[:, : self.mixing.shape[0]]
        exact = exact * self.scale.to(exact.device)
        if not self.shots:
            return exact
        p_plus = ((1 + exact) / 2).clamp(0, 1)
        count = torch.full_like(p_plus, float(self.shots))
        ones = torch.binomial(count.cpu(), p_plus.cpu(), generator=self.generator)
        return (2 * ones / self.shots - 1).to(exact.device)

    def outputs(self, terms: torch.Tensor) -> torch.Tensor:
        return terms @ self.mixing.to(terms.device) + self.constants.to(terms.device)

    def __call__(self, x: torch.Tensor | None, weights: torch.Tensor) -> torch.Tensor:
        values = self.parameters_of(x, weights)
        if not self._has_terms:
            return self.constants.expand(values.shape[0], -1).clone()
        return _Shift.apply(values, self)


def _identity(x: Any) -> Any:
    return x


class _Shift(torch.autograd.Function):
    """Forward: sampled expectations at ``values``; backward: the shift rule per column, every
    shifted circuit sampled afresh, all in one batched simulator call."""

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, owner: ShotParameterShift) -> torch.Tensor:
        ctx.owner = owner
        ctx.save_for_backward(values)
        with torch.no_grad():
            return owner.outputs(owner.terms(values))

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        owner: ShotParameterShift = ctx.owner
        values, = ctx.saved_tensors
        batch, k = values.shape
        shifted, coefficients, columns = [], [], []
        for column, rule in enumerate(owner.rules):
            for shift, coefficient in rule:
                moved = values.clone()
                moved[:, column] += shift
                shifted.append(moved)
                coefficients.append(coefficient)
                columns.append(column)
        with torch.no_grad():
            outputs = owner.outputs(owner.terms(torch.cat(shifted)))  # (S * batch, O)
            outputs = outputs.reshape(len(shifted), batch, -1)
            weighted = (outputs * grad_output.to(outputs.dtype)[None]).sum(-1)  # (S, batch)
            grad = torch.zeros(batch, k, dtype=values.dtype, device=values.device)
            scale = torch.tensor(coefficients, dtype=values.dtype, device=values.device)
            index = torch.tensor(columns, device=values.device)
            grad.index_add_(1, index, (weighted * scale[:, None]).T)
        return grad, None


__all__ = ["ShotParameterShift", "shift_rule"]
