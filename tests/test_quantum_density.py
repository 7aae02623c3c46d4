"""The density-matrix simulator under depolarizing, amplitude- and phase-damping noise.

Random noisy circuits over every gate: density matrices equal Qiskit's ``DensityMatrix``
evolved gate by gate with the same Kraus channels (1e-10, complex128) and PennyLane
``default.mixed`` (1e-7: default.mixed computes diagonal gates with torch parameters, RZ, RZZ,
CRZ, CP, in lower precision: 7.5e-9 from its own ``default.qubit`` without any noise);
Hamiltonian expectations and variances and their gradients equal default.mixed's; without noise
the density matrix is ``|psi><psi|`` of the statevector simulator; a depolarizing channel
shrinks ``<Z>`` by its formula.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from paralab_quantum.circuit import Angle, Circuit, CircuitError, Embedding, Gate, random_circuit
from paralab_quantum.density import DensityMatrixSimulator, Noise, kraus
from paralab_quantum.simulator import TorchSimulator

pytestmark = pytest.mark.usefixtures("one_torch_thread")
pytest.importorskip("qiskit")
pytest.importorskip("pennylane")
from paralab_quantum import pennylane_backend, qiskit_backend  # noqa: E402

NOISES = [Noise(0.05), Noise(0, 0.1), Noise(0, 0, 0.2), Noise(0.03, 0.08, 0.05)]
CASES = [(n, noise, seed) for n in (2, 3) for noise in range(len(NOISES)) for seed in range(2)]


def _case(n_qubits, seed, embedding="angle"):
    circuit = random_circuit(n_qubits, 25, seed=300 * n_qubits + seed, embedding=embedding,
                             layers=1)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(2, circuit.n_features, generator=generator, dtype=torch.float64) * 3
    weights = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 6 - 3
    return circuit, x, weights


def _qiskit_density(circuit: Circuit, x_row, weights, noise: Noise) -> np.ndarray:
    """Qiskit's ``DensityMatrix``, evolved by each gate's ``Operator`` and each channel's
    ``Kraus`` in paralab's order; returned in paralab's (big-endian) index order."""
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import DensityMatrix, Kraus, Operator

    n = circuit.n_qubits
    angles = circuit.angle_terms([float(v) for v in x_row])
    rho = DensityMatrix.from_label("0" * n)
    channels = [Kraus([np.asarray(k, dtype=complex) for k in kraus(name, strength)])
                for name, strength in noise.channels()]
    for gate in circuit.program():
        values = [angles[a.index] if a.source == "x" else float(weights[a.index])
                  if a.source == "w" else a.value for a in gate.params]
        qc = QuantumCircuit(n)
        qiskit_backend.append_gate(qc, gate.name, list(gate.wires), values)
        rho = rho.evolve(Operator(qc))
        for wire in gate.wires:
            for channel in channels:
                rho = rho.evolve(channel, qargs=[wire])
    order = list(reversed(range(n)))
    data = np.asarray(rho.data).reshape([2] * (2 * n))
    return data.transpose(order + [n + k for k in order]).reshape(2**n, 2**n)


@pytest.mark.parametrize(("n_qubits", "noise", "seed"), CASES)
def test_noisy_density_matrices_match_qiskit_and_default_mixed(n_qubits, noise, seed):
    noise = NOISES[noise]
    circuit, x, weights = _case(n_qubits, seed)
    ours = DensityMatrixSimulator(circuit, noise).density(x, weights)
    assert ours.shape == (2, 2**n_qubits, 2**n_qubits)
    trace = ours.diagonal(dim1=-2, dim2=-1).sum(-1)
    assert (trace - 1).abs().max().item() < 1e-12
    assert (ours - ours.mH).abs().max().item() < 1e-12
    assert torch.linalg.eigvalsh(ours).min().item() > -1e-12
    purity = torch.einsum("bij,bji->b", ours, ours).real
    assert purity.max().item() < 1 - 1e-3  # the noise acted: a mixed state
    for row in range(2):
        reference = _qiskit_density(circuit, x[row], weights, noise)
        assert np.abs(ours[row].numpy() - reference).max() < 1e-10
    mixed = pennylane_backend.make_qnode(circuit, output="state", noise=noise)(x, weights)
    assert (ours - mixed.reshape(ours.shape)).abs().max().item() < 1e-7


def test_without_noise_the_density_matrix_is_the_pure_state():
    for embedding in ("angle", "zz", "amplitude"):
        circuit, x, weights = _case(3, 1, embedding)
        rho = DensityMatrixSimulator(circuit).density(x, weights)
        psi = TorchSimulator(circuit, dtype=torch.complex128).state(x, weights)
        assert (rho - psi[:, :, None] * psi.conj()[:, None, :]).abs().max().item() < 1e-12


@pytest.mark.parametrize("measurement", ["expval", "var"])
def test_noisy_hamiltonian_measurements_and_gradients_match_default_mixed(measurement):
    base, x, weights = _case(3, 0)
    circuit = dataclasses.replace(base, observables=("0.5*X0 Z1 + Y2", "Z0 Z2 - 0.3*X1"),
                                  measurement=measurement)
    noise = Noise(0.04, 0.06, 0.03)

    def run_and_grad(run):
        w = weights.clone().requires_grad_(True)
        out = run(x, w)
        out.sum().backward()
        return out.detach(), w.grad

    ours, ours_grad = run_and_grad(DensityMatrixSimulator(circuit, noise))
    theirs, theirs_grad = run_and_grad(pennylane_backend.make_qnode(circuit, noise=noise))
    assert (ours - theirs.reshape(ours.shape)).abs().max().item() < 1e-7
    assert ours_grad.abs().max() > 1e-3
    assert (ours_grad - theirs_grad).abs().max().item() < 1e-7
    clean = DensityMatrixSimulator(circuit)(x, weights)
    assert (clean - ours).abs().max().item() > 1e-3  # noise changes what is measured


def test_depolarizing_shrinks_z_by_its_formula():
    theta, p = 0.4, 0.15
    circuit = Circuit(1, None, None, gates=(Gate("RY", (0,), Angle("const", value=theta)),))
    z = DensityMatrixSimulator(circuit, Noise(depolarizing=p))(None, None)
    # K = sqrt(1-p) I, sqrt(p/3) X, Y, Z: rho -> (1 - 4p/3) rho + (4p/3) I/2
    assert abs(z.item() - (1 - 4 * p / 3) * math.cos(theta)) < 1e-14
    damped = DensityMatrixSimulator(
        Circuit(1, None, None, gates=(Gate("X", (0,)),)), Noise(amplitude_damping=0.3))
    assert abs(damped(None, None).item() - (2 * 0.3 - 1)) < 1e-14  # |1> decays to |0> w.p. 0.3


def test_a_noisy_model_trains_on_noisy_expectations():
    circuit = Circuit(2, Embedding("angle"), observables=("Z0", "Z1"))
    simulator = DensityMatrixSimulator(circuit, Noise(0.02, 0.02, 0.02))
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(16, 2, generator=generator, dtype=torch.float64) * 3
    target = torch.cos(x[:, :1]) * torch.ones(16, 2, dtype=torch.float64) * 0.5
    weights = torch.zeros(circuit.n_weights, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([weights], lr=0.1)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = ((simulator(x, weights) - target) ** 2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_bad_noise_strengths_are_refused():
    with pytest.raises(CircuitError, match="noise depolarizing must be a number in \\[0, 1\\]"):
        Noise(depolarizing=1.5)
    with pytest.raises(CircuitError, match="phase_damping"):
        Noise(phase_damping=-0.1)


def test_a_noisy_vqc_trains_through_the_spec_and_matches_default_mixed():
    import paralab
    from paralab import DatasetInfo
    from paralab_quantum.models import vqc

    result = paralab.run({
        "dataset": "iris", "output": None, "device": "cpu", "seed": 0,
        "model": {"name": "vqc", "layers": 2, "noise_depolarizing": 0.02,
                  "noise_amplitude_damping": 0.01},
        "protocol": {"name": "supervised", "epochs": 6, "batch_size": 16},
        "method": {"name": "adam", "lr": 0.05},
    })
    assert result.status == "completed"
    losses = [phase["metrics"]["train/loss"] for phase in result.phases]
    assert losses[-1] < 0.8 * losses[0]

    info = DatasetInfo("iris", (4,), 3, 4)
    options = {"layers": 2, "noise_depolarizing": 0.05, "noise_phase_damping": 0.05}
    x = torch.rand(5, 4)  # the head is float32: the quantum layer returns x's dtype
    logits = {}
    for backend, precision in (("torch", "double"), ("pennylane", "double")):
        torch.manual_seed(0)
        logits[backend] = vqc(info, backend=backend, precision=precision, **options)(x)
    torch.manual_seed(0)
    clean = vqc(info, layers=2, precision="double")(x)
    assert (logits["torch"] - logits["pennylane"]).abs().max().item() < 1e-5
    assert (logits["torch"] - clean).abs().max().item() > 1e-3


def test_bad_noise_options_are_refused_before_training(tmp_path):
    import paralab
    from paralab import DatasetInfo, SpecError
    from paralab_quantum.models import vqc

    with pytest.raises(SpecError, match="model.noise_depolarizing = 1.5: must be <= 1"):
        paralab.run({"dataset": "iris", "output": str(tmp_path), "device": "cpu",
                     "model": {"name": "vqc", "noise_depolarizing": 1.5}})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="not 'lightning'"):
        vqc(DatasetInfo("iris", (4,), 3, 4), backend="lightning", noise_phase_damping=0.1)
