"""The same :class:`~paralab_quantum.circuit.Circuit` in Qiskit: exact statevectors, shots on
Aer's sampler (with an optional depolarizing noise model), and export to a
``QuantumCircuit`` or OpenQASM 3 so a trained model can run on hardware.

Qiskit orders qubits little-endian (qubit 0 is the least significant bit of a basis index);
paralab puts wire 0 first. :func:`statevector` converts, so states compare directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from paralab_quantum.circuit import Circuit
from paralab_quantum.memory import check_statevector
from paralab_quantum.observables import Observable
from paralab_quantum.operations import OPERATIONS


def to_qiskit(circuit: Circuit, x: Sequence[float] | None = None,
              weights: Sequence[float] | None = None, *, measure: bool = False) -> Any:
    """A Qiskit ``QuantumCircuit`` of ``circuit``.

    Inputs and weights left out become ``ParameterVector`` s named ``x`` and ``w`` (so a trained
    model exports with its weights bound and its inputs free). The amplitude embedding needs
    concrete inputs.
    """
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector

    n = circuit.n_qubits
    qc = QuantumCircuit(n, name="paralab")
    # Tensors and arrays are accepted as well as lists (a model's weights come as a tensor).
    if x is not None and (hasattr(x, "detach") or isinstance(x, np.ndarray)):
        x = _flat(x)
    if weights is not None and (hasattr(weights, "detach") or isinstance(weights, np.ndarray)):
        weights = _flat(weights)
    if x is None and circuit.reads_inputs:
        if circuit.amplitude:
            raise ValueError("the amplitude embedding exports only with concrete inputs x")
        x = list(ParameterVector("x", circuit.n_features))
    if weights is None and circuit.n_weights:
        weights = list(ParameterVector("w", circuit.n_weights))
    columns = [float(v) if isinstance(v, (int, float, np.floating)) else v for v in (x or [])]
    if x is not None:
        circuit.check_features(len(columns), "qiskit backend")
    if circuit.amplitude:
        from qiskit.circuit.library import StatePreparation

        vector = np.zeros(2**n)
        vector[: len(columns)] = np.asarray(columns, dtype=float)
        norm = np.linalg.norm(vector)
        if norm == 0:
            raise ValueError("amplitude embedding: the input is all zeros (no state)")
        # paralab's wire 0 is the most significant bit: hand Qiskit the wires reversed.
        qc.append(StatePreparation(vector / norm), list(reversed(range(n))))
    angles = circuit.angle_terms(columns)
    for gate in circuit.program():
        values = []
        for angle in gate.params:
            if angle.source == "x":
                value = angles[angle.index]
            elif angle.source == "w":
                value = weights[angle.index]  # type: ignore[index]
            else:
                value = angle.value
            if isinstance(value, (np.floating, np.integer)):
                value = float(value)
            values.append(value)
        append_gate(qc, gate.name, list(gate.wires), values)
    if measure:
        qc.measure_all()
    return qc


def append_gate(qc: Any, name: str, wires: Sequence[int], values: Sequence[Any]) -> None:
    """Append the record ``name`` to ``qc``: its ``QuantumCircuit`` method, or (a gate Qiskit
    lacks, such as ``Rot``) its decomposition from the operation table."""
    op = OPERATIONS[name]
    if op.qiskit is not None:
        getattr(qc, op.qiskit)(*values, *wires)
        return
    for step in op.decomposition:
        params = [values[p] if isinstance(p, int) else p for p in step.params]
        append_gate(qc, step.name, [wires[w] for w in step.wires], params)


def statevector(circuit: Circuit, x: Any = None, weights: Any = None) -> np.ndarray:
    """Qiskit ``Statevector`` s of every input row, ``(batch, 2**n)``, in paralab's order."""
    from qiskit.quantum_info import Statevector

    check_statevector(circuit.n_qubits, bytes_per_amplitude=16, simulator="qiskit")
    n = circuit.n_qubits
    rows = [None] if x is None else [list(map(float, row)) for row in _rows(x)]
    weights = None if weights is None else [float(w) for w in _flat(weights)]
    states = []
    for row in rows:
        data = np.asarray(Statevector(to_qiskit(circuit, row, weights)).data)
        states.append(data.reshape([2] * n).transpose(list(reversed(range(n)))).reshape(-1))
    return np.stack(states)


def to_sparse_pauli(observable: Observable, n_qubits: int) -> Any:
    """The observable as a Qiskit ``SparsePauliOp`` (labels little-endian: wire 0 last)."""
    from qiskit.quantum_info import SparsePauliOp

    observable.check(n_qubits)
    return SparsePauliOp([t.word(n_qubits)[::-1] for t in observable.terms],
                         [t.coefficient for t in observable.terms])


