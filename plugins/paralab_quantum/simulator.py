"""The native batched statevector simulator: a :class:`~paralab_quantum.circuit.Circuit` in torch.

The state of a whole batch is one complex tensor ``(batch, 2**n)`` on the run's device, and
autograd differentiates through it (backprop), so a training step is a handful of tensor ops
whatever the batch size. What makes it fast is compiling the gate list once into few, large
steps instead of one small op per gate (PennyLane #4778: broadcasting there is no faster than a
loop):

* the embedding's gates act on ``|0...0>`` and give a *product state*: one outer product per
  qubit, no statevector passes at all;
* the ansatz is built from its weights for all layers at once (every rotation of every layer in
  one vectorised pass); on up to :data:`UNITARY_QUBITS` qubits its whole unitary is formed
  (Kronecker products, the entangler folded in) and applied to the batch with *one* matmul;
  on more qubits each layer is :data:`KRON_BLOCK`-wire Kronecker blocks (one matmul each) and
  one gather for a CNOT entangler;
* free gates dispatch on the structure their record *declares* in the operation table
  (:mod:`paralab_quantum.operations`): a run of single-qubit gates is fused per wire into one
  2x2 matrix, a run of permutations (CNOT, SWAP, Toffoli, CSWAP) is one gather, a diagonal
  gate (CZ, CRZ, CP, RZZ) one multiply, any other gate (CRY, ISWAP, RXX, ...) one matmul on its
  wires; every matrix is built from the record, never from a guess by name;
* the ZZ feature map is Hadamard layers and one *diagonal* phase per repetition, computed with
  one matrix product of the embedding angles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from paralab_quantum.circuit import Angle, Circuit, Gate
from paralab_quantum.memory import check_statevector
from paralab_quantum.operations import OPERATIONS, PAULI, local_permutation, pauli_word_matrix

KRON_BLOCK = 4
"""Wires whose fused 2x2 matrices are combined into one Kronecker matrix on large circuits:
a block of c wires costs 2**c multiply-adds per amplitude and one pass over the state."""

GATHER_QUBITS = 6
"""Up to this many qubits the angle embedding's product state is one gather and one product
(fewer ops); above, one outer product per wire (less work: measured faster from 8 qubits)."""

UNITARY_QUBITS = 6
"""Up to this many qubits the ansatz's whole 2**n x 2**n unitary is built and applied once."""



