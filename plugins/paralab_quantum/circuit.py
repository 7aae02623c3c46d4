"""One circuit description, compiled to every backend.

A :class:`Circuit` is a small, backend-free intermediate representation: a data embedding
(angle, amplitude or the ZZ feature map of Havlicek et al. 2019), trainable ansatz layers
(per-qubit rotations followed by an entangler) and a measurement (Pauli-Z expectation of every
qubit, or the probabilities of the basis states). :meth:`Circuit.program` flattens it to a list
of elementary :class:`Gate` s, each naming where its angle comes from: an *embedding angle*
(computed from the input features by :meth:`Embedding.angles`) or a *weight*. The torch
simulator, the PennyLane qnode and the Qiskit builder all read that one list, which is why the
three agree (the parity tests check it).

Wire 0 is the most significant bit of a basis-state index everywhere in paralab (PennyLane's
convention); the Qiskit builder converts to Qiskit's little-endian order.

Pure Python: importing this module costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from paralab_quantum.observables import Observable, ObservableError, as_observables
from paralab_quantum.operations import OPERATIONS

GATES: dict[str, tuple[int, bool]] = {
    name: (op.n_wires, op.parametric) for name, op in OPERATIONS.items()
}
"""Every gate's arity and whether it takes parameters, read from the operation table
(:mod:`paralab_quantum.operations`, the one place a gate is defined)."""

ROTATIONS = ("RX", "RY", "RZ")
ENTANGLERS = ("cnot_ring", "cnot_chain", "cz_ring", "none")
EMBEDDINGS = ("angle", "amplitude", "zz")
MEASUREMENTS = ("expval", "probs", "var")
ZZ_ENTANGLEMENTS = ("full", "linear", "circular")


class CircuitError(ValueError):
    """A circuit description that no backend can run: the message names the field."""


def _choice(field_name: str, value: str, valid: Sequence[str]) -> str:
    if value not in valid:
        raise CircuitError(f"{field_name} {value!r} is unknown; valid: {', '.join(valid)}")
    return value


@dataclass(frozen=True)
class Angle:
    """Where a gate's angle comes from: ``("x", i)`` the i-th embedding angle, ``("w", i)`` the
    i-th trainable weight, or ``("const", value)``."""

    source: str
    index: int = 0
    value: float = 0.0


@dataclass(frozen=True)
class Gate:
    """One elementary gate: a record of :data:`~paralab_quantum.operations.OPERATIONS` on
    ``wires``, with one :class:`Angle` per parameter. ``angle`` is the one parameter of a
    single-parameter gate (``Gate("RY", (0,), angle)``); ``params`` takes several
    (``Gate("U3", (0,), params=(a, b, c))``); each fills in the other."""

    name: str
    wires: tuple[int, ...]
    angle: Angle | None = None
    params: tuple[Angle, ...] = ()

    def __post_init__(self) -> None:
        op = OPERATIONS.get(self.name)
        if op is None:
            raise CircuitError(f"gate {self.name!r} is unknown; valid gates: {', '.join(GATES)}")
        object.__setattr__(self, "wires", tuple(self.wires))
        if self.angle is not None and not self.params:
            object.__setattr__(self, "params", (self.angle,))
        elif self.params and self.angle is None:
            object.__setattr__(self, "params", tuple(self.params))
            object.__setattr__(self, "angle", self.params[0])
        elif self.params and self.angle is not None and self.params[0] != self.angle:
            raise CircuitError(f"gate {self.name}: give angle or params, not both")
        if len(self.wires) != op.n_wires or len(set(self.wires)) != op.n_wires:
            raise CircuitError(
                f"gate {self.name} acts on {op.n_wires} distinct wire(s), got {self.wires}")
        if len(self.params) != op.n_params:
            raise CircuitError(
                f"gate {self.name} takes {op.n_params} parameter(s), got {len(self.params)}"
                + (f" ({', '.join(op.param_names)})" if op.param_names else ""))


@dataclass(frozen=True)
class Embedding:
    """How input features become a state.

    * ``angle``: one rotation (``rotation``) per feature, angle ``scale * x_i``; up to
      ``n_qubits`` features.
    * ``amplitude``: the normalised, zero-padded feature vector is the state; up to
      ``2**n_qubits`` features.
    * ``zz``: Qiskit's ``zz_feature_map`` (Havlicek et al.): ``reps`` times H on every
      qubit, P(2 x_i), and for each pair (i, j) CNOT-P(2 (pi - x_i)(pi - x_j))-CNOT; up to
      ``n_qubits`` features (missing ones are zero).
    """

    kind: str = "angle"
    rotation: str = "RY"
    scale: float = 1.0
    reps: int = 2
    entanglement: str = "full"

    def __post_init__(self) -> None:
        _choice("embedding", self.kind, EMBEDDINGS)
        _choice("embedding rotation", self.rotation, ROTATIONS)
        _choice("zz entanglement", self.entanglement, ZZ_ENTANGLEMENTS)
        if self.reps < 1:
            raise CircuitError(f"embedding reps must be >= 1, got {self.reps}")

    def capacity(self, n_qubits: int) -> int:
        """The most input features this embedding takes on ``n_qubits`` qubits."""
        return 2**n_qubits if self.kind == "amplitude" else n_qubits

    def pairs(self, n_qubits: int) -> list[tuple[int, int]]:
        """The entangled pairs of the ZZ map, in Qiskit's order."""
        if self.entanglement == "full":
            return [(i, j) for i in range(n_qubits) for j in range(i + 1, n_qubits)]
        pairs = [(i, i + 1) for i in range(n_qubits - 1)]
        if self.entanglement == "circular" and n_qubits > 2:
            pairs = [(n_qubits - 1, 0), *pairs]
        return pairs

    def n_angles(self, n_qubits: int) -> int:
        if self.kind == "angle":
            return n_qubits
        if self.kind == "zz":
            return n_qubits + len(self.pairs(n_qubits))
        return 0

    def angle_terms(self, columns: Sequence[Any], n_qubits: int) -> list[Any]:
        """The embedding angles as expressions of the feature columns.

        ``columns`` are torch tensors (one per feature, shape ``(batch,)``) or Qiskit
        ``Parameter`` s: the same arithmetic serves the simulator and the exported circuit.
        Missing features count as 0 (a zero column of the same kind: ``torch.stack`` needs
        tensors, not floats, and a batch of them).
        """
        columns = list(columns)
        filler: Any = 0.0
        if columns and hasattr(columns[0], "new_zeros"):
            filler = columns[0].new_zeros(columns[0].shape)
        columns += [filler] * (n_qubits - len(columns))
        if self.kind == "angle":
            return [column * self.scale for column in columns]
        if self.kind == "zz":
            singles = [column * 2.0 for column in columns]
            doubles = [
                (math.pi - columns[i]) * (math.pi - columns[j]) * 2.0
                for i, j in self.pairs(n_qubits)
            ]
            return singles + doubles
        return []

    def gates(self, n_qubits: int) -> list[Gate]:
        if self.kind == "angle":
            return [Gate(self.rotation, (q,), Angle("x", q)) for q in range(n_qubits)]
        if self.kind == "zz":
            gates: list[Gate] = []
            pairs = self.pairs(n_qubits)
            for _ in range(self.reps):
                gates += [Gate("H", (q,)) for q in range(n_qubits)]
                gates += [Gate("P", (q,), Angle("x", q)) for q in range(n_qubits)]
                for k, (i, j) in enumerate(pairs):
                    gates += [
                        Gate("CNOT", (i, j)),
                        Gate("P", (j,), Angle("x", n_qubits + k)),
                        Gate("CNOT", (i, j)),
                    ]
            return gates
        return []  # amplitude: a state preparation, not gates


