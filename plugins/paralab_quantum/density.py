"""A differentiable density-matrix simulator: training under noise.

:class:`Noise` names the channels applied after every gate, on each of the gate's wires, in a
fixed order (depolarizing, then amplitude damping, then phase damping; PennyLane's Kraus
operators). :class:`DensityMatrixSimulator` runs a :class:`~paralab_quantum.circuit.Circuit`
under that noise and returns the measured outputs, or :meth:`~DensityMatrixSimulator.density`
the density matrices ``(batch, 2**n, 2**n)``; each gate's matrix comes from the operation table
(the same record the statevector simulator reads). Autograd differentiates through all of it,
so a model trains against the noisy expectations.

Two paths compute the same numbers (``fused``, the default, is tested against the other to
1e-12 in complex128):

* fused (:mod:`paralab_quantum.superop`, :mod:`paralab_quantum.pauli_basis`): the state is the
  real Pauli vector ``Tr(rho P_s)`` on a layout pairing each wire's row and column bit; every
  gate with its channel is a real Pauli transfer matrix; a wire's consecutive one-qubit gates
  are multiplied into one 4x4 matrix (built for all wires with the same gates at once, in
  closed form ``A + cos(t) B + sin(t) C`` for rotations), absorbed into the next multi-qubit
  gate on the wire or, before any, into the product state; expectations and variances are a
  gather of the Pauli vector, probabilities its I/Z part. The profile of the gate-by-gate path
  (4 qubits, 28 applications a step, each reshaping and moving axes; 23.7 ms) is what it cuts.
* gate by gate (``fused=False``): ``rho -> U rho U^dagger`` on ``(batch, 2**n, 2**n)``, the
  channels on one wire composed once into one 4x4 superoperator ``sum_i K_i (x) conj(K_i)``, a
  one- or two-qubit gate and its channels one superoperator, one matmul; measurements
  ``Tr(rho H)``, ``Tr(rho H^2) - Tr(rho H)^2`` or the diagonal.

A row holds ``4**n`` numbers: it is meant for the few-qubit circuits noisy training uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from paralab_quantum import pauli_basis, superop
from paralab_quantum.choices import NOISE_PLACEMENTS
from paralab_quantum.circuit import Circuit, CircuitError, Gate
from paralab_quantum.memory import check_statevector
from paralab_quantum.operations import OPERATIONS
from paralab_quantum.simulator import TorchSimulator, op_matrices, real_dtype

CHANNELS = ("depolarizing", "amplitude_damping", "phase_damping")
"""The noise channels, in the order they act after a gate."""

PLACEMENTS = NOISE_PLACEMENTS
"""Where the channels act: after every gate on its wires, or after every layer on every wire."""


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
    per: str = "gate"
    """``"gate"``: the channels after every gate on each of its wires; ``"layer"``: after every
    layer of the circuit (its gates scheduled as early as their wires allow, Qiskit's DAG
    layers: one ``depth`` step) on every wire, idle ones included, as a device's qubits
    decohere whether or not a gate acts on them"""

    def __post_init__(self) -> None:
        if self.per not in PLACEMENTS:
            raise CircuitError(f"noise per {self.per!r} is unknown; valid: {', '.join(PLACEMENTS)}")
        for name in (*CHANNELS, "readout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise CircuitError(f"noise {name} must be a number in [0, 1], got {value!r}")

    def channels(self) -> list[tuple[str, float]]:
        """The channels that act, in order, with their strengths."""
        return [(name, float(getattr(self, name))) for name in CHANNELS if getattr(self, name)]


@dataclass(frozen=True)
class NoiseEvent:
    """The channels of a :class:`Noise` on one wire, placed in a gate list (duck-types a
    one-qubit :class:`~paralab_quantum.circuit.Gate` without parameters)."""

    wire: int
    name: str = "noise"
    params: tuple[()] = ()

    @property
    def wires(self) -> tuple[int]:
        return (self.wire,)


def layers(program: Sequence[Gate], n_qubits: int) -> list[list[int]]:
    """The program's gate indices by layer: each gate in the first layer after the last one
    touching any of its wires (as early as possible; Qiskit's ``DAGCircuit.layers``)."""
    level = [0] * n_qubits
    out: list[list[int]] = []
    for index, gate in enumerate(program):
        layer = max(level[w] for w in gate.wires)
        for wire in gate.wires:
            level[wire] = layer + 1
        if layer == len(out):
            out.append([])
        out[layer].append(index)
    return out


def schedule(program: Sequence[Gate], noise: Noise, n_qubits: int) -> list[Gate | NoiseEvent]:
    """The gates with :class:`NoiseEvent` s where ``noise`` acts: after each gate on its wires
    (``per="gate"``) or after each layer on every wire (``per="layer"``)."""
    if not noise.channels():
        return list(program)
    if noise.per == "gate":
        return [item for gate in program
                for item in (gate, *(NoiseEvent(w) for w in gate.wires))]
    out: list[Gate | NoiseEvent] = []
    for layer in layers(program, n_qubits):
        out += [program[i] for i in layer]
        out += [NoiseEvent(w) for w in range(n_qubits)]
    return out


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
                 dtype: torch.dtype = torch.complex128, memory_limit: int | None = None,
                 fused: bool = True) -> None:
        self.circuit = circuit
        self.fused = fused
        """``True``: the paired layout with one-qubit runs fused (:mod:`paralab_quantum.superop`);
        ``False``: gate by gate on ``(batch, 2**n, 2**n)`` (the reference the fused path is
        tested against)."""
        self.noise = noise or Noise()
        self.n = circuit.n_qubits
        self.dtype = dtype
        # a density matrix is 2**n statevectors of 2**n amplitudes: check that much memory
        check_statevector(2 * self.n, bytes_per_amplitude=16 if dtype == torch.complex128 else 8,
                          limit_bytes=memory_limit, simulator="density matrix")
        self._pure = TorchSimulator(circuit, dtype=dtype, memory_limit=memory_limit)
        self.per_layer = self.noise.per == "layer" and bool(self.noise.channels())
        # per gate, each gate's superoperator carries its channel; per layer, the channels
        # are events of their own in the program
        self.program: list[Any] = (schedule(circuit.program(), self.noise, self.n)
                                   if self.per_layer else circuit.program())
        channel: torch.Tensor | None = None  # the wire's channels composed, in order
        for name, strength in self.noise.channels():
            operators = [torch.tensor(k, dtype=torch.complex128) for k in kraus(name, strength)]
            step = sum(torch.kron(k, k.conj()) for k in operators)
            channel = step if channel is None else step @ channel
        self._channel = None if channel is None else channel.to(dtype)  # on one wire
        self._gate_channel = None if self.per_layer else self._channel  # with each gate
        self._channels = {} if self._gate_channel is None else {
            k: _wires_channel(channel, k).to(dtype) for k in (1, 2, 3)}
        self._plans = {start: superop.plan(self.program, product_start=start)
                       for start in (True, False)}  # from |0...0> / from a prepared state
        self._superops: dict[tuple[str, Any], Any] = {}
        self._pauli_measurement: pauli_basis.PauliMeasurement | None = None
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
        if self.fused:
            state = self._pauli_state(psi if self.circuit.amplitude else None, device,
                                      weights, angles)
            rho = superop.from_paired(pauli_basis.from_pauli(state, self.n, self.dtype), self.n)
            return rho.expand(batch, -1, -1) if rho.shape[0] != batch else rho
        rho = psi[:, :, None] * psi.conj()[:, None, :]
        channels = {k: c.to(device) for k, c in self._channels.items()}
        for gate in self.program:
            if isinstance(gate, NoiseEvent):
                assert self._channel is not None
                rho = _superoperator(rho, self._channel.to(device)[None], gate.wires, self.n)
                continue
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

    def _pauli_state(self, psi: torch.Tensor | None, device: torch.device,
                     weights: torch.Tensor | None, angles: torch.Tensor | None) -> torch.Tensor:
        """The state's real Pauli vector ``(P, 4**n)`` (:mod:`paralab_quantum.pauli_basis`),
        one-qubit runs fused and absorbed (:mod:`paralab_quantum.superop`)."""
        n = self.n
        plan = self._plans[psi is None]
        real = real_dtype(self.dtype)
        runs = self._run_transfers(plan, angles, weights, device)
        if psi is not None:
            state = pauli_basis.to_pauli(
                superop.to_paired(psi[:, :, None] * psi.conj()[:, None, :], n), n)
        else:
            initial = {wire: runs[run_id] for wire, run_id in plan.initial.items()}
            state = superop.product_state(initial, n, real, device)

        def gate(index: int) -> torch.Tensor:
            program_gate = self.program[index]
            k = len(program_gate.wires)
            if program_gate.params:
                theta = self._pure._params(program_gate, angles, weights, device)
                return self._pauli(self._with_channel(
                    op_matrices(program_gate.name, theta, self.dtype, device, (1,)), k, device),
                    k, device)
            key = (f"superop-{index}", device)  # parameter-free: built once
            if key not in self._superops:
                with torch.inference_mode(False), torch.no_grad():
                    self._superops[key] = self._pauli(self._with_channel(
                        op_matrices(program_gate.name, None, self.dtype, device, (1,)), k,
                        device), k, device)
            return self._superops[key]

        identity = self._identity(device)
        return superop.run(state, plan.steps, n, runs, gate, identity)

    def _transfer(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``T`` and ``T^-1`` on one wire (:func:`superop.to_pauli_matrix`)."""
        key = ("transfer", device)
        if key not in self._superops:
            with torch.inference_mode(False):
                forward = superop.to_pauli_matrix(self.dtype).to(device)
                self._superops[key] = forward
                self._superops[("transfer-inverse", device)] = (
                    forward.mH / 2).resolve_conj().contiguous()
        return self._superops[key], self._superops[("transfer-inverse", device)]

    def _pauli(self, matrix: torch.Tensor, k: int, device: torch.device) -> torch.Tensor:
        """The real Pauli transfer matrix ``T^(x)k S T^-(x)k`` of superoperator ``S``."""
        key = (f"transfer-{k}", device)
        if key not in self._superops:
            forward, inverse = self._transfer(device)
            wide, wide_inverse = forward, inverse
            with torch.inference_mode(False):
                for _ in range(k - 1):
                    wide = torch.kron(wide, forward)
                    wide_inverse = torch.kron(wide_inverse, inverse)
            self._superops[key] = wide
            self._superops[(f"transfer-inverse-{k}", device)] = wide_inverse
        wide, wide_inverse = self._superops[key], self._superops[(f"transfer-inverse-{k}", device)]
        return (wide @ matrix @ wide_inverse).real

    def _with_channel(self, matrix: torch.Tensor, k: int, device: torch.device) -> torch.Tensor:
        """``C^(x)k (U (x) conj U)`` in the paired order, for gate matrices ``(P, 2**k, 2**k)``."""
        step = superop.gate_superoperator(matrix, k)
        if self._gate_channel is None:
            return step
        key = (f"channel-{k}", device)
        if key not in self._superops:
            channel = self._gate_channel.to(device)
            wide = channel
            for _ in range(k - 1):
                wide = torch.kron(wide, channel)  # the kron order is the paired order
            with torch.inference_mode(False):
                self._superops[key] = wide.clone()
        return self._superops[key] @ step

    def _constant_transfer(self, name: str, device: torch.device) -> torch.Tensor:
        """The Pauli transfer matrix ``(1, 4, 4)`` of parameter-free one-qubit gate ``name``
        and its channel, built once."""
        key = (f"constant-{name}", device)
        if key not in self._superops:
            with torch.inference_mode(False), torch.no_grad():
                if name == "noise":  # a NoiseEvent: the channel alone
                    assert self._channel is not None
                    step = self._channel.to(device)[None]
                else:
                    matrix = op_matrices(name, None, self.dtype, device, (1,))
                    step = self._with_channel(matrix, 1, device)
                self._superops[key] = self._pauli(step, 1, device)
        return self._superops[key]

    def _trig_form(self, name: str, device: torch.device) -> torch.Tensor | None:
        """For a one-parameter one-qubit gate whose transfer matrix (with its channel) is
        ``A + cos(t) B + sin(t) C`` (RX, RY, RZ, P: generator eigenvalues one apart), the
        real ``(3, 4, 4)`` stack ``A, B, C``; else ``None``. Found from three angles and
        checked at a fourth, so a gate of another form falls back to the general build."""
        key = (f"trig-{name}", device)
        if key not in self._superops:
            op = OPERATIONS[name]
            form: torch.Tensor | None = None
            if op.n_wires == 1 and op.n_params == 1:
                with torch.inference_mode(False), torch.no_grad():
                    def at(t: float) -> torch.Tensor:
                        theta = torch.tensor([[t]], dtype=torch.float64)
                        matrix = op_matrices(name, theta, torch.complex128, torch.device("cpu"))
                        step = superop.gate_superoperator(matrix, 1)
                        if self._gate_channel is not None:
                            step = self._gate_channel.to(torch.complex128) @ step
                        forward = superop.to_pauli_matrix()
                        return (forward @ step @ (forward.mH / 2))[0]

                    zero, half, pi = at(0.0), at(math.pi / 2), at(math.pi)
                    a, b = (zero + pi) / 2, (zero - pi) / 2
                    c = half - a
                    t = 0.7317
                    if (a + math.cos(t) * b + math.sin(t) * c - at(t)).abs().max() < 1e-12:
                        form = torch.stack([a, b, c]).real.to(real_dtype(self.dtype)).to(device)
            self._superops[key] = form  # type: ignore[assignment]
        return self._superops[key]

    def _identity(self, device: torch.device) -> torch.Tensor:
        key = ("identity", device)
        if key not in self._superops:
            with torch.inference_mode(False):
                self._superops[key] = torch.eye(4, dtype=real_dtype(self.dtype),
                                                device=device)[None]
        return self._superops[key]

    def _run_transfers(self, plan: superop.Plan, angles: torch.Tensor | None,
                       weights: torch.Tensor | None, device: torch.device
                       ) -> list[torch.Tensor]:
        """Each one-qubit run's real Pauli transfer matrix ``(P, 4, 4)`` (its gates and their
        channels, multiplied): runs with the same gates and
        parameter sources are built together, one op per gate position (as the statevector
        simulator fuses its one-qubit runs)."""
        out: list[torch.Tensor | None] = [None] * len(plan.runs)
        for signature, run_ids in superop.signatures(self.program, plan.runs).items():
            product: torch.Tensor | None = None
            for position, (name, sources) in enumerate(signature):
                members = [self.program[plan.runs[r][position]] for r in run_ids]
                trig = self._trig_form(name, device) if sources else None
                if not sources:
                    step = self._constant_transfer(name, device)[:, None].expand(
                        -1, len(run_ids), -1, -1)
                elif trig is not None:
                    theta = self._pure._gather([g.params[0] for g in members], sources[0],
                                               angles, weights, device)
                    basis = torch.stack([torch.ones_like(theta), theta.cos(), theta.sin()], -1)
                    step = torch.einsum("prk,kij->prij", basis, trig)
                else:
                    thetas = [self._pure._gather([g.params[k] for g in members], source,
                                                 angles, weights, device)
                              for k, source in enumerate(sources)]
                    theta = (thetas[0][..., None] if len(thetas) == 1 else
                             torch.stack(torch.broadcast_tensors(*thetas), -1))
                    matrix = op_matrices(name, theta, self.dtype, device)
                    rows, count = matrix.shape[0], matrix.shape[1]
                    step = self._pauli(self._with_channel(matrix.reshape(rows * count, 2, 2), 1,
                                                          device), 1, device)
                    step = step.reshape(rows, count, 4, 4)
                product = step if product is None else step @ product
            assert product is not None
            for column, run_id in enumerate(run_ids):
                out[run_id] = product[:, column]
        assert all(o is not None for o in out)
        return out  # type: ignore[return-value]

    def __call__(self, x: torch.Tensor | None, weights: torch.Tensor | None) -> torch.Tensor:
        if not self.fused:
            return self.measure(self.density(x, weights))
        batch, device, weights, angles = self._pure._inputs(x, weights)
        psi = self._pure._amplitude(x, device) if self.circuit.amplitude else None
        state = self._pauli_state(psi, device, weights, angles)
        if self._pauli_measurement is None:
            self._pauli_measurement = pauli_basis.PauliMeasurement(
                self._measured.measured, self.n, self._measured.measurement == "var")
        if self._measured.measurement == "probs":
            out = self._pauli_measurement.probabilities(state)
        else:
            out = self._pauli_measurement.values(state)
        out = out.expand(batch, -1) if out.shape[0] != batch else out
        return out if self._readout is None else self._readout(out)

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


__all__ = ["CHANNELS", "PLACEMENTS", "DensityMatrixSimulator", "Noise", "NoiseEvent", "kraus",
           "layers", "schedule"]
