"""The fused path of the density-matrix simulator: superoperators on a paired layout.

A density matrix ``(batch, 2**n, 2**n)`` is held as the vector ``(batch, 4**n)`` whose index
pairs each wire's row bit with its column bit, wire 0 first: ``(r0 c0 r1 c1 ...)`` (or, in the
Pauli basis of :mod:`paralab_quantum.pauli_basis`, each wire's Pauli letter: same shape, real).
A map on wire ``q`` (a 4x4 superoperator) then acts on one axis of a plain view
``(batch, 4**q, 4, 4**(n-q-1))``, and a map on consecutive wires on one axis of 16 or 64
entries: no permutation of the state for any one-qubit operation or for a gate on neighbouring
wires (the CNOT ring's pairs but its last), where the row-then-column layout moved axes twice
per application.

:func:`plan` compiles a gate list into fewer applications, without changing what is computed
(the density matrix is linear in each superoperator, so products of them are exact):

* consecutive one-qubit gates on a wire, each followed by its channel, are multiplied into one
  4x4 superoperator ``S_w = C U_k ... C U_1`` (``U`` the gate's ``U (x) conj(U)``);
* a multi-qubit gate absorbs the pending one-qubit products on its wires,
  ``C^(x)k G (S_a (x) S_b)``, so they cost no pass over the state of their own;
* what is left pending at the end is applied wire by wire.

Autograd differentiates through the small products as through the applications, so the
gradients are those of the gate-by-gate path (``tests/test_quantum_density.py`` checks both to
1e-12 in complex128).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from paralab_quantum.circuit import Gate


@dataclass(frozen=True)
class Apply:
    """One pass over the state: the gate at ``gate`` (an index of the program, or ``None``: a
    one-qubit run only) on ``wires``, after the one-qubit runs ``absorbed`` (per wire of
    ``wires``, an index into :attr:`Plan.runs`, or ``None``)."""

    wires: tuple[int, ...]
    gate: int | None
    absorbed: tuple[int | None, ...]


@dataclass(frozen=True)
class Plan:
    """``runs``: each a tuple of program indices of consecutive one-qubit gates on one wire;
    ``initial``: per wire, the run before any multi-qubit gate touches it (on ``|0...0>`` the
    state after them is a product state, built without a pass); ``steps``: the passes."""

    runs: tuple[tuple[int, ...], ...]
    initial: dict[int, int]
    steps: tuple[Apply, ...]


def plan(program: Sequence[Gate], product_start: bool = True) -> Plan:
    """The applications that compute ``program`` with one-qubit runs fused and absorbed;
    ``product_start``: the state starts as ``|0...0>`` (else the initial runs are passes)."""
    pending: dict[int, list[int]] = {}
    runs: list[tuple[int, ...]] = []
    initial: dict[int, int] = {}
    touched: set[int] = set()
    steps: list[Apply] = []

    def take(wire: int) -> int | None:
        if wire not in pending:
            return None
        runs.append(tuple(pending.pop(wire)))
        return len(runs) - 1

    for index, gate in enumerate(program):
        if len(gate.wires) == 1:
            pending.setdefault(gate.wires[0], []).append(index)
            continue
        absorbed = []
        for wire in gate.wires:
            run_id = take(wire)
            if product_start and wire not in touched and run_id is not None:
                initial[wire] = run_id
                run_id = None
            absorbed.append(run_id)
            touched.add(wire)
        steps.append(Apply(gate.wires, index, tuple(absorbed)))
    for wire in sorted(pending):
        run_id = take(wire)
        assert run_id is not None
        if product_start and wire not in touched:
            initial[wire] = run_id
        else:
            steps.append(Apply((wire,), None, (run_id,)))
    return Plan(tuple(runs), initial, tuple(steps))


def signatures(program: Sequence[Gate], runs: Sequence[tuple[int, ...]]
               ) -> dict[tuple[tuple[str, tuple[str, ...]], ...], list[int]]:
    """Runs grouped by their gates' names and parameter sources: a group's superoperators are
    built together, one op per gate position for all its runs."""
    groups: dict[tuple[tuple[str, tuple[str, ...]], ...], list[int]] = {}
    for run_id, run_ in enumerate(runs):
        key = tuple((program[i].name, tuple(a.source for a in program[i].params)) for i in run_)
        groups.setdefault(key, []).append(run_id)
    return groups


def to_paired(rho: torch.Tensor, n: int) -> torch.Tensor:
    """``(B, 2**n, 2**n)`` -> the paired vector ``(B, 4**n)``."""
    batch = rho.shape[0]
    order = [axis for q in range(n) for axis in (1 + q, 1 + n + q)]
    return rho.reshape(batch, *([2] * (2 * n))).permute(0, *order).reshape(batch, 4**n)


def from_paired(vector: torch.Tensor, n: int) -> torch.Tensor:
    """The paired vector ``(B, 4**n)`` -> ``(B, 2**n, 2**n)``."""
    batch = vector.shape[0]
    order = [1 + 2 * q for q in range(n)] + [2 + 2 * q for q in range(n)]
    return vector.reshape(batch, *([2] * (2 * n))).permute(0, *order).reshape(
        batch, 2**n, 2**n)


def gate_superoperator(matrix: torch.Tensor, k: int) -> torch.Tensor:
    """``U (x) conj(U)`` ``(P, 4**k, 4**k)`` in the paired order ``(r1 c1 r2 c2 ...)``."""
    d = 2**k
    full = torch.einsum("pab,pcd->pacbd", matrix, matrix.conj())  # (row, col) bit groups
    if k == 1:
        return full.reshape(-1, 4, 4)
    pairs = [axis for j in range(k) for axis in (1 + j, 1 + k + j)]
    order = [0, *pairs, *[2 * k + a for a in pairs]]
    return full.reshape(-1, *([2] * (4 * k))).permute(order).reshape(-1, d * d, d * d)


def kron(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Batched Kronecker product ``(P, a, a) (x) (Q, b, b)`` -> ``(max(P, Q), ab, ab)``."""
    a, b = left.shape[-1], right.shape[-1]
    out = left[:, :, None, :, None] * right[:, None, :, None, :]
    return out.reshape(out.shape[0], a * b, a * b)


