"""Density matrices in the Pauli basis: measurements without converting back.

The fused density-matrix path (:mod:`paralab_quantum.superop`) holds a state as its real Pauli
vector ``r_s = Tr(rho P_s)`` for every Pauli string ``s`` (one of I, X, Y, Z per wire, wire 0
most significant, base 4). Then

* the expectation of a Pauli string is one entry of ``r``, of a weighted sum (a Hamiltonian)
  one gather and one matmul;
* ``<H^2>`` is the same for ``H^2``, whose Pauli expansion is computed once, exactly, from the
  products of the terms (``P_a P_b = phase P_c`` per wire; the imaginary phases cancel for a
  Hermitian ``H``): the variance needs no density matrix either;
* the probabilities read only the I/Z strings: ``p = 2**-n (H (x) ... (x) H) r_IZ`` with
  ``H = [[1, 1], [1, -1]]``, one gather and one matmul.

:func:`to_pauli` and :func:`from_pauli` convert a paired ``(B, 4**n)`` density matrix to and
from the basis, wire by wire with element-wise ops (no complex matmul, whose broadcast backward
on CPU falls back to one small product per matrix).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from paralab_quantum.observables import Observable

LETTERS = "IXYZ"

_PRODUCT = {  # P_a P_b = phase * P_c, (a, b) -> (phase, c)
    ("I", b): (1, b) for b in LETTERS
} | {(a, "I"): (1, a) for a in LETTERS} | {
    (a, a): (1, "I") for a in LETTERS
} | {
    ("X", "Y"): (1j, "Z"), ("Y", "X"): (-1j, "Z"), ("Y", "Z"): (1j, "X"),
    ("Z", "Y"): (-1j, "X"), ("Z", "X"): (1j, "Y"), ("X", "Z"): (-1j, "Y"),
}


def index(paulis: Sequence[tuple[int, str]], n: int) -> int:
    """The Pauli-vector index of the string with ``paulis`` (``(wire, letter)``), I elsewhere."""
    flat = 0
    for wire, letter in paulis:
        flat += LETTERS.index(letter) * 4 ** (n - 1 - wire)
    return flat


def expansion(observable: Observable, n: int) -> dict[int, float]:
    """``H`` as ``{Pauli-vector index: coefficient}`` (repeated strings summed)."""
    out: dict[int, float] = {}
    for term in observable.terms:
        key = index(term.paulis, n)
        out[key] = out.get(key, 0.0) + term.coefficient
    return out


def square_expansion(observable: Observable, n: int) -> dict[int, float]:
    """``H^2`` as ``{index: coefficient}``: every product of two terms, wire by wire."""
    out: dict[int, complex] = {}
    for left in observable.terms:
        a = dict(left.paulis)
        for right in observable.terms:
            b = dict(right.paulis)
            phase: complex = left.coefficient * right.coefficient
            word = []
            for wire in range(n):
                factor, letter = _PRODUCT[(a.get(wire, "I"), b.get(wire, "I"))]
                phase *= factor
                if letter != "I":
                    word.append((wire, letter))
            key = index(word, n)
            out[key] = out.get(key, 0) + phase
    return {key: value.real for key, value in out.items() if abs(value) > 0}


class PauliMeasurement:
    """Expectations ``(B, k)`` (or variances) of ``observables`` from Pauli vectors ``(B, 4**n)``,
    and the probabilities ``(B, 2**n)``."""

    def __init__(self, observables: Sequence[Observable], n: int, variance: bool) -> None:
        self.n = n
        self.variance = variance
        first = [expansion(o, n) for o in observables]
        second = [square_expansion(o, n) for o in observables] if variance else []
        keys = sorted({k for e in first + second for k in e})
        self._index = torch.tensor(keys, dtype=torch.long)
        position = {k: j for j, k in enumerate(keys)}
        self._first = self._matrix(first, position, len(keys))
        self._second = self._matrix(second, position, len(keys)) if variance else None
        iz = [sum((3 if (b >> (n - 1 - w)) & 1 else 0) * 4 ** (n - 1 - w) for w in range(n))
              for b in range(2**n)]
        self._iz = torch.tensor(iz, dtype=torch.long)
        signs = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64) / 2
        hadamard = signs
        for _ in range(n - 1):
            hadamard = torch.kron(hadamard, signs)
        self._hadamard = hadamard  # symmetric: p = r_IZ @ H
        self._cache: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}

    @staticmethod
    def _matrix(expansions: Sequence[dict[int, float]], position: dict[int, int],
                size: int) -> torch.Tensor:
        matrix = torch.zeros(size, len(expansions), dtype=torch.float64)
        for column, terms in enumerate(expansions):
            for key, coefficient in terms.items():
                matrix[position[key], column] += coefficient
        return matrix

    def _on(self, name: str, tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        key = (name, like.dtype, like.device)
        if key not in self._cache:
            with torch.inference_mode(False):
                dtype = like.dtype if tensor.is_floating_point() else tensor.dtype
                # a copy: the compiled tensors may have been made in inference mode
                self._cache[key] = tensor.to(dtype=dtype, device=like.device).clone()
        return self._cache[key]

    def values(self, state: torch.Tensor) -> torch.Tensor:
        """Expectations, or variances ``<H^2> - <H>^2``, ``(B, k)``."""
        picked = state.index_select(-1, self._on("index", self._index, state))
        mean = picked @ self._on("first", self._first, state)
        if not self.variance:
            return mean
        assert self._second is not None
        return picked @ self._on("second", self._second, state) - mean.square()

    def probabilities(self, state: torch.Tensor) -> torch.Tensor:
        picked = state.index_select(-1, self._on("iz", self._iz, state))
        return picked @ self._on("hadamard", self._hadamard, state)


def to_pauli(state: torch.Tensor, n: int) -> torch.Tensor:
    """A paired complex density matrix ``(B, 4**n)`` (index ``2 r + c`` per wire) -> its real
    Pauli vector: per wire ``(rho00 + rho11, rho01 + rho10, i (rho01 - rho10), rho00 - rho11)``."""
    batch = state.shape[0]
    for wire in range(n):
        view = state.reshape(batch, 4**wire, 4, -1)
        a, b, c, d = view.unbind(2)
        state = torch.stack([a + d, b + c, 1j * (b - c), a - d], 2).reshape(batch, -1)
    return state.real


def from_pauli(state: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """The inverse of :func:`to_pauli`: per wire ``((I + Z), (X - iY), (X + iY), (I - Z)) / 2``."""
    batch = state.shape[0]
    state = state.to(dtype)
    for wire in range(n):
        view = state.reshape(batch, 4**wire, 4, -1)
        i, x, y, z = view.unbind(2)
        state = torch.stack([i + z, x - 1j * y, x + 1j * y, i - z], 2).reshape(batch, -1) / 2
    return state


__all__ = ["PauliMeasurement", "expansion", "from_pauli", "index", "square_expansion",
           "to_pauli"]
