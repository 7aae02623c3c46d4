"""Noisy density matrices equal qiskit-aer's ``AerSimulator(method="density_matrix")``.

Aer computes the reference here: each paralab gate becomes one ``UnitaryGate`` (Qiskit's own
matrix of the gate, through ``qiskit_backend.append_gate``) labelled by its arity, and a
``NoiseModel`` puts Qiskit's named errors after every such instruction on each of its qubits:
``depolarizing_error(4p/3)`` (Qiskit's parameter is the weight of the fully mixed state,
PennyLane's ``p`` that of the three Paulis), ``amplitude_damping_error``,
``phase_damping_error``, composed in paralab's order. Random noisy circuits over every gate,
both simulator paths, 1e-10 in complex128.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paralab_quantum.circuit import Circuit, random_circuit
from paralab_quantum.density import DensityMatrixSimulator, Noise

pytestmark = pytest.mark.usefixtures("one_torch_thread")
pytest.importorskip("qiskit_aer")
from paralab_quantum import qiskit_backend  # noqa: E402

NOISES = [Noise(0.05), Noise(0, 0.1), Noise(0, 0, 0.2), Noise(0.03, 0.08, 0.05)]


def _aer_noise_model(noise: Noise, arities: set[int]):
    from qiskit_aer.noise import (
        NoiseModel,
        amplitude_damping_error,
        depolarizing_error,
        phase_damping_error,
    )

    made = {"depolarizing": lambda p: depolarizing_error(4 * p / 3, 1),
            "amplitude_damping": amplitude_damping_error,
            "phase_damping": phase_damping_error}
    error = None
    for name, strength in noise.channels():
        step = made[name](strength)
        error = step if error is None else error.compose(step)  # ``step`` acts after
    model = NoiseModel()
    for k in sorted(arities):
        wide = error
        for _ in range(k - 1):
            wide = wide.tensor(error)
        model.add_all_qubit_quantum_error(wide, [f"gate{k}"])
    return model


def _aer_density(circuit: Circuit, x_row, weights, noise: Noise) -> np.ndarray:
    """Aer's noisy density matrix, in paralab's (big-endian) index order."""
    from qiskit import QuantumCircuit
    from qiskit.circuit.library import UnitaryGate
    from qiskit.quantum_info import Operator
    from qiskit_aer import AerSimulator

    n = circuit.n_qubits
    angles = circuit.angle_terms([float(v) for v in x_row]) if x_row is not None else []
    qc = QuantumCircuit(n)
    arities = set()
    for gate in circuit.program():
        values = [angles[a.index] if a.source == "x" else float(weights[a.index])
                  if a.source == "w" else a.value for a in gate.params]
        local = QuantumCircuit(len(gate.wires))
        qiskit_backend.append_gate(local, gate.name, list(range(len(gate.wires))), values)
        k = len(gate.wires)
        arities.add(k)
        qc.append(UnitaryGate(Operator(local), label=f"gate{k}"), list(gate.wires))
    qc.save_density_matrix()
    simulator = AerSimulator(method="density_matrix",
                             noise_model=_aer_noise_model(noise, arities))
    rho = np.asarray(simulator.run(qc).result().data()["density_matrix"])
    order = list(reversed(range(n)))
    data = rho.reshape([2] * (2 * n))
    return data.transpose(order + [n + k for k in order]).reshape(2**n, 2**n)


@pytest.mark.parametrize("n_qubits", [1, 2, 3])
@pytest.mark.parametrize("noise", range(len(NOISES)))
def test_noisy_density_matrices_match_aer_density_matrix(n_qubits, noise):
    noise = NOISES[noise]
    for seed, embedding in enumerate(("angle", "zz", None)):
        circuit = random_circuit(n_qubits, 25, seed=500 * n_qubits + seed, embedding=embedding,
                                 layers=1)
        generator = torch.Generator().manual_seed(seed)
        x = (torch.rand(2, circuit.n_features, generator=generator, dtype=torch.float64) * 3
             if circuit.reads_inputs else None)
        weights = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 6 - 3
        for fused in (True, False):
            ours = DensityMatrixSimulator(circuit, noise, fused=fused).density(x, weights)
            purity = torch.einsum("bij,bji->b", ours, ours).real
            assert purity.max().item() < 1 - 1e-3  # the noise acted
            for row in range(ours.shape[0]):
                reference = _aer_density(circuit, None if x is None else x[row], weights, noise)
                assert np.abs(ours[row].numpy() - reference).max() < 1e-10