def _vectorised(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is traced by ``torch.func.vmap`` (no data-dependent checks then)."""
    functorch = getattr(torch._C, "_functorch", None)
    return bool(functorch is not None and functorch.is_functorch_wrapped_tensor(tensor))


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.complex128 else torch.float32


_CONSTANTS: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}


def _constant(key: str, value: object, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A cached constant tensor; created outside inference mode so training can save it."""
    cache_key = (key, dtype, device)
    if cache_key not in _CONSTANTS:
        with torch.inference_mode(False):
            _CONSTANTS[cache_key] = torch.tensor(value, dtype=dtype, device=device)
    return _CONSTANTS[cache_key]


def op_matrices(name: str, theta: torch.Tensor | None, dtype: torch.dtype, device: torch.device,
                shape: Sequence[int] = ()) -> torch.Tensor:
    """The matrices of gate ``name`` from its record: ``(*lead, d, d)`` for parameters
    ``theta`` of shape ``(*lead, n_params)`` (a parameter-free gate: ``(*shape, d, d)``)."""
    op = OPERATIONS[name]
    size = 2**op.n_wires
    if op.controls:
        assert op.target is not None
        inner = op_matrices(op.target, theta, dtype, device, shape)
        lead, small = inner.shape[:-2], inner.shape[-1]
        free = size - small
        eye = _constant(f"eye-{free}", [[float(i == j) for j in range(free)] for i in range(free)],
                        dtype, device).expand(*lead, free, free)
        zeros = inner.new_zeros(*lead, free, small)
        return torch.cat([torch.cat([eye, zeros], -1), torch.cat([zeros.mT, inner], -1)], -2)
    if op.constant is not None:
        return _constant(f"op-{name}", op.constant, dtype, device).expand(*shape, size, size)
    assert theta is not None, f"gate {name} needs parameters"
    if len(op.rotations) == 1 and len(op.rotations[0].word) == 1 and not op.phase:
        return _axis_rotation(op.rotations[0].word, theta[..., op.rotations[0].index], dtype)
    result: torch.Tensor | None = None
    eye = _constant(f"eye-{size}", [[float(i == j) for j in range(size)] for i in range(size)],
                    dtype, device)
    for rotation in op.rotations:
        half = (theta[..., rotation.index] / 2)[..., None, None]
        generator = _constant(f"-iP-{rotation.word}",
                              [[-1j * v for v in row] for row in pauli_word_matrix(rotation.word)],
                              dtype, device)
        factor = torch.cos(half) * eye + torch.sin(half) * generator
        result = factor if result is None else factor @ result
    assert result is not None
    if op.phase:
        angle = sum(c * theta[..., k] for k, c in enumerate(op.phase) if c)
        result = result * torch.polar(torch.ones_like(angle), angle)[..., None, None]
    return result.to(dtype)


def _axis_rotation(axis: str, theta: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """RX, RY or RZ written out entry by entry, ``(*theta.shape, 2, 2)``: fewer ops than the
    generic ``cos I - i sin P`` (RY stays real until the end); the embedding of large circuits
    builds one per wire on every step."""
    half = theta / 2
    cos, sin = torch.cos(half), torch.sin(half)
    zero = torch.zeros_like(cos)
    if axis == "Y":
        return torch.stack([cos, -sin, sin, cos], -1).to(dtype).unflatten(-1, (2, 2))
    real = torch.stack([cos, zero, zero, cos], -1)
    if axis == "X":
        imag = torch.stack([zero, -sin, -sin, zero], -1)
    else:
        imag = torch.stack([-sin, zero, zero, sin], -1)
    return torch.complex(real, imag).to(dtype).unflatten(-1, (2, 2))


def _bits(n_qubits: int) -> torch.Tensor:
    """``bits[i, q]``: the value of wire ``q`` in basis state ``i`` (wire 0 most significant)."""
    index = torch.arange(2**n_qubits)
    shifts = torch.arange(n_qubits - 1, -1, -1)
    return (index[:, None] >> shifts[None, :]) & 1


def permutation(gates: Sequence[Gate], n_qubits: int) -> torch.Tensor:
    """The gather index of a run of permutation gates (records declared ``permutation``):
    ``new = state[:, index]``."""
    index = torch.arange(2**n_qubits)
    bits = _bits(n_qubits)
    combined = index.clone()
    for gate in gates:
        local_map = torch.tensor(local_permutation(gate.name))
        k = len(gate.wires)
        local = sum(bits[:, w] << (k - 1 - j) for j, w in enumerate(gate.wires))
        new_local = local_map[local]
        step = index.clone()
        for j, w in enumerate(gate.wires):
            shift = n_qubits - 1 - w
            step = (step & ~(1 << shift)) | (((new_local >> (k - 1 - j)) & 1) << shift)
        combined = combined[step]
    return combined


class _Constants(dict):
    """The simulator's cached constants (index tensors, signs). A constant first needed while
    evaluating under ``torch.inference_mode`` is stored as a normal tensor, so training may
    use it later (inference tensors cannot be saved for backward)."""

    def __setitem__(self, key: object, value: torch.Tensor) -> None:
        if value.is_inference():
            with torch.inference_mode(False):
                value = value.clone()
        super().__setitem__(key, value)


class _Permute(torch.autograd.Function):
    """A permutation of the basis states; its gradient is the inverse permutation (a gather),
    not ``index_select``'s scatter-add. Works under ``torch.func.vmap`` (federated clients
    trained in one vectorised pass)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(state, index, inverse):  # type: ignore[no-untyped-def]
        return state.index_select(-1, index)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(inputs[2])

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        (inverse,) = ctx.saved_tensors
        return grad.index_select(-1, inverse), None, None


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
        self._constants: dict[tuple[str, torch.device], torch.Tensor] = _Constants()
        self._measurement: Any = None

    # --------------------------------------------------------------------------- compile

    def _compile(self, circuit: Circuit) -> list[_Step]:
        steps: list[_Step] = []
        embedding = circuit.embedding
        if embedding is not None and embedding.kind == "zz":
            steps.append(_Step("zz"))
        elif circuit.amplitude:
            steps.append(_Step("amplitude"))
        else:  # the angle embedding (or nothing) on |0...0>: a product state
            gates = tuple(embedding.gates(self.n)) if embedding is not None else ()
            steps.append(_Step("product", gates))
        ansatz = circuit.ansatz
        if ansatz is not None and ansatz.layers > 0:
            entangler = tuple(ansatz.entangling_gates(self.n))
            index = None
            if entangler and OPERATIONS[entangler[0].name].permutation:
                index = permutation(entangler, self.n)
            steps.append(_Step("ansatz", entangler, index))
        skip = len(embedding.gates(self.n)) if embedding is not None else 0
        skip += len(ansatz.gates(self.n)) if ansatz is not None else 0
        gates = circuit.program()[skip:]  # the free gates
        position = 0
        while position < len(gates):
            kind = self._kind(gates[position])
            end = position
            while end < len(gates) and self._kind(gates[end]) == kind:
                end += 1
            run = tuple(gates[position:end])
            if kind == "perm":
                steps.append(_Step("perm", run, permutation(run, self.n)))
            elif kind in ("diag", "dense"):
                steps += [_Step(kind, (gate,)) for gate in run]
            else:
                steps.append(_Step(kind, run))
            position = end
        return steps

    @staticmethod
    def _kind(gate: Gate) -> str:
        """The step a gate compiles to, from its record's *declared* structure."""
        op = OPERATIONS[gate.name]
        if op.n_wires == 1:
            return "single"
        if op.permutation:
            return "perm"
        return "diag" if op.diagonal else "dense"

    # ------------------------------------------------------------------------------- run

    def __call__(self, x: torch.Tensor | None, weights: torch.Tensor | None) -> torch.Tensor:
        return self.measure(self.state(x, weights))

    def angles(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """The embedding angles ``(batch, n_angles)`` of inputs ``x``."""
        if x is None or not self.circuit.reads_inputs or self.circuit.amplitude:
            return None
        x = x.reshape(x.shape[0], -1).to(real_dtype(self.dtype))
        self.circuit.check_features(x.shape[1], "torch simulator")
        embedding = self.circuit.embedding
        if embedding is None:  # gates read the raw features
            return torch.stack(self.circuit.angle_terms(list(x.unbind(1))), 1)
        if embedding.kind == "angle":  # the angles are the scaled features: one op
            angles = x * embedding.scale if embedding.scale != 1.0 else x
            missing = self.n - x.shape[1]
            return torch.nn.functional.pad(angles, (0, missing)) if missing else angles
        return torch.stack(self.circuit.angle_terms(list(x.unbind(1))), 1)

    def state(self, x: torch.Tensor | None, weights: torch.Tensor | None) -> torch.Tensor:
        """The statevectors ``(batch, 2**n)`` (batch 1 without inputs)."""
        batch, device, weights, angles = self._inputs(x, weights)
        state: torch.Tensor | None = None
        for step in self.steps:
            if step.kind == "amplitude":
                state = self._amplitude(x, device)
            elif step.kind == "zz":
                state = self._zz(angles, device)
            elif step.kind == "product":
                state = self._product(step.gates, angles, weights, batch, device)
            elif step.kind == "ansatz":
                state = self._ansatz(state, step, weights)
            elif step.kind == "single":
                state = self._single(state, step.gates, angles, weights)
            elif step.kind == "perm":
                index = self._on(step.index, device)
                state = _Permute.apply(state, index, self._inverse(step.index, device))
            elif step.kind == "diag":
                state = self._diagonal(state, step.gates, angles, weights)
            else:
                state = self._dense(state, step.gates, angles, weights)
        assert state is not None
        return state.expand(batch, -1) if state.shape[0] != batch else state

    def _inputs(self, x: torch.Tensor | None, weights: torch.Tensor | None
                ) -> tuple[int, torch.device, torch.Tensor | None, torch.Tensor | None]:
        """Checked inputs: batch size, device, flat real weights and embedding angles."""
        if self.circuit.reads_inputs and x is None:
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
        return batch, device, weights, self.angles(x)

    def measure(self, state: torch.Tensor) -> torch.Tensor:
        """Pauli-Z expectations ``(batch, n)``, probabilities ``(batch, 2**n)``, or the
        expectations / variances of the circuit's observables ``(batch, len(observables))``."""
        circuit = self.circuit
        if circuit.measurement == "probs" or (circuit.measurement == "expval"
                                              and not circuit.observables):
            probabilities = torch.view_as_real(state).square().sum(-1)
            if circuit.measurement == "probs":
                return probabilities
            return probabilities @ self._constant("zsign", probabilities.device,
                                                  probabilities.dtype)
        if self._measurement is None:
            from paralab_quantum.expectations import Measurement

            self._measurement = Measurement(circuit.measured, self.n)
        if circuit.measurement == "var":
            return self._measurement.var(state)
        return self._measurement.expval(state)

    # --------------------------------------------------------------------------- pieces

    def _constant(self, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (f"{name}-{dtype}", device)
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
            self._constants[key] = value.to(device=device, dtype=dtype)
        return self._constants[key]

    def _amplitude(self, x: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        assert x is not None
        x = x.reshape(x.shape[0], -1).to(real_dtype(self.dtype))
        self.circuit.check_features(x.shape[1], "torch simulator")
        padded = torch.nn.functional.pad(x, (0, 2**self.n - x.shape[1]))
        norm = padded.norm(dim=1, keepdim=True)
        if not _vectorised(norm) and bool((norm == 0).any()):
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
            signature = tuple((g.name, tuple(a.source for a in g.params)) for g in wire_gates)
            groups.setdefault(signature, []).append(wire)
        fused: dict[int, torch.Tensor] = {}
        for signature, wires in groups.items():
            matrix: torch.Tensor | None = None
            for position, (name, sources) in enumerate(signature):
                members = [per_wire[w][position] for w in wires]
                if not sources:
                    step = op_matrices(name, None, self.dtype, device, (1, len(wires)))
                else:
                    thetas = [self._gather([g.params[k] for g in members], source, angles,
                                           weights, device) for k, source in enumerate(sources)]
                    theta = (thetas[0][..., None] if len(thetas) == 1 else
                             torch.stack(torch.broadcast_tensors(*thetas), -1))
                    step = op_matrices(name, theta, self.dtype, device)
                matrix = step if matrix is None else step @ matrix
            assert matrix is not None
            for column, wire in enumerate(wires):
                fused[wire] = matrix[:, column]
        return fused

    def _gather(self, params: Sequence[Angle], source: str, angles: torch.Tensor | None,
                weights: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """The values of ``params`` (all from ``source``) as ``(P, len(params))``."""
        if source == "const":
            values = [a.value for a in params]
            return torch.tensor([values], dtype=real_dtype(self.dtype), device=device)
        index = torch.tensor([a.index for a in params], device=device)
        if source == "w":
            assert weights is not None
            return weights.index_select(0, index)[None, :]
        if angles is None:
            raise ValueError("a gate reads an embedding angle but the circuit got no inputs")
        return angles.index_select(1, index)

    def _product(self, gates: Sequence[Gate], angles: torch.Tensor | None,
                 weights: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        if gates and angles is not None and self.n <= GATHER_QUBITS:
            return self._angle_product(gates[0].name, angles)
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

    def _angle_product(self, rotation: str, angles: torch.Tensor) -> torch.Tensor:
        """The product state of one ``rotation`` per wire on ``|0>``: each wire's vector is
        the rotation's first column, and amplitude ``i`` is the product over wires of the
        entry its bit selects: one gather and one product, whatever the number of qubits."""
        half = angles / 2
        cos, sin = torch.cos(half), torch.sin(half)
        if rotation == "RY":
            vectors = torch.stack([cos, sin], -1)  # real
        elif rotation == "RX":
            vectors = torch.complex(torch.stack([cos, torch.zeros_like(cos)], -1),
                                    torch.stack([torch.zeros_like(sin), -sin], -1))
        else:  # RZ: e^{-i theta/2} |0>
            vectors = torch.complex(torch.stack([cos, torch.zeros_like(cos)], -1),
                                    torch.stack([-sin, torch.zeros_like(sin)], -1))
        bits = self._cached_bits(angles.device)  # (2**n, n)
        wires = self._cached_arange(angles.device)
        picked = vectors[:, wires, bits]  # (batch, 2**n, n)
        return picked.prod(-1).to(self.dtype)

    def _cached_bits(self, device: torch.device) -> torch.Tensor:
        key = ("bits", device)
        if key not in self._constants:
            self._constants[key] = _bits(self.n).to(device)
        return self._constants[key]

    def _cached_arange(self, device: torch.device) -> torch.Tensor:
        key = ("wires", device)
        if key not in self._constants:
            self._constants[key] = torch.arange(self.n, device=device)
        return self._constants[key]

    def _single(self, state: torch.Tensor, gates: Sequence[Gate], angles: torch.Tensor | None,
                weights: torch.Tensor | None) -> torch.Tensor:
        fused = self._fused(gates, angles, weights, state.device)
        shared = {w: m[0] for w, m in fused.items() if m.shape[0] == 1}
        batched = {w: m for w, m in fused.items() if m.shape[0] != 1}
        if batched and state.shape[0] == 1:  # per-row angles on a shared state: one per row
            state = state.expand(next(iter(batched.values())).shape[0], -1)
        batch = state.shape[0]
        for wire, matrix in batched.items():  # data-dependent: one batched matmul per wire
            view = state.reshape(batch, 2**wire, 2, -1)
            state = (matrix[:, None] @ view).reshape(batch, -1)
        eye = torch.eye(2, dtype=self.dtype, device=state.device)
        for low in range(0, self.n, KRON_BLOCK):
            wires = range(low, min(low + KRON_BLOCK, self.n))
            if not any(w in shared for w in wires):
                continue
            kron: torch.Tensor | None = None
            for wire in wires:
                matrix = shared.get(wire, eye)
                kron = matrix if kron is None else torch.kron(kron, matrix)
            assert kron is not None
            state = self._apply_block(state, kron, low)
        return state

    def _apply_block(self, state: torch.Tensor, matrix: torch.Tensor, low: int) -> torch.Tensor:
        """Apply ``matrix`` (on the wires ``low`` .. ``low + log2(size) - 1``) to every row."""
        batch, size = state.shape[0], matrix.shape[-1]
        rest = state.shape[1] // (2**low * size)
        if rest == 1:  # the last wires: one plain matmul over every row at once
            return (state.reshape(-1, size) @ matrix.T).reshape(batch, -1)
        return (matrix @ state.reshape(batch * 2**low, size, rest)).reshape(batch, -1)

    def _ansatz(self, state: torch.Tensor, step: _Step, weights: torch.Tensor | None) -> torch.Tensor:
        ansatz = self.circuit.ansatz
        assert ansatz is not None and weights is not None
        layers = ansatz.layers
        if self.n <= UNITARY_QUBITS:
            return state @ self.ansatz_unitary(weights).mT
        rotation = self._rotations(weights)
        sizes = self._block_wires()
        krons = [self._layer_unitaries(rotation, low, low + size, None, state.device)
                 for low, size in sizes]
        index = self._on(self._rotation_index(step), state.device)
        inverse = self._on(self._rotation_index(step, inverse=True), state.device)
        for layer in range(layers):
            state = self._apply_blocks(state, [kron[layer] for kron in krons], index, inverse)
        return state

    def ansatz_unitary(self, weights: torch.Tensor) -> torch.Tensor:
        """The ansatz's whole unitary, entanglers included: ``(*lead, 2**n, 2**n)`` for
        weights ``(*lead, n_weights)`` (a leading shape builds several at once). Dense: the
        simulator uses it up to :data:`UNITARY_QUBITS` qubits."""
        ansatz = self.circuit.ansatz
        step = next(step for step in self.steps if step.kind == "ansatz")
        assert ansatz is not None
        rotation = self._rotations(weights)  # (*lead, layers, n, 2, 2)
        lead, size = rotation.shape[:-4], 2**self.n
        flat = rotation.reshape(-1, self.n, 2, 2)
        layers = self._layer_unitaries(flat, 0, self.n, step, weights.device)
        unitary = layers.reshape(*lead, ansatz.layers, size, size).unbind(-3)
        total = unitary[0]
        for matrix in unitary[1:]:
            total = matrix @ total
        return total

    def _rotations(self, weights: torch.Tensor) -> torch.Tensor:
        """Each wire's rotations multiplied in order, ``(*lead, layers, n, 2, 2)``.

        R(theta) = cos(theta/2) I - i sin(theta/2) P for a Pauli P: every rotation of every
        layer in two products and a sum (unbind, not indexing, below: one backward node
        instead of a zero-filled scatter per index; a few-qubit step is overhead-bound).
        """
        ansatz = self.circuit.ansatz
        assert ansatz is not None
        n, layers, k = self.n, ansatz.layers, len(ansatz.rotations)
        lead = weights.shape[:-1]
        half = weights[..., : layers * n * k].reshape(*lead, layers, n, k, 1, 1) / 2
        eye, minus_i_pauli = self._rotation_generators(ansatz.rotations, weights.device)
        matrices = torch.cos(half) * eye + torch.sin(half) * minus_i_pauli
        per_rotation = matrices.unbind(-3)
        rotation = per_rotation[0]
        for matrix in per_rotation[1:]:
            rotation = matrix @ rotation
        return rotation

    def _rotation_generators(self, rotations: Sequence[str], device: torch.device
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The identity and ``-i P`` for each rotation's Pauli ``P``, ``(k, 2, 2)`` each."""
        keys = (("identities", device), ("generators", device))
        if keys[1] not in self._constants:
            pauli = {name: PAULI[OPERATIONS[name].rotations[0].word] for name in rotations}
            eye = torch.eye(2, dtype=self.dtype).expand(len(rotations), 2, 2).contiguous()
            minus_i_p = -1j * torch.tensor([pauli[r] for r in rotations], dtype=self.dtype)
            self._constants[keys[0]] = eye.to(device)
            self._constants[keys[1]] = minus_i_p.to(device)
        return self._constants[keys[0]], self._constants[keys[1]]

    def _block_wires(self) -> list[tuple[int, int]]:
        """``(first wire, wires)`` of the Kronecker blocks a large circuit's layer is cut into."""
        return [(low, min(KRON_BLOCK, self.n - low)) for low in range(0, self.n, KRON_BLOCK)]

    def _rotation_index(self, step: _Step, inverse: bool = False) -> torch.Tensor:
        """The gather index of the last axis rotation of :meth:`_apply_blocks` followed by the
        entangler's permutation (one pass instead of two), or its inverse."""
        key = (f"rotation-{inverse}", torch.device("cpu"))
        if key not in self._constants:
            first = self._block_wires()[0][1]
            size = 2**first
            rotate = torch.arange(2**self.n).reshape(-1, size).T.reshape(-1)
            index = rotate if step.index is None else rotate[step.index]
            if inverse:
                index = torch.argsort(index)
            self._constants[key] = index
        return self._constants[key]

    def _apply_blocks(self, state: torch.Tensor, blocks: Sequence[torch.Tensor],
                      index: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        """One large-circuit layer: each block's matrix is applied to the *trailing* wires (a
        plain matmul over all rows), then those wires are rotated to the front; after the last
        block the wires are back in order. The last rotation and a CNOT entangler are one
        gather; a CZ entangler multiplies by signs."""
        batch = state.shape[0]
        for position, matrix in enumerate(reversed(blocks)):
            size = matrix.shape[-1]
            state = (state.reshape(-1, size) @ matrix.T).reshape(batch, -1)
            if position < len(blocks) - 1:
                state = state.reshape(batch, -1, size).transpose(1, 2).reshape(batch, -1)
        state = _Permute.apply(state, index, inverse)
        ansatz = self.circuit.ansatz
        if ansatz is not None and ansatz.entangler == "cz_ring" and self.n > 1:
            state = state * self._cz_signs(ansatz.entangling_gates(self.n), state.device)
        return state

    def _layer_unitaries(self, rotation: torch.Tensor, low: int, high: int, step: _Step | None,
                         device: torch.device) -> torch.Tensor:
        """Kronecker products of wires ``low..high-1`` for every layer, ``(layers, d, d)``; with
        ``step`` the entangler is folded in (rows permuted or scaled).

        Entry ``(i, j)`` of a Kronecker product is the product over wires of the entry that
        the wire's bits of ``i`` and ``j`` select: one gather and one product, whatever the
        number of wires (a few-qubit step is overhead-bound; pairwise products were 3x the
        ops)."""
        width = high - low
        index = self._kron_index(width, step, device)  # (width, d, d) into (width * 4)
        entries = rotation[:, low:high].reshape(rotation.shape[0], width * 4)
        kron = entries[:, index].prod(1)
        if step is not None and step.gates and step.index is None:  # a CZ entangler: signs
            kron = self._cz_signs(step.gates, device)[None, :, None] * kron
        return kron

    def _kron_index(self, width: int, step: _Step | None, device: torch.device) -> torch.Tensor:
        """Where entry ``(i, j)`` of a ``width``-wire Kronecker product finds each wire's
        factor among the wires' flattened 2x2 matrices; rows permuted by a CNOT entangler."""
        permuted = step is not None and step.index is not None
        key = (f"kron-{width}-{permuted}", device)
        if key not in self._constants:
            bits = _bits(width).T  # (width, d)
            index = 4 * torch.arange(width)[:, None, None] + 2 * bits[:, :, None] + bits[:, None, :]
            if permuted:
                assert step is not None and step.index is not None
                index = index[:, step.index, :]
            self._constants[key] = index.to(device)
        return self._constants[key]

    def _cz_signs(self, gates: Sequence[Gate], device: torch.device) -> torch.Tensor:
        key = ("cz", device)
        if key not in self._constants:
            bits = _bits(self.n)
            sign = torch.ones(2**self.n)
            for gate in gates:
                sign = sign * (1 - 2 * (bits[:, gate.wires[0]] & bits[:, gate.wires[1]]))
            self._constants[key] = sign.to(device=device, dtype=self.dtype)
        return self._constants[key]

    def _inverse(self, index: torch.Tensor, device: torch.device) -> torch.Tensor:
        key = (f"inverse-{id(index)}", device)
        if key not in self._constants:
            self._constants[key] = torch.argsort(index).to(device)
        return self._constants[key]

    def _on(self, index: torch.Tensor, device: torch.device) -> torch.Tensor:
        """``index`` on ``device``, copied there once."""
        if index.device == device:
            return index
        key = (f"index-{id(index)}", device)
        if key not in self._constants:
            self._constants[key] = index.to(device)
        return self._constants[key]

    def _params(self, gate: Gate, angles: torch.Tensor | None, weights: torch.Tensor | None,
                device: torch.device) -> torch.Tensor | None:
        """A gate's parameters ``(P, n_params)`` (``P`` 1 or the batch), ``None`` if it has none."""
        if not gate.params:
            return None
        values = [self._gather([a], a.source, angles, weights, device) for a in gate.params]
        return torch.cat(torch.broadcast_tensors(*values), -1)

    def _local_index(self, wires: Sequence[int], device: torch.device) -> torch.Tensor:
        """For every basis state, the index its bits on ``wires`` select in a gate's matrix."""
        key = (f"local-{tuple(wires)}", device)
        if key not in self._constants:
            bits = _bits(self.n)
            k = len(wires)
            local = sum(bits[:, w] << (k - 1 - j) for j, w in enumerate(wires))
            self._constants[key] = torch.as_tensor(local).to(device)
        return self._constants[key]

    def _diagonal(self, state: torch.Tensor, gates: Sequence[Gate], angles: torch.Tensor | None,
                  weights: torch.Tensor | None) -> torch.Tensor:
        """Gates declared diagonal: the state times the diagonal each basis state selects."""
        for gate in gates:
            theta = self._params(gate, angles, weights, state.device)
            matrix = op_matrices(gate.name, theta, self.dtype, state.device, (1,))
            diagonal = matrix.diagonal(dim1=-2, dim2=-1)  # (P, 2**k)
            state = state * diagonal[:, self._local_index(gate.wires, state.device)]
        return state

    def _dense(self, state: torch.Tensor, gates: Sequence[Gate], angles: torch.Tensor | None,
               weights: torch.Tensor | None) -> torch.Tensor:
        """Any other gate: its wires moved last, one (batched) matmul, moved back."""
        n = self.n
        for gate in gates:
            theta = self._params(gate, angles, weights, state.device)
            matrix = op_matrices(gate.name, theta, self.dtype, state.device, (1,))  # (P, d, d)
            k = len(gate.wires)
            source = [1 + w for w in gate.wires]
            target = list(range(n + 1 - k, n + 1))
            moved = state.reshape(state.shape[0], *([2] * n)).movedim(source, target)
            shape = moved.shape[1:]
            out = moved.reshape(state.shape[0], -1, 2**k) @ matrix.mT
            state = out.reshape(out.shape[0], *shape).movedim(target, source).reshape(
                out.shape[0], -1)
        return state