@dataclass(frozen=True)
class Ansatz:
    """``layers`` trainable layers: each qubit gets ``rotations`` (one weight each), then the
    ``entangler`` (a CNOT ring by default) couples the qubits. Weights are laid out
    ``(layer, qubit, rotation)``, row-major."""

    layers: int = 2
    rotations: tuple[str, ...] = ("RY", "RZ")
    entangler: str = "cnot_ring"

    def __post_init__(self) -> None:
        if self.layers < 0:
            raise CircuitError(f"layers must be >= 0, got {self.layers}")
        if not self.rotations:
            raise CircuitError("ansatz rotations must name at least one of RX, RY, RZ")
        for rotation in self.rotations:
            _choice("ansatz rotation", rotation, ROTATIONS)
        _choice("entangler", self.entangler, ENTANGLERS)

    def n_weights(self, n_qubits: int) -> int:
        return self.layers * n_qubits * len(self.rotations)

    def entangling_gates(self, n_qubits: int) -> list[Gate]:
        if self.entangler == "none" or n_qubits < 2:
            return []
        name = "CZ" if self.entangler == "cz_ring" else "CNOT"
        if self.entangler == "cnot_chain" or n_qubits == 2:
            pairs = [(q, q + 1) for q in range(n_qubits - 1)]
        else:
            pairs = [(q, (q + 1) % n_qubits) for q in range(n_qubits)]
        return [Gate(name, pair) for pair in pairs]

    def gates(self, n_qubits: int, offset: int = 0) -> list[Gate]:
        gates: list[Gate] = []
        k = len(self.rotations)
        for layer in range(self.layers):
            for q in range(n_qubits):
                for r, rotation in enumerate(self.rotations):
                    index = offset + (layer * n_qubits + q) * k + r
                    gates.append(Gate(rotation, (q,), Angle("w", index)))
            gates += self.entangling_gates(n_qubits)
        return gates


