"""A differentiable density-matrix simulator: training under noise.

:class:`Noise` names the channels applied after every gate, on each of the gate's wires, in a
fixed order (depolarizing, then amplitude damping, then phase damping; PennyLane's Kraus
operators). :class:`DensityMatrixSimulator` runs a :class:`~paralab_quantum.circuit.Circuit`
on a batch of density matrices ``(batch, 2**n, 2**n)``: each gate's matrix comes from the
operation table (the same record the statevector simulator reads), ``rho -> U rho U^dagger`` is
two matmuls on the gate's wires; the channels on one wire are composed once into one 4x4
superoperator ``sum_i K_i (x) conj(K_i)`` on that wire's (row, column) bit pair, applied with one
matmul; a one- or two-qubit gate and its channels are one superoperator, one matmul;
measurements are
``Tr(rho H)``, ``Tr(rho H^2) - Tr(rho H)^2`` or the diagonal. Autograd differentiates through
all of it, so a model trains against the noisy expectations.

Every gate is its own step (per-gate noise leaves nothing to fuse), and a row holds ``4**n``
amplitudes: it is meant for the few-qubit circuits noisy training uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from paralab_quantum.circuit import Circuit, CircuitError
from paralab_quantum.memory import check_statevector
from paralab_quantum.simulator import TorchSimulator, op_matrices

CHANNELS = ("depolarizing", "amplitude_damping", "phase_damping")
"""The noise channels, in the order they act after a gate."""


@dataclass(frozen=True)
class Noise:
    """Per-gate noise: each channel's strength in [0, 1] (0: off), after every gate on each of
    its wires. ``depolarizing`` p: Kraus sqrt(1-p) I, sqrt(p/3) X, Y, Z (PennyLane's
    ``DepolarizingChannel``); ``amplitude_damping`` and ``phase_damping`` gamma: PennyLane's
    ``AmplitudeDamping`` / ``PhaseDamping``. ``readout`` acts on the measured outcomes, not
    after gates: it is not among :meth:`channels`."""

    depolarizing: float = 0.0
    amplitude_damping: float = 0.0
    phase_damping: float = 0.0
    readout: float = 0.0
    """bit-flip probability of each measured qubit's outcome (:mod:`paralab_quantum.readout`;
    PennyLane ``default.mixed``'s ``readout_prob``); 0: none"""

    def __post_init__(self) -> None:
        for name in (*CHANNELS, "readout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise CircuitError(f"noise {name} must be a number in [0, 1], got {value!r}")

    def channels(self) -> list[tuple[str, float]]:
        """The channels that act, in order, with their strengths."""
        return [(name, float(getattr(self, name))) for name in CHANNELS if getattr(self, name)]


def kraus(name: str, strength: float) -> list[list[list[complex]]]:
    """The Kraus operators of channel ``name`` (PennyLane's definitions)."""
    if name == "depolarizing":
        a, b = math.sqrt(1 - strength), math.sqrt(strength / 3)
        return [[[a, 0], [0, a]], [[0, b], [b, 0]], [[0, -1j * b], [1j * b, 0]],
                [[b, 0], [0, -b]]]
    keep = math.sqrt(1 - strength)
    if name == "amplitude_damping":
        return [[[1, 0], [0, keep]], [[0, math.sqrt(strength)], [0, 0]]]
    if name == "phase_damping":
        return [[[1, 0], [0, keep]], [[0, 0], [0, math.sqrt(strength)]]]
    raise CircuitError(f"noise channel {name!r} is unknown; valid: {', '.join(CHANNELS)}")


def _apply(tensor: torch.Tensor, matrix: torch.Tensor, wires: tuple[int, ...],
           n: int) -> torch.Tensor:
    """``matrix`` ``(P, d, d)`` on ``wires`` of the last axis of ``tensor`` ``(B, E, 2**n)``."""
    batch, extra = tensor.shape[0], tensor.shape[1]
    k = len(wires)
    source = [2 + w for w in wires]
    target = list(range(n + 2 - k, n + 2))
    moved = tensor.reshape(batch, extra, *([2] * n)).movedim(source, target)
    shape = moved.shape[2:]
    out = moved.reshape(batch, extra, -1, 2**k) @ matrix.mT[:, None]
    rows = out.shape[0]
    return out.reshape(rows, extra, *shape).movedim(target, source).reshape(rows, extra, -1)


def _superoperator(rho: torch.Tensor, matrix: torch.Tensor, wires: tuple[int, ...],
                   n: int) -> torch.Tensor:
    """A superoperator ``(P, 4**k, 4**k)`` on the row bits then the column bits of ``wires``."""
    batch, k = rho.shape[0], len(wires)
    source = [1 + w for w in wires] + [1 + n + w for w in wires]
    target = list(range(2 * n + 1 - 2 * k, 2 * n + 1))
    moved = rho.reshape(batch, *([2] * (2 * n))).movedim(source, target)
    shape = moved.shape[1:]
    out = moved.reshape(batch, -1, 4**k) @ matrix.mT
    rows = out.shape[0]  # the batch of rho or of the matrix
    return out.reshape(rows, *shape).movedim(target, source).reshape(rows, 2**n, 2**n)


def _gate_superoperator(matrix: torch.Tensor, k: int) -> torch.Tensor:
    """``U (x) conj(U)`` ``(P, 4**k, 4**k)``, indexed (row bits, column bits) both sides."""
    d = 2**k
    return torch.einsum("pab,pcd->pacbd", matrix, matrix.conj()).reshape(-1, d * d, d * d)


def _wires_channel(channel: torch.Tensor, k: int) -> torch.Tensor:
    """The one-wire ``channel`` on each of ``k`` wires, indexed (row bits, column bits)."""
    total = channel
    for _ in range(k - 1):
        total = torch.kron(total, channel)  # indexed (r1 c1 r2 c2 ...) both sides
    order = [2 * j for j in range(k)] + [2 * j + 1 for j in range(k)]
    axes = order + [2 * k + a for a in order]
    return total.reshape([2] * (4 * k)).permute(axes).reshape(4**k, 4**k)


def _conjugate(rho: torch.Tensor, matrix: torch.Tensor, wires: tuple[int, ...],
               n: int) -> torch.Tensor:
    """``M rho M^dagger`` for ``M`` ``(P, d, d)`` on ``wires``."""
    left = _apply(rho.mT, matrix, wires, n).mT  # M rho
    return _apply(left, matrix.conj(), wires, n)  # (M rho) M^dagger


class DensityMatrixSimulator:
    """Compile ``circuit`` under ``noise``; call with ``(x, weights)`` for the measured outputs
    (the circuit's measurement: expectations or variances of its observables, or the
    probabilities), or :meth:`density` for the density matrices."""

    def __init__(self, circuit: Circuit, noise: Noise | None = None, *,
                 dtype: torch.dtype = torch.complex128, memory_limit: int | None = None) -> None:
        self.circuit = circuit
        self.noise = noise or Noise()
        self.n = circuit.n_qubits
        self.dtype = dtype
        # a density matrix is 2**n statevectors of 2**n amplitudes: check that much memory
        check_statevector(2 * self.n, bytes_per_amplitude=16 if dtype == torch.complex128 else 8,
                          limit_bytes=memory_limit, simulator="density matrix")
        self._pure = TorchSimulator(circuit, dtype=dtype, memory_limit=memory_limit)
        self.program = circuit.program()
        channel: torch.Tensor | None = None  # the wire's channels composed, in order
        for name, strength in self.noise.channels():
            operators = [torch.tensor(k, dtype=torch.complex128) for k in kraus(name, strength)]
            step = sum(torch.kron(k, k.conj()) for k in operators)
            channel = step if channel is None else step @ channel
        self._channels = {} if channel is None else {
            k: _wires_channel(channel, k).to(dtype) for k in (1, 2, 3)}
        self._measurement: Any = None
        self._readout: Any = None
        self._measured = circuit  # the circuit whose measurement :meth:`measure` computes
        if self.noise.readout:
            from paralab_quantum.readout import Readout

            self._readout = Readout(circuit, self.noise.readout)
            self._measured = self._readout.inner

    def density(self, x: torch.Tensor | None, weights: torch.Tensor | None) -> torch.Tensor:
        """The density matrices ``(batch, 2**n, 2**n)`` after the circuit and its noise."""
        batch, device, weights, angles = self._pure._inputs(x, weights)
        size = 2**self.n
        if self.circuit.amplitude:
            psi = self._pure._amplitude(x, device)
        else:
            psi = torch.zeros(1, size, dtype=self.dtype, device=device)
            psi[:, 0] = 1
        rho = psi[:, :, None] * psi.conj()[:, None, :]
        channels = {k: c.to(device) for k, c in self._channels.items()}
        for gate in self.program:
            theta = self._pure._params(gate, angles, weights, device)
            matrix = op_matrices(gate.name, theta, self.dtype, device, (1,))
            k = len(gate.wires)
            if k in channels and k <= 2:
                # a gate and its channels: one superoperator, one matmul
                step = channels[k] @ _gate_superoperator(matrix, k)
                rho = _superoperator(rho, step, gate.wires, self.n)
                continue
            rho = _conjugate(rho, matrix, gate.wires, self.n)
            for wire in gate.wires if channels else ():
                rho = _superoperator(rho, channels[1], (wire,), self.n)
        return rho.expand(batch, -1, -1) if rho.shape[0] != batch else rho

    def __call__(self, x: torch.Tensor | None, weights: torch.Tensor | None) -> torch.Tensor:
        return self.measure(self.density(x, weights))

    def measure(self, rho: torch.Tensor) -> torch.Tensor:
        """Expectations / variances ``(batch, n_observables)`` or probabilities (after the
        readout error, if any)."""
        out = self._measure(rho)
        return out if self._readout is None else self._readout(out)

    def _measure(self, rho: torch.Tensor) -> torch.Tensor:
        probabilities = rho.diagonal(dim1=-2, dim2=-1).real
        if self._measured.measurement == "probs":
            return probabilities
        if self._measurement is None:
            from paralab_quantum.expectations import PauliSum

            self._measurement = [PauliSum(o, self.n) for o in self._measured.measured]
        columns = []
        for pauli_sum in self._measurement:
            applied = pauli_sum.apply(rho.mT)  # row b: H rho[:, b]
            mean = applied.diagonal(dim1=-2, dim2=-1).sum(-1).real
            if self._measured.measurement == "var":
                second = pauli_sum.apply(applied).diagonal(dim1=-2, dim2=-1).sum(-1).real
                columns.append(second - mean.square())
            else:
                columns.append(mean)
        return torch.stack(columns, -1)


__all__ = ["CHANNELS", "DensityMatrixSimulator", "Noise", "kraus"]