def reorder(matrix: torch.Tensor, wires: tuple[int, ...]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """The superoperator on ``wires`` re-indexed for the same wires in increasing order."""
    order = sorted(range(len(wires)), key=lambda j: wires[j])
    if order == list(range(len(wires))):
        return matrix, wires
    k = len(wires)
    axes = [0, *[1 + j for j in order], *[1 + k + j for j in order]]
    moved = matrix.reshape(-1, *([4] * (2 * k))).permute(axes).reshape(-1, 4**k, 4**k)
    return moved, tuple(sorted(wires))


def apply(state: torch.Tensor, matrix: torch.Tensor, wires: tuple[int, ...],
          n: int) -> torch.Tensor:
    """``matrix`` ``(P, 4**k, 4**k)`` on the pairs of sorted ``wires`` of ``state`` ``(B, 4**n)``."""
    k = len(wires)
    rows = max(state.shape[0], matrix.shape[0])
    if list(wires) == list(range(wires[0], wires[0] + k)):
        left, right = 4 ** wires[0], 4 ** (n - wires[0] - k)
        # one matrix for the whole batch: as a 2-D one torch folds the batch into one matrix
        # product (a broadcast 3-D one backpropagates through one small product per row); a
        # batch of matrices, or a single long row block, stays a batched product
        shared = matrix[0] if matrix.shape[0] == 1 else None
        if right == 1:
            out = state.reshape(state.shape[0], left, 4**k) @ (
                matrix.mT if shared is None else shared.mT)
        else:
            view = state.reshape(state.shape[0], left, 4**k, right)
            if shared is not None and (left > 1 or right < 256):
                size = 4**k
                flat = view.transpose(-1, -2).reshape(-1, size) @ shared.mT  # one 2-D product
                out = flat.reshape(state.shape[0], left, right, size).transpose(-1, -2)
            else:
                out = matrix[:, None] @ view
        return out.reshape(rows, 4**n)
    source = [1 + w for w in wires]
    target = list(range(n + 1 - k, n + 1))
    moved = state.reshape(state.shape[0], *([4] * n)).movedim(source, target)
    shape = moved.shape[1:]
    out = moved.reshape(state.shape[0], -1, 4**k) @ (
        matrix[0].mT if matrix.shape[0] == 1 else matrix.mT)
    return out.reshape(rows, *shape).movedim(target, source).reshape(rows, 4**n)


PAULI_BASIS = [[[1, 0], [0, 1]], [[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]]
"""I, X, Y, Z: the Pauli transfer basis of one wire."""


def to_pauli_matrix(dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """``T`` with ``(T vec(rho))_p = Tr(P_p rho)`` on one wire (index ``2 r + c``); its inverse
    is ``T^dagger / 2``. A superoperator ``S`` becomes the real Pauli transfer matrix
    ``T S T^-1`` (a channel maps Hermitian to Hermitian): a quarter of the multiply-adds of a
    complex one, on a real state half the size."""
    paulis = torch.tensor(PAULI_BASIS, dtype=torch.complex128)
    return paulis.transpose(1, 2).reshape(4, 4).to(dtype)  # T[p, 2r + c] = P_p[c, r]


def product_state(initial: dict[int, torch.Tensor], n: int, dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """The Pauli-basis paired ``(P, 4**n)`` product state: wire ``w`` in ``initial[w]`` (a
    Pauli transfer matrix) applied to ``|0><0|`` = ``(I + Z) / 2``, the others in ``|0><0|``
    (Pauli vector ``(1, 0, 0, 1)``)."""
    zero = torch.zeros(1, 4, dtype=dtype, device=device)
    zero[:, 0] = zero[:, 3] = 1
    state: torch.Tensor | None = None
    for wire in range(n):
        vector = (initial[wire][:, :, 0] + initial[wire][:, :, 3] if wire in initial
                  else zero)
        state = vector if state is None else (state[:, :, None] * vector[:, None, :]).reshape(
            max(state.shape[0], vector.shape[0]), -1)
    assert state is not None
    return state


def run(state: torch.Tensor, steps: Sequence[Apply], n: int, runs: Sequence[torch.Tensor],
        gate: Callable[[int], torch.Tensor], identity: torch.Tensor) -> torch.Tensor:
    """Apply ``steps`` to the paired ``state``: ``runs[r]`` is run ``r``'s 4x4 superoperator
    (its gates with their channels, multiplied), ``gate(i)`` that of multi-qubit program gate
    ``i`` with the channel on each of its wires (paired order), ``identity`` the 4x4 one."""
    for step in steps:
        if step.gate is None:
            run_id = step.absorbed[0]
            assert run_id is not None
            matrix = runs[run_id]
        else:
            matrix = gate(step.gate)
            if any(r is not None for r in step.absorbed):
                inner: torch.Tensor | None = None
                for run_id in step.absorbed:
                    factor = identity if run_id is None else runs[run_id]
                    inner = factor if inner is None else kron(inner, factor)
                assert inner is not None
                matrix = matrix @ inner
        matrix, wires = reorder(matrix, step.wires)
        state = apply(state, matrix, wires, n)
    return state


__all__ = ["Apply", "Plan", "apply", "from_paired", "gate_superoperator", "kron", "plan",
           "product_state", "run", "signatures", "to_paired"]
