"""Hardware-faithful simulation on qiskit-ibm-runtime's fake backends (local snapshots).

The transpiled circuit uses only the device's basis gates and its two-qubit gates sit on
coupling-map edges; sampled ideally it reproduces the exact expectations (within 5 standard
errors); under the device's noise model a deterministic state's ``<Z>`` moves off +-1 by more
than shot noise (gate and readout errors act) and the ideal run does not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paralab_quantum.circuit import Angle, Ansatz, Circuit, Embedding, Gate

pytestmark = pytest.mark.usefixtures("one_torch_thread")
pytest.importorskip("qiskit_ibm_runtime")
pytest.importorskip("qiskit_aer")
from paralab_quantum.hardware import fake_backend, run_on_fake_backend, transpile_for  # noqa: E402
from paralab_quantum.simulator import TorchSimulator  # noqa: E402


def _case():
    circuit = Circuit(3, Embedding("angle"), Ansatz(1, ("RY", "RZ"), "cnot_ring"),
                      gates=(Gate("CRX", (0, 2), Angle("w", 0)),))
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, generator=generator, dtype=torch.float64) * 2
    weights = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 3
    return circuit, x, weights


def test_transpiled_circuits_fit_the_device():
    circuit, x, weights = _case()
    device = fake_backend("FakeManilaV2")
    basis = set(device.operation_names)
    edges = {tuple(e) for e in device.coupling_map.get_edges()}
    for qc in transpile_for(circuit, x, weights, device):
        for instruction in qc.data:
            name = instruction.operation.name
            assert name in basis | {"barrier", "measure"}, name
            if instruction.operation.num_qubits == 2:
                pair = tuple(qc.find_bit(q).index for q in instruction.qubits)
                assert pair in edges, pair
    assert any(inst.operation.name == "cx" for inst in qc.data)


def test_ideal_sampling_of_the_transpiled_circuit_equals_the_exact_expectations():
    circuit, x, weights = _case()
    exact = TorchSimulator(circuit, dtype=torch.complex128)(x, weights).numpy()
    means, errors = run_on_fake_backend(circuit, x, weights, shots=4000, noise=False)
    assert (np.abs(means - exact) < 5 * np.maximum(errors, 1e-3)).all()


def test_the_device_noise_model_acts():
    circuit = Circuit(3, None, None, gates=(Gate("X", (0,)), Gate("CNOT", (0, 1)),
                                            Gate("CNOT", (1, 2))))
    ideal, _ = run_on_fake_backend(circuit, shots=4000, noise=False)
    noisy, errors = run_on_fake_backend(circuit, shots=4000, seed=1)
    assert np.allclose(ideal, -1.0)
    assert ((noisy + 1) > 5 * np.maximum(errors, 1 / 4000)).any()  # off -1 beyond shot noise
    assert (noisy < -0.6).all()  # yet still the same state (measured -0.92, -0.93, -0.80)
    with pytest.raises(ValueError, match="fake backend 'FakeNowhere' is unknown"):
        fake_backend("FakeNowhere")