def expectations(circuit: Circuit, x: Any = None, weights: Any = None, *,
                 variance: bool = False) -> np.ndarray:
    """Exact expectations (or variances) of the circuit's observables (default Z of each
    qubit) from Qiskit ``Statevector`` s, ``(batch, n_observables)``."""
    from qiskit.quantum_info import Statevector

    n = circuit.n_qubits
    operators = [to_sparse_pauli(o, n) for o in circuit.measured]
    rows = [None] if x is None else [list(map(float, row)) for row in _rows(x)]
    weights = None if weights is None else [float(w) for w in _flat(weights)]
    values = np.zeros((len(rows), len(operators)))
    for r, row in enumerate(rows):
        state = Statevector(to_qiskit(circuit, row, weights))
        for k, operator in enumerate(operators):
            mean = float(np.real(state.expectation_value(operator)))
            if variance:
                second = float(np.real(state.expectation_value(operator.dot(operator).simplify())))
                values[r, k] = second - mean**2
            else:
                values[r, k] = mean
    return values


def depolarizing_noise(single: float = 0.01, double: float = 0.02) -> Any:
    """An Aer ``NoiseModel``: a depolarizing channel of strength ``single`` after every one-qubit
    gate and ``double`` after every two-qubit gate (``rho -> (1-p) rho + p I/d``)."""
    from qiskit_aer.noise import NoiseModel, depolarizing_error

    for name, value in (("single", single), ("double", double)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"depolarizing {name} strength must be in [0, 1], got {value}")
    model = NoiseModel()
    if single:
        model.add_all_qubit_quantum_error(
            depolarizing_error(single, 1),
            sorted({OPERATIONS[n].qiskit for n in OPERATIONS  # type: ignore[misc]
                    if OPERATIONS[n].n_wires == 1 and OPERATIONS[n].qiskit} | {"u", "sx"}),
        )
    if double:
        model.add_all_qubit_quantum_error(
            depolarizing_error(double, 2),
            sorted({op.qiskit for op in OPERATIONS.values() if op.n_wires == 2 and op.qiskit}))
    return model


def sample_expvals(circuit: Circuit, x: Any = None, weights: Any = None, *, shots: int = 1024,
                   noise: Any = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pauli-Z expectations estimated from ``shots`` samples on Aer's ``SamplerV2``.

    :param noise: an Aer ``NoiseModel`` (see :func:`depolarizing_noise`) or ``None``.
    :return: ``(means, standard_errors)``, each ``(batch, n_qubits)``; the standard error of
        a +-1 outcome's mean is ``sqrt((1 - m**2) / shots)``.
    """
    from qiskit import transpile
    from qiskit_aer import AerSimulator
    from qiskit_aer.primitives import SamplerV2

    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    n = circuit.n_qubits
    rows = [None] if x is None else [list(map(float, row)) for row in _rows(x)]
    weights = None if weights is None else [float(w) for w in _flat(weights)]
    circuits = [to_qiskit(circuit, row, weights, measure=True) for row in rows]
    options: dict[str, Any] = {"run_options": {"seed": seed}}
    backend = AerSimulator(noise_model=noise, seed_simulator=seed)
    if noise is not None:
        options["backend_options"] = {"noise_model": noise}
    circuits = transpile(circuits, backend, optimization_level=0, seed_transpiler=seed)
    sampler = SamplerV2(default_shots=shots, options=options)
    results = sampler.run(circuits).result()
    means = np.zeros((len(rows), n))
    for row, result in enumerate(results):
        counts = result.data.meas.get_counts()
        for bitstring, count in counts.items():
            # Qiskit prints qubit 0 last.
            signs = np.array([1.0 - 2.0 * int(bitstring[n - 1 - q]) for q in range(n)])
            means[row] += signs * count
    means /= shots
    errors = np.sqrt(np.clip(1.0 - means**2, 0.0, None) / shots)
    return means, errors


def to_qasm3(circuit: Circuit, x: Sequence[float] | None = None,
             weights: Sequence[float] | None = None) -> str:
    """OpenQASM 3 text of the circuit (inputs left out stay ``input float`` parameters).

    Written from the operation table by :func:`paralab_quantum.qasm.to_qasm3`; the amplitude
    embedding (a state preparation, no gate) goes through Qiskit's decomposition instead.
    Lists, arrays and tensors are all accepted."""
    if x is not None and (hasattr(x, "detach") or isinstance(x, np.ndarray)):
        x = _flat(x)
    if weights is not None and (hasattr(weights, "detach") or isinstance(weights, np.ndarray)):
        weights = _flat(weights)
    if not circuit.amplitude:
        from paralab_quantum.qasm import to_qasm3 as export

        return export(circuit, x, weights)
    from qiskit import qasm3, transpile

    qc = to_qiskit(circuit, x, weights)
    qc = transpile(qc, basis_gates=["u", "cx"], optimization_level=0)
    return qasm3.dumps(qc)


def _rows(x: Any) -> list[Any]:
    array = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    return list(array.reshape(array.shape[0], -1))


def _flat(values: Any) -> list[float]:
    array = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    return [float(v) for v in array.reshape(-1)]


__all__ = [
    "append_gate",
    "depolarizing_noise",
    "expectations",
    "sample_expvals",
    "statevector",
    "to_qasm3",
    "to_qiskit",
    "to_sparse_pauli",
]
