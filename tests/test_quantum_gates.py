"""The operation table: every gate one record, read the same by every backend.

* every record's declared structure (diagonal, permutation, controlled) holds for its matrix,
  and a wrongly declared record is caught;
* every gate's matrix equals PennyLane's ``qml.matrix`` and Qiskit's ``Operator`` and the
  torch simulator's, at random parameters;
* random circuits drawing from every gate give the same complex128 state on the torch
  simulator, PennyLane ``default.qubit`` and Qiskit ``Statevector`` (1e-10), and through an
  OpenQASM 3 round trip read by Qiskit's importer; gradients equal PennyLane's backprop.

Every reference is computed here, by the peer library.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from paralab_quantum.circuit import Angle, Circuit, CircuitError, Embedding, Gate, random_circuit
from paralab_quantum.operations import (
    OPERATIONS,
    Operation,
    Rotation,
    check_structure,
    matrix,
)
from paralab_quantum.simulator import TorchSimulator, op_matrices

qml = pytest.importorskip("pennylane")
pytest.importorskip("qiskit")
from paralab_quantum import pennylane_backend, qiskit_backend  # noqa: E402

TOLERANCE = 1e-10


def _samples(seed: int, count: int = 4) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.uniform(-math.pi, math.pi) for _ in range(3)] for _ in range(count)]


def test_every_gate_is_in_the_table_with_the_new_ones():
    for name in ("Rot", "U3", "CRX", "CRY", "CRZ", "Toffoli", "SWAP", "ISWAP", "RXX", "RYY",
                 "RZZ", "RZX", "CSWAP", "CP", "CH", "CY"):
        assert name in OPERATIONS


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_declared_structure_holds(name):
    check_structure(name, _samples(len(name)))


def test_a_wrongly_declared_gate_is_caught():
    # The bug the table fixes: a non-diagonal two-qubit gate treated as diagonal.
    wrong_diagonal = Operation("BAD", 2, n_params=1, rotations=(Rotation("XY", 0),),
                               diagonal=True)
    with pytest.raises(AssertionError, match="declared diagonal"):
        check_structure(wrong_diagonal, _samples(0))
    wrong_permutation = Operation("BAD", 1, constant=[[0, 1j], [1j, 0]], permutation=True)
    with pytest.raises(AssertionError, match="declared a permutation"):
        check_structure(wrong_permutation, [[]])
    undeclared = Operation("BAD", 1, constant=[[1, 0], [0, -1]])
    with pytest.raises(AssertionError, match="diagonal but not declared"):
        check_structure(undeclared, [[]])


def _pennylane_matrix(name: str, params: list[float]) -> np.ndarray:
    op = OPERATIONS[name]
    values = list(params)
    if op.pauli_word is not None:
        values.append(op.pauli_word)
    return qml.matrix(getattr(qml, op.pennylane)(*values, wires=list(range(op.n_wires))))


def _qiskit_matrix(name: str, params: list[float]) -> np.ndarray:
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import Operator

    op = OPERATIONS[name]
    qc = QuantumCircuit(op.n_wires)
    qiskit_backend.append_gate(qc, name, list(range(op.n_wires)), params)
    data = Operator(qc).data  # little-endian: reverse both index orders to paralab's
    n = op.n_wires
    order = list(reversed(range(n)))
    return data.reshape([2] * (2 * n)).transpose(order + [n + k for k in order]).reshape(
        2**n, 2**n)


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_gate_matrix_matches_pennylane_qiskit_and_torch(name):
    op = OPERATIONS[name]
    for sample in _samples(7 + len(name), 3):
        params = sample[: op.n_params]
        ours = np.asarray(matrix(name, params), dtype=complex)
        assert np.abs(ours - _pennylane_matrix(name, params)).max() < TOLERANCE
        assert np.abs(ours - _qiskit_matrix(name, params)).max() < TOLERANCE
        theta = torch.tensor(params, dtype=torch.float64) if params else None
        torch_matrix = op_matrices(name, theta, torch.complex128, torch.device("cpu"))
        assert np.abs(ours - torch_matrix.numpy()).max() < TOLERANCE


CIRCUITS = [(n, embedding, seed) for n in (3, 4, 5) for embedding in ("angle", "zz", None)
            for seed in range(3)]


def _circuit(n: int, embedding: str | None, seed: int) -> Circuit:
    return random_circuit(n, 40, seed=1000 * n + 10 * seed + len(str(embedding)),
                          embedding=embedding, layers=1)


def _inputs(circuit: Circuit, seed: int, batch: int = 2):
    generator = torch.Generator().manual_seed(seed)
    x = None
    if circuit.embedding is not None:
        x = torch.rand(batch, circuit.n_features, generator=generator, dtype=torch.float64) * 3
    weights = (torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) - 0.5) * 6
    return x, weights


def test_the_random_circuits_cover_every_gate():
    used = {gate.name for case in CIRCUITS for gate in _circuit(*case).gates}
    assert used == set(OPERATIONS)


def _qiskit_state(qc, n: int) -> np.ndarray:
    from qiskit.quantum_info import Statevector

    data = np.asarray(Statevector(qc).data)
    return data.reshape([2] * n).transpose(list(reversed(range(n)))).reshape(-1)


@pytest.mark.parametrize(("n_qubits", "embedding", "seed"), CIRCUITS)
def test_random_circuits_over_every_gate_agree_on_all_backends(n_qubits, embedding, seed):
    circuit = _circuit(n_qubits, embedding, seed)
    x, weights = _inputs(circuit, seed)
    ours = TorchSimulator(circuit, dtype=torch.complex128).state(x, weights)
    pennylane = pennylane_backend.make_qnode(circuit, output="state")(x, weights)
    assert (ours - pennylane.reshape(ours.shape)).abs().max().item() < TOLERANCE
    qiskit = torch.as_tensor(qiskit_backend.statevector(circuit, x, weights))
    assert (ours - qiskit).abs().max().item() < TOLERANCE


@pytest.mark.parametrize(("n_qubits", "embedding", "seed"), CIRCUITS[::2])
def test_qasm3_export_read_by_qiskit_gives_the_same_state(n_qubits, embedding, seed):
    pytest.importorskip("qiskit_qasm3_import")
    from qiskit import qasm3

    circuit = _circuit(n_qubits, embedding, seed)
    x, weights = _inputs(circuit, seed, batch=1)
    ours = TorchSimulator(circuit, dtype=torch.complex128).state(x, weights)[0].numpy()
    bound = qasm3.loads(qiskit_backend.to_qasm3(circuit, None if x is None else x[0], weights))
    assert np.abs(_qiskit_state(bound, n_qubits) - ours).max() < TOLERANCE
    # Left free, the inputs and weights are `input float[64]` parameters; bound by name they
    # give the same state.
    free = qasm3.loads(qiskit_backend.to_qasm3(circuit))
    values = {f"w_{i}": float(w) for i, w in enumerate(weights)}
    if x is not None:
        values |= {f"x_{i}": float(v) for i, v in enumerate(x[0])}
    assert {p.name for p in free.parameters} == set(values)
    assigned = free.assign_parameters({p: values[p.name] for p in free.parameters})
    assert np.abs(_qiskit_state(assigned, n_qubits) - ours).max() < TOLERANCE


@pytest.mark.parametrize("seed", range(3))
def test_gradients_through_every_gate_match_pennylane_backprop(seed):
    circuit = random_circuit(4, 30, seed=seed, embedding="angle", layers=1)
    x, weights = _inputs(circuit, seed, batch=3)

    def gradient(run):
        w = weights.clone().requires_grad_(True)
        (run(x, w) * torch.linspace(-1, 1, 4, dtype=torch.float64)).sum().backward()
        return w.grad

    ours = gradient(TorchSimulator(circuit, dtype=torch.complex128))
    theirs = gradient(pennylane_backend.make_qnode(circuit))
    assert ours.abs().max() > 1e-3
    assert (ours - theirs).abs().max().item() < 1e-9


def test_new_gates_differentiate_like_finite_differences():
    gates = (Gate("U3", (0,), params=(Angle("w", 0), Angle("w", 1), Angle("w", 2))),
             Gate("CRY", (0, 1), Angle("w", 3)), Gate("RXX", (1, 2), Angle("w", 4)),
             Gate("Rot", (2,), params=(Angle("w", 5), Angle("x", 0), Angle("w", 6))),
             Gate("RZZ", (0, 2), Angle("w", 7)), Gate("ISWAP", (0, 1)))
    circuit = Circuit(3, Embedding("angle", rotation="RX"), None, gates=gates)
    simulator = TorchSimulator(circuit, dtype=torch.complex128)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, generator=generator, dtype=torch.float64).requires_grad_()
    w = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(simulator, (x, w))


def test_single_precision_runs_the_new_gates():
    circuit = random_circuit(4, 30, seed=5, embedding="angle", layers=1)
    x, weights = _inputs(circuit, 5)
    double = TorchSimulator(circuit, dtype=torch.complex128)(x, weights)
    single = TorchSimulator(circuit, dtype=torch.complex64)(x.float(), weights.float())
    assert (double - single.double()).abs().max().item() < 1e-4


def test_bad_gates_are_refused_with_the_field():
    with pytest.raises(CircuitError, match="gate 'CRW' is unknown; valid gates: .*CRY"):
        Gate("CRW", (0, 1))
    with pytest.raises(CircuitError, match=r"U3 takes 3 parameter\(s\), got 1 \(theta, phi, lam\)"):
        Gate("U3", (0,), Angle("w", 0))
    with pytest.raises(CircuitError, match="Toffoli acts on 3 distinct wire"):
        Gate("Toffoli", (0, 1, 1))
