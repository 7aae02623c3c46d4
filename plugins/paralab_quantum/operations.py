"""The operation table: every gate paralab knows, as one record.

A record (:class:`Operation`) carries what every backend needs: the number of wires and of
parameters, the matrix (as a product of Pauli rotations and a phase, or a constant, or a
controlled copy of another record), the *declared* structure (``controls``, ``diagonal``,
``permutation``) and the gate's names in PennyLane, Qiskit and OpenQASM 3. The torch
simulator dispatches on the declared structure (a permutation is one gather, a diagonal one
multiply, anything else a dense matmul on its wires), the PennyLane and Qiskit builders and
the QASM 3 exporter/importer read the names, and :func:`check_structure` verifies every
declaration against the matrix (the tests call it), so a gate added here either compiles right
everywhere or fails a test, never silently compiles to another operation.

Conventions: a record's wire 0 is the most significant bit of its matrix index (PennyLane's
order); a controlled record's control wires come first. Parameters are angles in radians.

Pure Python (``cmath``): importing this module costs nothing.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

Matrix = list[list[complex]]

PAULI: dict[str, Matrix] = {
    "I": [[1, 0], [0, 1]],
    "X": [[0, 1], [1, 0]],
    "Y": [[0, -1j], [1j, 0]],
    "Z": [[1, 0], [0, -1]],
}
"""The Pauli matrices by letter."""

_S2 = 1 / math.sqrt(2)


@dataclass(frozen=True)
class Rotation:
    """The factor ``exp(-i * params[index] / 2 * P)`` for the Pauli word ``P`` on the
    operation's wires (``"Z"``, ``"ZX"``: one letter per wire, ``I`` where it acts trivially)."""

    word: str
    index: int


@dataclass(frozen=True)
class Step:
    """One gate of a decomposition: ``name`` on the record's local ``wires``; each parameter is
    the record's parameter ``int`` or a constant ``float``."""

    name: str
    wires: tuple[int, ...]
    params: tuple[int | float, ...] = ()


@dataclass(frozen=True)
class Operation:
    """One gate.

    :param rotations: the parametric matrix, factors applied in order (first listed acts first).
    :param phase: a global phase ``exp(i * sum(phase[k] * params[k]))`` of the parametric matrix.
    :param constant: the matrix of a parameter-free, uncontrolled gate.
    :param controls: the first ``controls`` wires control ``target`` (a record's name) on the rest.
    :param diagonal: declared: the matrix is diagonal for every parameter value.
    :param permutation: declared: the matrix permutes the basis (parameter-free).
    :param pennylane: the PennyLane class (``PauliRot`` takes the word as ``pauli_word``).
    :param qiskit: the ``QuantumCircuit`` method, or ``None``: built from ``decomposition``.
    :param qasm: the OpenQASM 3 name; with ``decomposition`` and no ``qasm_builtin`` the exporter
        writes a ``gate`` definition (the name is not in ``stdgates.inc``).
    """

    name: str
    n_wires: int
    n_params: int = 0
    rotations: tuple[Rotation, ...] = ()
    phase: tuple[float, ...] = ()
    constant: Matrix | None = None
    controls: int = 0
    target: str | None = None
    diagonal: bool = False
    permutation: bool = False
    pennylane: str = ""
    pauli_word: str | None = None
    qiskit: str | None = None
    qasm: str = ""
    qasm_builtin: bool = True
    decomposition: tuple[Step, ...] = ()
    param_names: tuple[str, ...] = field(default=())

    @property
    def parametric(self) -> bool:
        return self.n_params > 0

    @property
    def target_wires(self) -> int:
        return self.n_wires - self.controls


def _op(name: str, n_wires: int, **kwargs: object) -> Operation:
    return Operation(name, n_wires, **kwargs)  # type: ignore[arg-type]


