"""OpenQASM 3 and QuantumCircuit import, and round trips through every backend.

Random circuits over every gate of the table: exported by paralab and read back, exported by
Qiskit's own ``qasm3.dumps`` and read by paralab, and imported straight from a Qiskit
``QuantumCircuit``, give the original state to 1e-10 (complex128), on the torch simulator,
PennyLane and Qiskit alike; hand-written OpenQASM 3 (user gate definitions, registers,
constant expressions) equals what Qiskit's importer reads from the same text; and what cannot be
represented exactly is refused, naming the statement.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paralab_quantum.circuit import CircuitError, random_circuit
from paralab_quantum.qasm_import import from_qasm3, from_qiskit
from paralab_quantum.simulator import TorchSimulator

pytest.importorskip("qiskit")
pytest.importorskip("pennylane")
pytest.importorskip("qiskit_qasm3_import")
from qiskit import qasm3  # noqa: E402

from paralab_quantum import pennylane_backend, qiskit_backend  # noqa: E402

TOLERANCE = 1e-10
CASES = [(n, embedding, seed) for n in (3, 4) for embedding in ("angle", "zz", None)
         for seed in range(2)]


def _case(n_qubits, embedding, seed):
    circuit = random_circuit(n_qubits, 40, seed=500 * n_qubits + seed + len(str(embedding)),
                             embedding=embedding, layers=1)
    generator = torch.Generator().manual_seed(seed)
    x = None
    if circuit.embedding is not None:
        x = torch.rand(1, circuit.n_features, generator=generator, dtype=torch.float64) * 3
    weights = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 6 - 3
    state = TorchSimulator(circuit, dtype=torch.complex128).state(x, weights)
    return circuit, x, weights, state


def _state(imported, values: dict[str, float]) -> torch.Tensor:
    weights = torch.tensor(imported.weights(values), dtype=torch.float64)
    return TorchSimulator(imported.circuit, dtype=torch.complex128).state(None, weights)


def _qiskit_state(qc, n: int) -> np.ndarray:
    from qiskit.quantum_info import Statevector

    data = np.asarray(Statevector(qc).data)
    return data.reshape([2] * n).transpose(list(reversed(range(n)))).reshape(-1)


def test_the_round_trip_cases_cover_every_gate():
    from paralab_quantum.operations import OPERATIONS

    used = {g.name for case in CASES for g in _case(*case)[0].gates}
    assert used == set(OPERATIONS)


@pytest.mark.parametrize(("n_qubits", "embedding", "seed"), CASES)
def test_paralab_qasm_reads_back_to_the_same_state_on_every_backend(n_qubits, embedding, seed):
    circuit, x, weights, state = _case(n_qubits, embedding, seed)
    text = qiskit_backend.to_qasm3(circuit, None if x is None else x[0])  # weights left free
    imported = from_qasm3(text)
    assert imported.parameters == tuple(f"w_{i}" for i in range(circuit.n_weights))
    values = {f"w_{i}": float(w) for i, w in enumerate(weights)}
    assert (_state(imported, values) - state).abs().max().item() < TOLERANCE
    bound = torch.tensor(imported.weights(values), dtype=torch.float64)
    pennylane = pennylane_backend.make_qnode(imported.circuit, output="state")(None, bound)
    assert (pennylane.reshape(state.shape) - state).abs().max().item() < TOLERANCE
    qiskit = qiskit_backend.statevector(imported.circuit, None, bound)
    assert np.abs(qiskit - state.numpy()).max() < TOLERANCE
    # Exported again, the text is the same: nothing is lost or renamed.
    assert qiskit_backend.to_qasm3(imported.circuit) == text


@pytest.mark.parametrize(("n_qubits", "embedding", "seed"), CASES)
def test_qiskit_exports_and_circuits_import_to_the_same_state(n_qubits, embedding, seed):
    circuit, x, weights, state = _case(n_qubits, embedding, seed)
    qc = qiskit_backend.to_qiskit(circuit, None if x is None else x[0].tolist())
    values = {p.name: float(weights[p.index]) for p in qc.parameters}
    direct = from_qiskit(qc)
    assert (_state(direct, values) - state).abs().max().item() < TOLERANCE
    text = qasm3.dumps(qc)  # Qiskit's own exporter: its names, its gate definitions
    read = from_qasm3(text)
    qiskit_names = {p.name: values[p.name] for p in qc.parameters}
    exported = {name: qiskit_names[qiskit] for name, qiskit in
                zip(sorted(read.parameters), sorted(qiskit_names), strict=True)}
    assert (_state(read, exported) - state).abs().max().item() < TOLERANCE


def test_a_qiskit_library_ansatz_imports_with_its_parameters():
    from qiskit.circuit.library import efficient_su2

    qc = efficient_su2(3, reps=2, entanglement="circular")
    imported = from_qiskit(qc)
    rng = np.random.default_rng(0)
    values = {p.name: float(v) for p, v in zip(qc.parameters, rng.uniform(-3, 3, qc.num_parameters),
                                                strict=True)}
    theirs = _qiskit_state(qc.assign_parameters({p: values[p.name] for p in qc.parameters}), 3)
    assert np.abs(_state(imported, values)[0].numpy() - theirs).max() < TOLERANCE


HAND_WRITTEN = """OPENQASM 3.0;
include "stdgates.inc";
/* a user gate: expanded by paralab, defined for Qiskit by the same text */
gate mix(a, b) p, r { ry(a) p; cx p, r; rz(b) r; cry(0.4) r, p; }
input float[64] theta;
input angle phi;
qreg left[2];
qubit[2] right;
bit[4] c;
h left[0];
mix(theta, pi / 3) left[0], right[1];
crx(-2 * π / 5 + 0.25) right[1], left[1];  // constant arithmetic
U(0.4, phi, tau / 8) right[0];
cp(theta) left[1], right[0];
barrier left[0], right[0];
c[0] = measure left[0];
"""


def test_hand_written_qasm_with_definitions_and_expressions_matches_qiskit():
    imported = from_qasm3(HAND_WRITTEN)
    assert imported.parameters == ("theta", "phi")
    assert imported.circuit.n_qubits == 4
    values = {"theta": 0.7, "phi": -1.3}
    ours = _state(imported, values)[0].numpy()
    qc = qasm3.loads(HAND_WRITTEN)
    qc.remove_final_measurements()
    bound = qc.assign_parameters({p: values[p.name] for p in qc.parameters})
    assert np.abs(ours - _qiskit_state(bound, 4)).max() < TOLERANCE


def test_functions_of_constants_are_evaluated():
    # Qiskit's importer cannot resolve function calls; paralab evaluates them.
    with_functions = from_qasm3("qubit q; rz(sin(0.3) + sqrt(2) * cos(pi)) q; ry(euler) q;")
    numbers = from_qasm3(f"qubit q; rz({float(np.sin(0.3) - np.sqrt(2))!r}) q; ry({np.e!r}) q;")
    assert with_functions.circuit.gates == numbers.circuit.gates


@pytest.mark.parametrize(("text", "message"), [
    ("qubit[2] q; gphase(0.3);", "gphase"),
    ("qubit[2] q; ctrl @ x q[0], q[1];", "not supported"),
    ("input float t; qubit q; rz(2 * t) q;", "expression of an input"),
    ("qubit[2] q; foo q[0];", "gate 'foo' is neither in paralab's table"),
    ("qubit[2] q; h q[2];", "out of range"),
    ("qubit[2] q; h q;", "whole register"),
    ("input float t; qubit q; h q;", "input\\(s\\) t enter no gate"),
    ("OPENQASM 2.0; qreg q[1];", "paralab reads OpenQASM 3"),
    ("qubit q; rz(1, 2) q;", "rz takes 1 parameter"),
    ("qubit q; rz(nope) q;", "unknown name 'nope'"),
])
def test_what_cannot_be_exact_is_refused_naming_the_statement(text, message):
    with pytest.raises(CircuitError, match=message):
        from_qasm3(text)


def test_a_global_phase_in_a_quantum_circuit_is_refused():
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(1, global_phase=0.5)
    qc.h(0)
    with pytest.raises(CircuitError, match="global phase"):
        from_qiskit(qc)
