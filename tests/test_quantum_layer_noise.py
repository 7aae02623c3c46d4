"""Per-layer noise (``Noise(per="layer")``, the ``noise_per`` option).

The channels act after every layer of the circuit on every wire. The reference schedules the
layers with Qiskit's own ``DAGCircuit.layers()`` (each paralab gate one ``UnitaryGate``) and
evolves Qiskit's ``DensityMatrix`` layer by layer with the channels' ``Kraus`` on every qubit
(1e-10, complex128, both simulator paths); PennyLane ``default.mixed`` with the same placement
agrees; an idle wire decays once per layer by the amplitude-damping formula (a no-op, or the
per-gate placement, gives another number).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paralab_quantum.circuit import Angle, Circuit, CircuitError, Gate, random_circuit
from paralab_quantum.density import DensityMatrixSimulator, Noise, kraus, layers

pytestmark = pytest.mark.usefixtures("one_torch_thread")
pytest.importorskip("qiskit")
from paralab_quantum import qiskit_backend  # noqa: E402

NOISES = [Noise(0.05, per="layer"), Noise(0.03, 0.08, 0.05, per="layer")]


def _qiskit_layered(circuit: Circuit, x_row, weights, noise: Noise) -> np.ndarray:
    from qiskit import QuantumCircuit
    from qiskit.circuit.library import UnitaryGate
    from qiskit.converters import circuit_to_dag
    from qiskit.quantum_info import DensityMatrix, Kraus, Operator

    n = circuit.n_qubits
    angles = circuit.angle_terms([float(v) for v in x_row]) if x_row is not None else []
    qc = QuantumCircuit(n)
    for gate in circuit.program():
        values = [angles[a.index] if a.source == "x" else float(weights[a.index])
                  if a.source == "w" else a.value for a in gate.params]
        local = QuantumCircuit(len(gate.wires))
        qiskit_backend.append_gate(local, gate.name, list(range(len(gate.wires))), values)
        qc.append(UnitaryGate(Operator(local)), list(gate.wires))
    channels = [Kraus([np.asarray(k, dtype=complex) for k in kraus(name, strength)])
                for name, strength in noise.channels()]
    rho = DensityMatrix.from_label("0" * n)
    depth = 0
    for layer in circuit_to_dag(qc).layers():
        depth += 1
        for node in layer["graph"].op_nodes():
            rho = rho.evolve(Operator(node.op), qargs=[qc.find_bit(q).index for q in node.qargs])
        for wire in range(n):
            for channel in channels:
                rho = rho.evolve(channel, qargs=[wire])
    assert depth == qc.depth() == len(layers(circuit.program(), n))
    order = list(reversed(range(n)))
    data = np.asarray(rho.data).reshape([2] * (2 * n))
    return data.transpose(order + [n + k for k in order]).reshape(2**n, 2**n)


@pytest.mark.parametrize("n_qubits", [2, 3])
@pytest.mark.parametrize("noise", range(len(NOISES)))
def test_per_layer_density_matrices_match_qiskit_layers(n_qubits, noise):
    noise = NOISES[noise]
    for seed, embedding in enumerate(("angle", None)):
        circuit = random_circuit(n_qubits, 20, seed=900 * n_qubits + seed, embedding=embedding,
                                 layers=1)
        generator = torch.Generator().manual_seed(seed)
        x = (torch.rand(2, circuit.n_features, generator=generator, dtype=torch.float64) * 3
             if circuit.reads_inputs else None)
        weights = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 6 - 3
        per_gate = DensityMatrixSimulator(circuit, Noise(noise.depolarizing,
                                                         noise.amplitude_damping,
                                                         noise.phase_damping))
        for fused in (True, False):
            ours = DensityMatrixSimulator(circuit, noise, fused=fused).density(x, weights)
            for row in range(ours.shape[0]):
                reference = _qiskit_layered(circuit, None if x is None else x[row], weights,
                                            noise)
                assert np.abs(ours[row].numpy() - reference).max() < 1e-10
            assert (ours - per_gate.density(x, weights)).abs().max().item() > 1e-3


def test_per_layer_noise_matches_default_mixed_with_gradients():
    pytest.importorskip("pennylane")
    from paralab_quantum import pennylane_backend

    circuit = random_circuit(3, 15, seed=77, embedding="angle", layers=2)
    noise = Noise(0.04, 0.06, 0.03, per="layer")
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, generator=generator, dtype=torch.float64) * 3

    def run(simulator):
        w = (torch.rand(circuit.n_weights, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64) * 6 - 3).requires_grad_(True)
        out = simulator(x, w)
        out.sum().backward()
        return out.detach(), w.grad

    ours, ours_grad = run(DensityMatrixSimulator(circuit, noise))
    theirs, theirs_grad = run(pennylane_backend.make_qnode(circuit, noise=noise))
    assert (ours - theirs.reshape(ours.shape)).abs().max().item() < 1e-7
    assert (ours_grad - theirs_grad).abs().max().item() < 1e-7


def test_an_idle_wire_decays_once_per_layer():
    gamma, depth = 0.1, 5
    gates = (Gate("X", (0,)), *(Gate("RY", (1,), Angle("const", value=0.3)) for _ in range(depth)))
    circuit = Circuit(2, None, None, gates=gates)
    assert len(layers(circuit.program(), 2)) == depth  # X shares the first layer
    z_layer = DensityMatrixSimulator(circuit, Noise(amplitude_damping=gamma, per="layer"))
    z_gate = DensityMatrixSimulator(circuit, Noise(amplitude_damping=gamma))
    # |1> on wire 0 decays to |0> with probability gamma in each of the 5 layers
    assert abs(z_layer(None, None)[0, 0].item() - (1 - 2 * (1 - gamma) ** depth)) < 1e-12
    assert abs(z_gate(None, None)[0, 0].item() - (1 - 2 * (1 - gamma))) < 1e-12


def test_noise_per_in_the_spec_trains_and_is_checked():
    import paralab
    from paralab import DatasetInfo, SpecError
    from paralab_quantum.models import vqc

    result = paralab.run({
        "dataset": "iris", "output": None, "device": "cpu", "seed": 0,
        "model": {"name": "vqc", "layers": 2, "noise_depolarizing": 0.02, "noise_per": "layer"},
        "protocol": {"name": "supervised", "epochs": 4, "batch_size": 16},
        "method": {"name": "adam", "lr": 0.05},
    })
    assert result.status == "completed"
    info = DatasetInfo("iris", (4,), 3, 4)
    x = torch.rand(5, 4)
    outputs = {}
    for per in ("gate", "layer"):
        torch.manual_seed(0)
        outputs[per] = vqc(info, layers=2, precision="double", noise_depolarizing=0.05,
                           noise_per=per)(x)
    assert (outputs["gate"] - outputs["layer"]).abs().max().item() > 1e-4
    with pytest.raises(SpecError, match="noise_per"):
        paralab.run({"dataset": "iris", "output": None, "device": "cpu",
                     "model": {"name": "vqc", "noise_per": "moment"}})
    with pytest.raises(CircuitError, match="noise_per = 'layer' places"):
        vqc(info, noise_per="layer")
    with pytest.raises(CircuitError, match="noise per 'moment' is unknown"):
        Noise(0.1, per="moment")