def _rotation(name: str, word: str, pennylane: str, qiskit: str, qasm: str, *,
              builtin: bool = True, decomposition: tuple[Step, ...] = (),
              pauli_word: str | None = None) -> Operation:
    return _op(name, len(word), n_params=1, rotations=(Rotation(word, 0),),
               diagonal=set(word) <= {"Z", "I"}, pennylane=pennylane, pauli_word=pauli_word,
               qiskit=qiskit, qasm=qasm, qasm_builtin=builtin, decomposition=decomposition,
               param_names=("theta",))


def _controlled(name: str, target: str, controls: int, pennylane: str, qiskit: str, qasm: str,
                **kwargs: object) -> Operation:
    base = _BASE[target]
    return _op(name, controls + base.n_wires, n_params=base.n_params, controls=controls,
               target=target, pennylane=pennylane, qiskit=qiskit, qasm=qasm,
               param_names=base.param_names, **kwargs)


def _zz_steps(before: tuple[Step, ...], after: tuple[Step, ...]) -> tuple[Step, ...]:
    """``before``; exp(-i theta/2 Z Z) as CX, RZ, CX; ``after``."""
    core = (Step("CNOT", (0, 1)), Step("RZ", (1,), (0,)), Step("CNOT", (0, 1)))
    return before + core + after


_HALF_PI = math.pi / 2
_BASE_LIST = [
    _op("H", 1, constant=[[_S2, _S2], [_S2, -_S2]], pennylane="Hadamard", qiskit="h", qasm="h"),
    _op("X", 1, constant=PAULI["X"], permutation=True, pennylane="PauliX", qiskit="x", qasm="x"),
    _op("Y", 1, constant=PAULI["Y"], pennylane="PauliY", qiskit="y", qasm="y"),
    _op("Z", 1, constant=PAULI["Z"], diagonal=True, pennylane="PauliZ", qiskit="z", qasm="z"),
    _op("S", 1, constant=[[1, 0], [0, 1j]], diagonal=True, pennylane="S", qiskit="s", qasm="s"),
    _op("T", 1, constant=[[1, 0], [0, cmath.exp(0.25j * math.pi)]], diagonal=True,
        pennylane="T", qiskit="t", qasm="t"),
    _op("SX", 1, constant=[[0.5 + 0.5j, 0.5 - 0.5j], [0.5 - 0.5j, 0.5 + 0.5j]],
        pennylane="SX", qiskit="sx", qasm="sx"),
    _rotation("RX", "X", "RX", "rx", "rx"),
    _rotation("RY", "Y", "RY", "ry", "ry"),
    _rotation("RZ", "Z", "RZ", "rz", "rz"),
    # P(phi) = diag(1, e^{i phi}) = e^{i phi / 2} RZ(phi)
    _op("P", 1, n_params=1, rotations=(Rotation("Z", 0),), phase=(0.5,), diagonal=True,
        pennylane="PhaseShift", qiskit="p", qasm="p", param_names=("phi",)),
    # Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi) (PennyLane's Rot)
    _op("Rot", 1, n_params=3,
        rotations=(Rotation("Z", 0), Rotation("Y", 1), Rotation("Z", 2)),
        pennylane="Rot", qiskit=None, qasm="rot", qasm_builtin=False,
        decomposition=(Step("RZ", (0,), (0,)), Step("RY", (0,), (1,)), Step("RZ", (0,), (2,))),
        param_names=("phi", "theta", "omega")),
    # U3(theta, phi, lam) = e^{i (phi + lam) / 2} RZ(phi) RY(theta) RZ(lam): Qiskit's U and
    # OpenQASM 3's builtin U exactly (not up to a global phase)
    _op("U3", 1, n_params=3,
        rotations=(Rotation("Z", 2), Rotation("Y", 0), Rotation("Z", 1)), phase=(0.0, 0.5, 0.5),
        pennylane="U3", qiskit="u", qasm="U", param_names=("theta", "phi", "lam")),
    _op("SWAP", 2, constant=[[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]],
        permutation=True, pennylane="SWAP", qiskit="swap", qasm="swap"),
    _op("ISWAP", 2, constant=[[1, 0, 0, 0], [0, 0, 1j, 0], [0, 1j, 0, 0], [0, 0, 0, 1]],
        pennylane="ISWAP", qiskit="iswap", qasm="iswap", qasm_builtin=False,
        decomposition=(Step("S", (0,)), Step("S", (1,)), Step("H", (0,)), Step("CNOT", (0, 1)),
                       Step("CNOT", (1, 0)), Step("H", (1,)))),
    _rotation("RXX", "XX", "IsingXX", "rxx", "rxx", builtin=False, decomposition=_zz_steps(
        (Step("H", (0,)), Step("H", (1,))), (Step("H", (0,)), Step("H", (1,))))),
    _rotation("RYY", "YY", "IsingYY", "ryy", "ryy", builtin=False, decomposition=_zz_steps(
        (Step("RX", (0,), (_HALF_PI,)), Step("RX", (1,), (_HALF_PI,))),
        (Step("RX", (0,), (-_HALF_PI,)), Step("RX", (1,), (-_HALF_PI,))))),
    _rotation("RZZ", "ZZ", "IsingZZ", "rzz", "rzz", builtin=False, decomposition=_zz_steps((), ())),
    _rotation("RZX", "ZX", "PauliRot", "rzx", "rzx", builtin=False, pauli_word="ZX",
              decomposition=_zz_steps((Step("H", (1,)),), (Step("H", (1,)),))),
]
_BASE = {op.name: op for op in _BASE_LIST}

