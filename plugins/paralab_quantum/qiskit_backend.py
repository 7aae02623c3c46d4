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

_METHODS = {
    "H": "h", "X": "x", "Y": "y", "Z": "z", "S": "s", "T": "t",
    "RX": "rx", "RY": "ry", "RZ": "rz", "P": "p",
    "CNOT": "cx", "CZ": "cz", "SWAP": "swap", "CRZ": "crz",
}


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
    if x is None and circuit.embedding is not None:
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
        method = getattr(qc, _METHODS[gate.name])
        if gate.angle is None:
            method(*gate.wires)
            continue
        source = gate.angle.source
        if source == "x":
            value = angles[gate.angle.index]
        elif source == "w":
            value = weights[gate.angle.index]  # type: ignore[index]
        else:
            value = gate.angle.value
        if isinstance(value, (np.floating, np.integer)):
            value = float(value)
        method(value, *gate.wires)
    if measure:
        qc.measure_all()
    return qc


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
            ["h", "x", "y", "z", "s", "t", "rx", "ry", "rz", "p", "u", "sx"],
        )
    if double:
        model.add_all_qubit_quantum_error(depolarizing_error(double, 2), ["cx", "cz", "swap", "crz"])
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
    """OpenQASM 3 text of the circuit (inputs left out stay ``input float`` parameters)."""
    from qiskit import qasm3, transpile

    qc = to_qiskit(circuit, x, weights)
    if circuit.amplitude:  # a state preparation is no OpenQASM gate: decompose it
        qc = transpile(qc, basis_gates=["u", "cx"], optimization_level=0)
    return qasm3.dumps(qc)


def _rows(x: Any) -> list[Any]:
    array = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    return list(array.reshape(array.shape[0], -1))


def _flat(values: Any) -> list[float]:
    array = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    return [float(v) for v in array.reshape(-1)]


__all__ = [
    "depolarizing_noise",
    "sample_expvals",
    "statevector",
    "to_qasm3",
    "to_qiskit",
]