@dataclass(frozen=True)
class Circuit:
    """A whole circuit: ``embedding`` -> ``ansatz`` -> free ``gates`` -> ``measurement``.

    ``gates`` are extra elementary gates after the ansatz (random circuits in the parity tests
    use them); their ``("w", i)`` angles index the weights that follow the ansatz's.
    ``measurement`` ``expval`` / ``var``: the expectation / variance of each of ``observables``
    (:class:`~paralab_quantum.observables.Observable` s or their text, e.g. ``"0.5*Z0 Z1 + X2"``;
    default Pauli Z of every qubit); ``probs``: the basis-state probabilities.
    """

    n_qubits: int
    embedding: Embedding | None = field(default_factory=Embedding)
    ansatz: Ansatz | None = field(default_factory=Ansatz)
    gates: tuple[Gate, ...] = ()
    measurement: str = "expval"
    observables: tuple[Observable, ...] = ()
    inputs: int = 0
    """without an embedding: how many raw features the gates' ``("x", i)`` angles read (a
    circuit from the spec, :mod:`paralab_quantum.spec_circuit`: re-uploading blocks)"""

    def __post_init__(self) -> None:
        if not isinstance(self.n_qubits, int) or self.n_qubits < 1:
            raise CircuitError(f"n_qubits must be a positive integer, got {self.n_qubits!r}")
        _choice("measurement", self.measurement, MEASUREMENTS)
        try:
            observables = as_observables(self.observables)
            for observable in observables:
                observable.check(self.n_qubits)
        except ObservableError as error:
            raise CircuitError(f"observables: {error}") from None
        if observables and self.measurement == "probs":
            raise CircuitError("observables are measured by measurement 'expval' or 'var', "
                               "not 'probs'")
        object.__setattr__(self, "observables", observables)
        for gate in self.gates:
            if max(gate.wires) >= self.n_qubits:
                raise CircuitError(
                    f"gate {gate.name} on wires {gate.wires} but the circuit has "
                    f"{self.n_qubits} qubit(s) (wires 0..{self.n_qubits - 1})"
                )

    @property
    def n_features(self) -> int:
        """The most input features the embedding accepts (0 without an embedding)."""
        return self.embedding.capacity(self.n_qubits) if self.embedding else self.inputs

    @property
    def n_angles(self) -> int:
        return self.embedding.n_angles(self.n_qubits) if self.embedding else self.inputs

    @property
    def reads_inputs(self) -> bool:
        """Whether the circuit takes inputs ``x`` (an embedding, or gates reading features)."""
        return self.embedding is not None or self.inputs > 0

    @property
    def n_weights(self) -> int:
        ansatz = self.ansatz.n_weights(self.n_qubits) if self.ansatz else 0
        free = [a.index + 1 for g in self.gates for a in g.params if a.source == "w"]
        return ansatz + max(free, default=0)

    @property
    def n_outputs(self) -> int:
        if self.measurement == "probs":
            return 2**self.n_qubits
        return len(self.observables) or self.n_qubits

    @property
    def measured(self) -> tuple[Observable, ...]:
        """The observables ``expval``/``var`` measure: the given ones, or Z of every qubit."""
        return self.observables or tuple(Observable.pauli_z(q) for q in range(self.n_qubits))

    @property
    def amplitude(self) -> bool:
        return self.embedding is not None and self.embedding.kind == "amplitude"

    def check_features(self, n_features: int, where: str = "circuit") -> None:
        """A clear error when inputs have more features than the embedding can take."""
        if self.embedding is None:
            if n_features > self.inputs:
                raise CircuitError(f"{where}: {n_features} input features but the circuit's "
                                   f"gates read {self.inputs}")
            return
        if n_features > self.n_features:
            need = (
                math.ceil(math.log2(max(n_features, 2)))
                if self.embedding.kind == "amplitude"
                else n_features
            )
            raise CircuitError(
                f"{where}: {n_features} input features but the {self.embedding.kind!r} "
                f"embedding on {self.n_qubits} qubit(s) takes at most {self.n_features}; use "
                f"n_qubits >= {need}"
                + ("" if self.embedding.kind == "amplitude" else ", the amplitude embedding")
                + " or the hybrid model (a learned projection)"
            )

    def program(self) -> list[Gate]:
        """The flat list of elementary gates (amplitude embedding excluded: a state prep)."""
        gates: list[Gate] = []
        if self.embedding is not None:
            gates += self.embedding.gates(self.n_qubits)
        offset = 0
        if self.ansatz is not None:
            gates += self.ansatz.gates(self.n_qubits)
            offset = self.ansatz.n_weights(self.n_qubits)
        for gate in self.gates:
            if offset and any(a.source == "w" for a in gate.params):
                params = tuple(Angle("w", a.index + offset) if a.source == "w" else a
                               for a in gate.params)
                gate = Gate(gate.name, gate.wires, params=params)
            gates.append(gate)
        return gates

    def angle_terms(self, columns: Sequence[Any]) -> list[Any]:
        if self.embedding is not None:
            return self.embedding.angle_terms(columns, self.n_qubits)
        columns = list(columns)  # raw features, missing ones 0 (a zero column, as embeddings)
        filler: Any = columns[0].new_zeros(columns[0].shape) if columns and hasattr(
            columns[0], "new_zeros") else 0.0
        return columns + [filler] * (self.inputs - len(columns))