_CONTROLLED_LIST = [
    _controlled("CNOT", "X", 1, "CNOT", "cx", "cx", permutation=True),
    _controlled("CY", "Y", 1, "CY", "cy", "cy"),
    _controlled("CZ", "Z", 1, "CZ", "cz", "cz", diagonal=True),
    _controlled("CH", "H", 1, "CH", "ch", "ch"),
    _controlled("CRX", "RX", 1, "CRX", "crx", "crx"),
    _controlled("CRY", "RY", 1, "CRY", "cry", "cry"),
    _controlled("CRZ", "RZ", 1, "CRZ", "crz", "crz", diagonal=True),
    _controlled("CP", "P", 1, "ControlledPhaseShift", "cp", "cp", diagonal=True),
    _controlled("CSWAP", "SWAP", 1, "CSWAP", "cswap", "cswap", permutation=True),
    _controlled("Toffoli", "X", 2, "Toffoli", "ccx", "ccx", permutation=True),
]

OPERATIONS: dict[str, Operation] = {op.name: op for op in [*_BASE_LIST, *_CONTROLLED_LIST]}
"""Every gate by its paralab name."""

QASM_NAMES: dict[str, str] = {op.qasm: op.name for op in OPERATIONS.values()}
"""OpenQASM 3 name -> paralab name (``cnot`` and ``phase`` also read as in ``stdgates.inc``)."""
QASM_NAMES.update({"CX": "CNOT", "cnot": "CNOT", "phase": "P", "u3": "U3", "ccx": "Toffoli"})


def operation(name: str) -> Operation:
    """The record of ``name``; :class:`KeyError` names the valid gates."""
    try:
        return OPERATIONS[name]
    except KeyError:
        raise KeyError(f"gate {name!r} is unknown; valid gates: {', '.join(OPERATIONS)}") from None


# ------------------------------------------------------------------ pure-Python matrices


def _matmul(a: Matrix, b: Matrix) -> Matrix:
    return [[sum(a[i][k] * b[k][j] for k in range(len(b))) for j in range(len(b[0]))]
            for i in range(len(a))]


