"""One circuit, three backends: the torch simulator against PennyLane and Qiskit.

Random circuits of 1 to 10 qubits (every embedding, every ansatz shape, random extra gates):
states and expectations agree with PennyLane ``default.qubit`` within 1e-6 and gradients
within 1e-5; states agree with Qiskit's ``Statevector``; Aer's shot estimates agree with the
exact expectations within their standard error, and the depolarizing model shrinks them as the
channel's formula says.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from paralab_quantum.circuit import Ansatz, Circuit, Embedding, Gate, random_circuit
from paralab_quantum.simulator import TorchSimulator

pennylane_backend = pytest.importorskip("paralab_quantum.pennylane_backend")
pytest.importorskip("pennylane")
pytest.importorskip("qiskit_aer")
from paralab_quantum import qiskit_backend  # noqa: E402

EMBEDDINGS = ("angle", "zz", "amplitude", None)
CASES = [(n, embedding) for n in range(1, 7) for embedding in EMBEDDINGS] + [
    (7, "angle"), (7, "amplitude"), (8, "zz"), (8, None),
    (9, "angle"), (9, "amplitude"), (10, "zz"), (10, None),
]  # every embedding at every size to 6 qubits, each twice among 7..10 (keeps the test fast)


def _inputs(circuit: Circuit, batch: int, seed: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = None
    if circuit.embedding is not None:
        x = torch.rand(batch, circuit.n_features, generator=generator, dtype=torch.float64) * 3
    weights = (torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) - 0.5) * 6
    return x, weights


@pytest.mark.parametrize(("n_qubits", "embedding"), CASES)
def test_states_and_expectations_match_pennylane_and_qiskit(n_qubits, embedding):
    depth = 4 if n_qubits > 6 else 10
    circuit = random_circuit(n_qubits, depth, seed=17 * n_qubits + len(str(embedding)),
                             embedding=embedding, layers=2)
    x, weights = _inputs(circuit, batch=3, seed=n_qubits)
    simulator = TorchSimulator(circuit, dtype=torch.complex128)
    ours = simulator.state(x, weights)
    assert torch.allclose(ours.abs().square().sum(1), torch.ones(ours.shape[0], dtype=torch.float64))

    theirs = pennylane_backend.make_qnode(circuit, output="state")(x, weights)
    theirs = theirs.reshape(ours.shape)
    assert (ours - theirs).abs().max().item() < 1e-6

    expectations = simulator.measure(ours)
    pennylane_expectations = pennylane_backend.make_qnode(circuit)(x, weights).reshape(
        expectations.shape
    )
    assert (expectations - pennylane_expectations).abs().max().item() < 1e-6

    if n_qubits <= 6:  # Qiskit's Statevector is one circuit per row: keep the test fast
        qiskit_states = torch.as_tensor(qiskit_backend.statevector(circuit, x, weights))
        assert (ours - qiskit_states).abs().max().item() < 1e-6


@pytest.mark.parametrize("n_qubits", [1, 2, 3, 5, 7, 10])
def test_gradients_match_pennylane_backprop(n_qubits):
    extra = random_circuit(n_qubits, 6, seed=n_qubits, embedding=None).gates
    circuit = Circuit(n_qubits, Embedding("angle", rotation="RY"),
                      Ansatz(2, ("RY", "RZ"), "cnot_ring"), gates=extra)
    x, weights = _inputs(circuit, batch=4, seed=100 + n_qubits)
    target = torch.linspace(-1, 1, n_qubits, dtype=torch.float64)

    def gradient(run) -> torch.Tensor:
        w = weights.clone().requires_grad_(True)
        loss = ((run(x, w) - target) ** 2).sum()
        loss.backward()
        return w.grad

    ours = gradient(TorchSimulator(circuit, dtype=torch.complex128))
    theirs = gradient(pennylane_backend.make_qnode(circuit))
    assert ours.abs().max() > 1e-3  # a real gradient, not zeros on both sides
    assert (ours - theirs).abs().max().item() < 1e-5


def test_gradients_match_lightning_adjoint():
    circuit = Circuit(4, Embedding("angle"), Ansatz(2, ("RY", "RZ"), "cnot_ring"))
    x, weights = _inputs(circuit, batch=3, seed=5)

    def gradient(run) -> torch.Tensor:
        w = weights.clone().requires_grad_(True)
        run(x, w)[:, 0].sum().backward()
        return w.grad

    ours = gradient(TorchSimulator(circuit, dtype=torch.complex128))
    theirs = gradient(pennylane_backend.make_qnode(circuit, "lightning"))
    assert (ours - theirs).abs().max().item() < 1e-5


def test_single_precision_simulator_is_close_to_double():
    circuit = random_circuit(6, 10, seed=3, embedding="zz", layers=3)
    x, weights = _inputs(circuit, batch=8, seed=3)
    double = TorchSimulator(circuit, dtype=torch.complex128)(x, weights)
    single = TorchSimulator(circuit, dtype=torch.complex64)(x.float(), weights.float())
    assert single.dtype == torch.float32
    assert (double - single.double()).abs().max().item() < 1e-4


def test_probabilities_sum_to_one_and_match_pennylane():
    circuit = Circuit(3, Embedding("angle"), Ansatz(1), measurement="probs")
    x, weights = _inputs(circuit, batch=5, seed=1)
    ours = TorchSimulator(circuit, dtype=torch.complex128)(x, weights)
    theirs = pennylane_backend.make_qnode(circuit)(x, weights)
    assert ours.shape == (5, 8)
    assert torch.allclose(ours.sum(1), torch.ones(5, dtype=torch.float64))
    assert (ours - theirs).abs().max().item() < 1e-6


def test_shot_estimates_agree_with_exact_expectations_within_standard_error():
    circuit = Circuit(3, Embedding("angle"), Ansatz(2, ("RY", "RZ"), "cnot_ring"))
    x, weights = _inputs(circuit, batch=4, seed=11)
    exact = TorchSimulator(circuit, dtype=torch.complex128)(x, weights).numpy()
    means, errors = qiskit_backend.sample_expvals(circuit, x, weights, shots=4000, seed=7)
    z = (means - exact) / np.maximum(errors, 1e-12)
    assert np.abs(z).max() < 4.0  # every estimate within 4 standard errors
    assert math.sqrt(float(np.mean(z**2))) < 1.6  # and the errors are on the scale they claim
    few, few_errors = qiskit_backend.sample_expvals(circuit, x, weights, shots=100, seed=7)
    assert few_errors.mean() > 4 * errors.mean()  # 40x the shots: about 1/sqrt(40) the error


def test_depolarizing_noise_shrinks_expectation_as_the_channel_says():
    theta, strength, shots = 0.4, 0.2, 8000
    circuit = Circuit(1, None, None, gates=(Gate("RY", (0,), _const(theta)),))
    noise = qiskit_backend.depolarizing_noise(single=strength, double=0.0)
    means, errors = qiskit_backend.sample_expvals(circuit, shots=shots, noise=noise, seed=3)
    expected = (1 - strength) * math.cos(theta)  # rho -> (1-p) rho + p I/2
    assert abs(means[0, 0] - expected) < 4 * errors[0, 0]
    assert abs(means[0, 0] - math.cos(theta)) > 10 * errors[0, 0]


def test_bad_noise_strength_is_refused():
    with pytest.raises(ValueError, match="single strength must be in"):
        qiskit_backend.depolarizing_noise(single=1.5)


def _const(value: float):
    from paralab_quantum.circuit import Angle

    return Angle("const", value=value)


@pytest.mark.parametrize("entangler", ["cnot_ring", "cnot_chain", "cz_ring", "none"])
@pytest.mark.parametrize("n_qubits", [5, 8])  # the whole-unitary path and the block path
def test_every_entangler_matches_pennylane_on_both_ansatz_paths(n_qubits, entangler):
    circuit = Circuit(n_qubits, Embedding("angle", rotation="RX"),
                      Ansatz(3, ("RZ", "RX", "RY"), entangler))
    x, weights = _inputs(circuit, batch=3, seed=n_qubits)
    ours = TorchSimulator(circuit, dtype=torch.complex128).state(x, weights)
    theirs = pennylane_backend.make_qnode(circuit, output="state")(x, weights).reshape(ours.shape)
    assert (ours - theirs).abs().max().item() < 1e-6


@pytest.mark.parametrize("rotations", [("RZ",), ("RY", "RZ")])
@pytest.mark.parametrize("entangler", ["cnot_ring", "cz_ring"])
def test_gradients_and_second_derivatives_match_finite_differences(rotations, entangler) -> None:
    """The Kronecker products are one gather and a product over wires: its gradient must hold
    where factors are exactly zero (RZ-only layers), and second derivatives (MAML through a
    quantum model) too."""
    circuit = Circuit(3, Embedding("angle", rotation="RX"), Ansatz(2, rotations, entangler))
    simulator = TorchSimulator(circuit, dtype=torch.complex128)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, generator=generator, dtype=torch.float64).requires_grad_()
    w = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(simulator, (x, w))
    assert torch.autograd.gradgradcheck(simulator, (x, w))


@pytest.mark.parametrize("embedding", ["angle", "zz"])
def test_fewer_features_than_qubits_count_as_zero_on_every_backend(embedding):
    # 3 features on 5 qubits: the missing two are 0, exactly as if given as zero columns.
    circuit = random_circuit(5, 4, seed=3, embedding=embedding, layers=1)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, generator=generator, dtype=torch.float64)
    padded = torch.cat([x, torch.zeros(4, 2, dtype=torch.float64)], 1)
    weights = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64)
    simulator = TorchSimulator(circuit, dtype=torch.complex128)
    ours = simulator.state(x, weights)
    assert (ours - simulator.state(padded, weights)).abs().max().item() < 1e-12
    theirs = pennylane_backend.make_qnode(circuit, output="state")(x, weights).reshape(ours.shape)
    assert (ours - theirs).abs().max().item() < 1e-6


def test_qasm_export_takes_weights_as_a_tensor():
    circuit = random_circuit(3, 4, seed=1, embedding="angle", layers=1)
    weights = torch.rand(circuit.n_weights, dtype=torch.float64)
    assert qiskit_backend.to_qasm3(circuit, weights=weights) == qiskit_backend.to_qasm3(
        circuit, weights=weights.tolist())
    text = qiskit_backend.to_qasm3(circuit, x=torch.tensor([0.1, 0.2, 0.3]), weights=weights)
    assert "input float" not in text, "concrete inputs are bound"
