"""Expectations and variances of :class:`~paralab_quantum.observables.Observable` s on batched
statevectors, differentiable (torch).

A Pauli string maps a basis state ``|b>`` to ``phase(b) |b xor m>`` (``m``: the wires carrying X
or Y; the phase collects ``i (-1)^b`` per Y and ``(-1)^b`` per Z). So ``H psi`` is, per distinct
flip mask ``m``, one gather of the state and one multiply by the summed phases of the terms with
that mask; expectation ``<psi|H psi>`` and variance ``||H psi||^2 - <H>^2`` follow (H is
Hermitian). Observables of Z strings only are one matmul of the probabilities, whatever their
number.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from paralab_quantum.observables import Observable


def _bits(n_qubits: int) -> torch.Tensor:
    index = torch.arange(2**n_qubits)
    shifts = torch.arange(n_qubits - 1, -1, -1)
    return (index[:, None] >> shifts[None, :]) & 1


class PauliSum:
    """One observable compiled for ``n_qubits`` wires: per flip mask, the gather index and the
    summed phase vector (``(Hpsi)[c] = sum_m coef_m[c] * psi[c xor m]``)."""

    def __init__(self, observable: Observable, n_qubits: int) -> None:
        observable.check(n_qubits)
        self.observable = observable
        self.n = n_qubits
        bits = _bits(n_qubits)
        index = torch.arange(2**n_qubits)
        groups: dict[int, torch.Tensor] = {}
        for term in observable.terms:
            mask = 0
            phase = torch.ones(2**n_qubits, dtype=torch.complex128) * term.coefficient
            for wire, letter in term.paulis:
                if letter in ("X", "Y"):
                    mask |= 1 << (n_qubits - 1 - wire)
            source = index ^ mask  # (H psi)[c] takes psi[c ^ m] with the phase of b = c ^ m
            for wire, letter in term.paulis:
                bit = bits[source, wire].to(torch.float64)
                sign = 1 - 2 * bit
                if letter == "Z":
                    phase = phase * sign
                elif letter == "Y":
                    phase = phase * (1j * sign)
            groups[mask] = groups.get(mask, 0) + phase
        self.masks = sorted(groups)
        self.phases = [groups[m] for m in self.masks]
        self.indices = [index ^ m for m in self.masks]
        self.diagonal = self.masks == [0]
        self._cache: dict[tuple[torch.dtype, torch.device], tuple[list, list]] = {}

    def _on(self, dtype: torch.dtype, device: torch.device) -> tuple[list, list]:
        key = (dtype, device)
        if key not in self._cache:
            with torch.inference_mode(False):
                self._cache[key] = ([p.to(dtype=dtype, device=device) for p in self.phases],
                                    [i.to(device) for i in self.indices])
        return self._cache[key]

    def apply(self, state: torch.Tensor) -> torch.Tensor:
        """``H psi`` for every row of ``state`` ``(batch, 2**n)``."""
        phases, indices = self._on(state.dtype, state.device)
        result: torch.Tensor | None = None
        for mask, phase, index in zip(self.masks, phases, indices, strict=True):
            part = (state if mask == 0 else state.index_select(-1, index)) * phase
            result = part if result is None else result + part
        assert result is not None
        return result

    def diagonal_values(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The real diagonal of a Z-only observable, ``(2**n,)``."""
        assert self.diagonal
        return self._on(torch.complex128, device)[0][0].real.to(dtype)


class Measurement:
    """Expectations or variances of several observables, ``(batch, len(observables))``."""

    def __init__(self, observables: Sequence[Observable], n_qubits: int) -> None:
        self.sums = [PauliSum(o, n_qubits) for o in observables]
        self.all_diagonal = all(s.diagonal for s in self.sums)
        self._diagonals: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    def _diagonal_matrix(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (dtype, device)
        if key not in self._diagonals:
            with torch.inference_mode(False):
                self._diagonals[key] = torch.stack(
                    [s.diagonal_values(dtype, device) for s in self.sums], 1)
        return self._diagonals[key]

    def expval(self, state: torch.Tensor) -> torch.Tensor:
        if self.all_diagonal:
            probabilities = torch.view_as_real(state).square().sum(-1)
            return probabilities @ self._diagonal_matrix(probabilities.dtype, state.device)
        columns = [(state.conj() * s.apply(state)).sum(-1).real for s in self.sums]
        return torch.stack(columns, -1)

    def var(self, state: torch.Tensor) -> torch.Tensor:
        if self.all_diagonal:
            probabilities = torch.view_as_real(state).square().sum(-1)
            values = self._diagonal_matrix(probabilities.dtype, state.device)
            mean = probabilities @ values
            return (probabilities @ values.square() - mean.square()).clamp_min(0)
        columns = []
        for s in self.sums:
            applied = s.apply(state)
            mean = (state.conj() * applied).sum(-1).real
            second = torch.view_as_real(applied).square().sum((-1, -2))
            columns.append((second - mean.square()).clamp_min(0))
        return torch.stack(columns, -1)


__all__ = ["Measurement", "PauliSum"]
