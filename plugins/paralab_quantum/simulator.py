"""The native batched statevector simulator: a :class:`~paralab_quantum.circuit.Circuit` in torch.

The state of a whole batch is one complex tensor ``(batch, 2**n)`` on the run's device, and
autograd differentiates through it (backprop), so a training step is a handful of tensor ops
whatever the batch size. What makes it fast is compiling the gate list once into few, large
steps instead of one small op per gate (PennyLane #4778: broadcasting there is no faster than a
loop):

* the gates before the first two-qubit gate act on ``|0...0>`` and give a *product state*: one
  outer product per qubit, no statevector passes at all (angle embedding + first rotations);
* a run of single-qubit gates is fused per wire into one 2x2 matrix (all wires with the same gate
  pattern built in one vectorised pass), then applied as Kronecker blocks of up to
  :data:`KRON_BLOCK` wires: one matmul per block instead of one per gate;
* a run of CNOT/SWAP gates is one permutation of the basis (a single gather), folded into the
  preceding Kronecker matrix when one block covers every wire;
* the ZZ feature map is Hadamard layers and one *diagonal* phase per repetition, computed with
  one matrix product of the embedding angles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from paralab_quantum.circuit import GATES, Circuit, Gate
from paralab_quantum.memory import check_statevector

KRON_BLOCK = 6
"""Largest number of wires whose fused 2x2 matrices are combined into one Kronecker matrix
(2**6 = 64: a 64x64 matmul is cheaper than six small ones)."""

_PERMUTATIONS = ("CNOT", "SWAP")
_DIAGONALS = ("CZ", "CRZ")


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.complex128 else torch.float32


def gate_matrices(name: str, theta: torch.Tensor | None, dtype: torch.dtype, device: torch.device,
                  shape: Sequence[int] = ()) -> torch.Tensor:
    """The 2x2 matrices of a single-qubit gate, shape ``(*theta.shape, 2, 2)`` (or ``shape``)."""
    if theta is None:
        constant = _CONSTANT[name]
        matrix = torch.tensor(constant, dtype=dtype, device=device)
        return matrix.expand(*shape, 2, 2)
    half = theta / 2
    cos, sin = torch.cos(half), torch.sin(half)
    zero = torch.zeros_like(cos)
    if name == "RY":
        return torch.stack([cos, -sin, sin, cos], -1).to(dtype).unflatten(-1, (2, 2))
    if name == "RX":
        real = torch.stack([cos, zero, zero, cos], -1)
        imag = torch.stack([zero, -sin, -sin, zero], -1)
    elif name == "RZ":
        real = torch.stack([cos, zero, zero, cos], -1)
        imag = torch.stack([-sin, zero, zero, sin], -1)
    elif name == "P":
        one = torch.ones_like(cos)
        real = torch.stack([one, zero, zero, torch.cos(theta)], -1)
        imag = torch.stack([zero, zero, zero, torch.sin(theta)], -1)
    else:
        raise ValueError(f"gate {name!r} is not a parametrised single-qubit gate")
    return torch.complex(real, imag).to(dtype).unflatten(-1, (2, 2))


_S2 = 1 / math.sqrt(2)
_CONSTANT = {
    "H": [[_S2, _S2], [_S2, -_S2]],
    "X": [[0, 1], [1, 0]],
    "Y": [[0, -1j], [1j, 0]],
    "Z": [[1, 0], [0, -1]],
    "S": [[1, 0], [0, 1j]],
    "T": [[1, 0], [0, complex(math.cos(math.pi / 4), math.sin(math.pi / 4))]],
}


def _bits(n_qubits: int) -> torch.Tensor:
    """``bits[i, q]``: the value of wire ``q`` in basis state ``i`` (wire 0 most significant)."""
    index = torch.arange(2**n_qubits)
    shifts = torch.arange(n_qubits - 1, -1, -1)
    return (index[:, None] >> shifts[None, :]) & 1


def permutation(gates: Sequence[Gate], n_qubits: int) -> torch.Tensor:
    """The gather index of a run of CNOT/SWAP gates: ``new = state[:, index]``."""
    index = torch.arange(2**n_qubits)
    combined = index.clone()
    for gate in gates:
        a, b = (n_qubits - 1 - w for w in gate.wires)
        if gate.name == "CNOT":
            step = index ^ (((index >> a) & 1) << b)
        else:  # SWAP
            differ = ((index >> a) & 1) ^ ((index >> b) & 1)
            step = index ^ ((differ << a) | (differ << b))
        combined = combined[step]
    return combined


@dataclass
class _Step:
    kind: str  # "product", "single", "perm", "diag", "zz", "amplitude"
    gates: tuple[Gate, ...] = ()
    index: torch.Tensor | None = None


class TorchSimulator:
    """Compile ``circuit`` once; call with ``(x, weights)`` for the measured outputs.

    :param dtype: ``torch.complex64`` (fast) or ``torch.complex128`` (the parity tests).
    :param memory_limit: bytes the statevectors may take (default: the device's free memory).
    """

    def __init__(self, circuit: Circuit, *, dtype: torch.dtype = torch.complex64,
                 memory_limit: int | None = None) -> None:
        if dtype not in (torch.complex64, torch.complex128):
            raise ValueError(f"dtype must be torch.complex64 or torch.complex128, got {dtype}")
        self.circuit = circuit
        self.n = circuit.n_qubits
        self.dtype = dtype
        self.memory_limit = memory_limit
        self.bytes_per_amplitude = 8 if dtype == torch.complex64 else 16
        check_statevector(self.n, bytes_per_amplitude=self.bytes_per_amplitude,
                          limit_bytes=memory_limit)
        self.steps = self._compile(circuit)
        self._constants: dict[tuple[str, torch.device], torch.Tensor] = {}

    # --------------------------------------------------------------------------- compile

    def _compile(self, circuit: Circuit) -> list[_Step]:
        steps: list[_Step] = []
        gates = circuit.program()
        zz = circuit.embedding is not None and circuit.embedding.kind == "zz"
        if zz:
            steps.append(_Step("zz"))
            gates = gates[len(circuit.embedding.gates(self.n)):]
        elif circuit.amplitude:
            steps.append(_Step("amplitude"))
        elif not gates or self._kind(gates[0]) != "single":
            steps.append(_Step("product"))  # start from |0...0>
        position = 0
        while position < len(gates):
            kind = self._kind(gates[position])
            end = position
            while end < len(gates) and self._kind(gates[end]) == kind:
                end += 1
            run = tuple(gates[position:end])
            if kind == "single" and not steps:
                steps.append(_Step("product", run))
            elif kind == "perm":
                steps.append(_Step("perm", run, permutation(run, self.n)))
            else:
                steps.append(_Step(kind, run))
            position = end
        return steps

    @staticmethod
    def _kind(gate: Gate) -> str:
        if GATES[gate.name][0] == 1:
            return "single"
        return "perm" if gate.name in _PERMUTATIONS else "diag"

    # ------------------------------------------------------------------------------- run

    def __call__(self, x: torch.Tensor | None, weights: torch.Tensor | None) -> torch.Tensor:
        return self.measure(self.state(x, weights))

    def angles(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """The embedding angles ``(batch, n_angles)`` of inputs ``x``."""
        if x is None or self.circuit.embedding is None or self.circuit.amplitude:
            return None
        x = x.reshape(x.shape[0], -1).to(real_dtype(self.dtype))
        self.circuit.check_features(x.shape[1], "torch simulator")
        return torch.stack(self.circuit.angle_terms(list(x.unbind(1))), 1)

    def state(self, x: torch.Tensor | None, weights: torch.Tensor | None) -> torch.Tensor:
        """The statevectors ``(batch, 2**n)`` (batch 1 without inputs)."""
        if self.circuit.embedding is not None and x is None:
            raise ValueError("this circuit embeds inputs: pass x")
        batch = 1 if x is None else int(x.shape[0])
        device = x.device if x is not None else (weights.device if weights is not None else
                                                 torch.device("cpu"))
        check_statevector(self.n, batch=batch, bytes_per_amplitude=self.bytes_per_amplitude,
                          copies=2, device=str(device), limit_bytes=self.memory_limit)
        if weights is not None:
            weights = weights.to(device=device, dtype=real_dtype(self.dtype)).reshape(-1)
        if self.circuit.n_weights and (weights is None or weights.numel() < self.circuit.n_weights):
            raise ValueError(
                f"the circuit has {self.circuit.n_weights} weights, got "
                f"{0 if weights is None else weights.numel()}"
            )
        angles = self.angles(x)
        state: torch.Tensor | None = None
        for step in self.steps:
            if step.kind == "amplitude":
                state = self._amplitude(x, device)
            elif step.kind == "zz":
                state = self._zz(angles, device)
            elif step.kind == "product":
                state = self._product(step.gates, angles, weights, batch, device)
            elif step.kind == "single":
                state = self._single(state, step.gates, angles, weights)
            elif step.kind == "perm":
                state = state.index_select(1, step.index.to(device))
            else:
                state = self._diagonal(state, step.gates, angles, weights)
        assert state is not None
        return state.expand(batch, -1) if state.shape[0] != batch else state

    def measure(self, state: torch.Tensor) -> torch.Tensor:
        """Pauli-Z expectations ``(batch, n)`` or probabilities ``(batch, 2**n)``."""
        probabilities = torch.view_as_real(state).square().sum(-1)
        if self.circuit.measurement == "probs":
            return probabilities
        return probabilities @ self._constant("zsign", probabilities.device, probabilities.dtype)

    # --------------------------------------------------------------------------- pieces

    def _constant(self, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (name, device)
        if key not in self._constants:
            bits = _bits(self.n)
            if name == "zsign":
                value = 1.0 - 2.0 * bits
            elif name == "zz":
                embedding = self.circuit.embedding
                assert embedding is not None
                pairs = embedding.pairs(self.n)
                parities = [bits[:, i] ^ bits[:, j] for i, j in pairs]
                value = torch.stack([*bits.unbind(1), *parities], 0)  # (n_angles, 2**n)
            else:
                raise KeyError(name)
            self._constants[key] = value.to(device)
        return self._constants[key].to(dtype)

    def _amplitude(self, x: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        assert x is not None
        x = x.reshape(x.shape[0], -1).to(real_dtype(self.dtype))
        self.circuit.check_features(x.shape[1], "torch simulator")
        padded = torch.nn.functional.pad(x, (0, 2**self.n - x.shape[1]))
        norm = padded.norm(dim=1, keepdim=True)
        if bool((norm == 0).any()):
            raise ValueError("amplitude embedding: an input row is all zeros (no state)")
        return (padded / norm).to(self.dtype)

    def _zz(self, angles: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        assert angles is not None and self.circuit.embedding is not None
        phases = angles @ self._constant("zz", device, angles.dtype)  # (batch, 2**n)
        diagonal = torch.polar(torch.ones_like(phases), phases).to(self.dtype)
        size = 2**self.n
        state = diagonal * (1 / math.sqrt(size))  # H on |0..0> is uniform
        hadamards = tuple(Gate("H", (q,)) for q in range(self.n))
        for _ in range(self.circuit.embedding.reps - 1):
            state = self._single(state, hadamards, None, None) * diagonal
        return state

    def _fused(self, gates: Sequence[Gate], angles: torch.Tensor | None,
               weights: torch.Tensor | None, device: torch.device) -> dict[int, torch.Tensor]:
        """Per wire, the product of the run's gates on it: ``(P, 2, 2)`` with ``P`` 1 or batch.

        Wires with the same pattern of gates are built together, one op per gate position.
        """
        per_wire: dict[int, list[Gate]] = {}
        for gate in gates:
            per_wire.setdefault(gate.wires[0], []).append(gate)
        groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
        for wire, wire_gates in per_wire.items():
            signature = tuple((g.name, g.angle.source if g.angle else "") for g in wire_gates)
            groups.setdefault(signature, []).append(wire)
        fused: dict[int, torch.Tensor] = {}
        for signature, wires in groups.items():
            matrix: torch.Tensor | None = None
            for position, (name, source) in enumerate(signature):
                members = [per_wire[w][position] for w in wires]
                if not source:
                    step = gate_matrices(name, None, self.dtype, device, (1, len(wires)))
                else:
                    theta = self._gather(members, source, angles, weights, device)
                    step = gate_matrices(name, theta, self.dtype, device)
                matrix = step if matrix is None else step @ matrix
            assert matrix is not None
            for column, wire in enumerate(wires):
                fused[wire] = matrix[:, column]
        return fused

    def _gather(self, gates: Sequence[Gate], source: str, angles: torch.Tensor | None,
                weights: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """The angles of ``gates`` (all from ``source``) as ``(P, len(gates))``."""
        if source == "const":
            values = [g.angle.value for g in gates]  # type: ignore[union-attr]
            return torch.tensor([values], dtype=real_dtype(self.dtype), device=device)
        index = torch.tensor([g.angle.index for g in gates], device=device)  # type: ignore[union-attr]
        if source == "w":
            assert weights is not None
            return weights.index_select(0, index)[None, :]
        if angles is None:
            raise ValueError("a gate reads an embedding angle but the circuit got no inputs")
        return angles.index_select(1, index)

    def _product(self, gates: Sequence[Gate], angles: torch.Tensor | None,
                 weights: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        fused = self._fused(gates, angles, weights, device)
        zero = torch.tensor([[1.0, 0.0]], dtype=self.dtype, device=device)
        state: torch.Tensor | None = None
        for wire in range(self.n):
            vector = fused[wire][..., :, 0] if wire in fused else zero
            if state is None:
                state = vector
            else:
                state = (state[:, :, None] * vector[:, None, :]).reshape(
                    max(state.shape[0], vector.shape[0]), -1
                )
        assert state is not None
        return state

    def _single(self, state: torch.Tensor, gates: Sequence[Gate], angles: torch.Tensor | None,
                weights: torch.Tensor | None) -> torch.Tensor:
        fused = self._fused(gates, angles, weights, state.device)
        shared = {w: m[0] for w, m in fused.items() if m.shape[0] == 1}
        batched = {w: m for w, m in fused.items() if m.shape[0] != 1}
        batch = state.shape[0]
        for wire, matrix in batched.items():  # data-dependent: one batched matmul per wire
            view = state.reshape(batch, 2**wire, 2, -1)
            state = (matrix[:, None] @ view).reshape(batch, -1)
        wires = sorted(shared)
        start = 0
        while start < len(wires):
            block = [w for w in wires[start:] if w < wires[start] + KRON_BLOCK]
            low, high = block[0], block[-1]
            kron: torch.Tensor | None = None
            for wire in range(low, high + 1):
                matrix = shared.get(wire)
                if matrix is None:
                    matrix = torch.eye(2, dtype=self.dtype, device=state.device)
                kron = matrix if kron is None else torch.kron(kron, matrix)
            assert kron is not None
            view = state.reshape(batch, 2**low, 2 ** (high - low + 1), -1)
            state = (kron @ view).reshape(batch, -1)
            start += len(block)
        return state

    def _diagonal(self, state: torch.Tensor, gates: Sequence[Gate], angles: torch.Tensor | None,
                  weights: torch.Tensor | None) -> torch.Tensor:
        bits = _bits(self.n).to(state.device)
        for gate in gates:
            control, target = (bits[:, w] for w in gate.wires)
            if gate.name == "CZ":
                sign = 1 - 2 * (control & target)
                state = state * sign.to(state.dtype)
                continue
            theta = self._gather([gate], gate.angle.source, angles, weights,  # type: ignore[union-attr]
                                 state.device)  # (P, 1)
            phase = theta * (target.to(theta.dtype) - 0.5)[None, :] * control.to(theta.dtype)
            state = state * torch.polar(torch.ones_like(phase), phase).to(state.dtype)
        return state