def _kron(a: Matrix, b: Matrix) -> Matrix:
    return [[a[i // len(b)][j // len(b)] * b[i % len(b)][j % len(b)]
             for j in range(len(a) * len(b))] for i in range(len(a) * len(b))]


def _eye(size: int) -> Matrix:
    return [[complex(i == j) for j in range(size)] for i in range(size)]


def pauli_word_matrix(word: str) -> Matrix:
    """The Kronecker product of the word's Pauli matrices (first letter most significant)."""
    matrix: Matrix = [[1]]
    for letter in word:
        matrix = _kron(matrix, PAULI[letter])
    return matrix


def matrix(name: str | Operation, params: Sequence[float] = ()) -> Matrix:
    """The record's matrix at ``params`` in plain Python (the reference the tests compare the
    torch simulator, PennyLane and Qiskit against); ``name`` may be a record itself."""
    op = name if isinstance(name, Operation) else operation(name)
    name = op.name
    if len(params) != op.n_params:
        raise ValueError(f"gate {name} takes {op.n_params} parameter(s), got {len(params)}")
    if op.controls:
        assert op.target is not None
        inner = matrix(op.target, params)
        size, small = 2**op.n_wires, len(inner)
        full = _eye(size)
        for i in range(small):
            for j in range(small):
                full[size - small + i][size - small + j] = inner[i][j]
        return full
    if op.constant is not None:
        return [[complex(v) for v in row] for row in op.constant]
    result = _eye(2**op.n_wires)
    for rotation in op.rotations:
        half = params[rotation.index] / 2
        word = pauli_word_matrix(rotation.word)
        factor = [[math.cos(half) * (i == j) - 1j * math.sin(half) * word[i][j]
                   for j in range(len(word))] for i in range(len(word))]
        result = _matmul(factor, result)
    if op.phase:
        scalar = cmath.exp(1j * sum(c * p for c, p in zip(op.phase, params, strict=False)))
        result = [[scalar * v for v in row] for row in result]
    return result


def check_structure(name: str | Operation, samples: Sequence[Sequence[float]]) -> None:
    """Verify a record's declared structure against its matrix at the parameter ``samples``
    (each at least ``n_params`` long); ``name`` may be a record not in the table.

    :raises AssertionError: naming the declaration the matrix contradicts.
    """
    op = name if isinstance(name, Operation) else operation(name)
    name = op.name
    for params in samples or [()]:
        m = matrix(op, list(params)[: op.n_params])
        size = len(m)
        assert size == 2**op.n_wires, f"{name}: matrix size {size} for {op.n_wires} wires"
        unitary = _matmul(m, [[m[j][i].conjugate() for j in range(size)] for i in range(size)])
        assert all(abs(unitary[i][j] - (i == j)) < 1e-12 for i in range(size)
                   for j in range(size)), f"{name}: not unitary"
        off = max(abs(m[i][j]) for i in range(size) for j in range(size) if i != j)
        if op.diagonal:
            assert off < 1e-12, f"{name} is declared diagonal but is not"
        else:
            assert off > 1e-9 or op.n_params, f"{name} is diagonal but not declared so"
        if op.permutation:
            assert not op.n_params, f"{name}: a declared permutation takes no parameters"
            assert all(abs(v) < 1e-12 or abs(v - 1) < 1e-12 for row in m for v in row), (
                f"{name} is declared a permutation but is not")
        if op.controls:
            free = size - 2 ** (op.n_wires - op.controls)
            assert all(abs(m[i][j] - (i == j)) < 1e-12 for i in range(size) for j in range(size)
                       if i < free or j < free), f"{name} is declared controlled but is not"


def local_permutation(name: str) -> list[int]:
    """For a permutation record: ``new[i] = old[p[i]]`` on the record's own basis."""
    m = matrix(name)
    return [max(range(len(row)), key=lambda j, row=row: abs(row[j])) for row in m]


__all__ = ["OPERATIONS", "PAULI", "QASM_NAMES", "Matrix", "Operation", "Rotation", "Step",
           "check_structure", "local_permutation", "matrix", "operation", "pauli_word_matrix"]