def resolve(angle: Angle, angles: Any, weights: Any, pick: Callable[[Any, int], Any]) -> Any:
    """The value of ``angle`` given embedding ``angles`` and ``weights`` (``pick`` indexes)."""
    if angle.source == "x":
        return pick(angles, angle.index)
    if angle.source == "w":
        return pick(weights, angle.index)
    return angle.value


def random_circuit(
    n_qubits: int, depth: int, seed: int, *, embedding: str | None = "angle", layers: int = 1
) -> Circuit:
    """A random circuit for the parity tests: an embedding, an ansatz, then ``depth`` random
    elementary gates, half of them with trainable angles."""
    import random

    rng = random.Random(seed)
    names = [name for name, (arity, _) in GATES.items() if arity <= n_qubits]
    gates: list[Gate] = []
    n_free = 0
    for _ in range(depth):
        name = rng.choice(names)
        op = OPERATIONS[name]
        wires = tuple(rng.sample(range(n_qubits), op.n_wires))
        params = []
        for _ in range(op.n_params):
            if rng.random() < 0.5:
                params.append(Angle("w", n_free))
                n_free += 1
            else:
                params.append(Angle("const", value=rng.uniform(-math.pi, math.pi)))
        gates.append(Gate(name, wires, params=tuple(params)))
    rotations = tuple(rng.sample(ROTATIONS, rng.randint(1, 3)))
    entangler = rng.choice(ENTANGLERS)
    kind = embedding
    return Circuit(
        n_qubits,
        embedding=Embedding(kind, rotation=rng.choice(ROTATIONS), reps=1) if kind else None,
        ansatz=Ansatz(layers, rotations, entangler),
        gates=tuple(gates),
    )
