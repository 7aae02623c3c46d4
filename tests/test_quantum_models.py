"""The quantum plugin through paralab.run: models train, the kernel protocol fits, bad input is
refused before training with a message that names what to change."""

from __future__ import annotations

import pytest
import torch

import paralab
from paralab.data.shared import DatasetInfo
from paralab.spec import SpecError
from paralab_quantum.circuit import Ansatz, Circuit, CircuitError, Embedding, Gate
from paralab_quantum.memory import QubitMemoryError, check_statevector
from paralab_quantum.models import HybridNetwork, hybrid, vqc

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


def _run(**spec):
    spec.setdefault("output", None)
    spec.setdefault("device", "cpu")
    return paralab.run(spec)


def test_vqc_learns_iris_through_paralab_run():
    result = _run(dataset="iris", model={"name": "vqc", "layers": 3},
                  protocol={"name": "supervised", "epochs": 15, "batch_size": 16},
                  method={"name": "adam", "lr": 0.05})
    assert result.status == "completed"
    assert result.metrics["test/accuracy"] >= 0.85
    losses = [phase["metrics"]["train/loss"] for phase in result.phases]
    assert losses[-1] < 0.6 * losses[0]


def test_hybrid_learns_wine_with_more_features_than_qubits():
    result = _run(dataset="wine", model={"name": "hybrid", "n_qubits": 3, "hidden": [8]},
                  protocol={"name": "supervised", "epochs": 15, "batch_size": 16},
                  method={"name": "adam", "lr": 0.03})
    assert result.metrics["test/accuracy"] >= 0.85


def test_amplitude_vqc_on_digits_uses_six_qubits():
    info = DatasetInfo("digits", (64,), 10, 64)
    model = vqc(info, embedding="amplitude", layers=1)
    assert model.quantum.circuit.n_qubits == 6
    logits = model(torch.rand(5, 64))
    assert logits.shape == (5, 10)


def test_pennylane_backends_give_the_torch_backends_logits():
    info = DatasetInfo("iris", (4,), 3, 4)
    x = torch.rand(6, 4)
    models = {}
    for backend in ("torch", "pennylane", "lightning"):
        torch.manual_seed(0)
        models[backend] = vqc(info, layers=2, backend=backend, precision="double")
    reference = models["torch"](x)
    for backend in ("pennylane", "lightning"):
        assert torch.allclose(models[backend](x), reference, atol=1e-5)
    loss = models["lightning"](x).sum()
    loss.backward()
    assert models["lightning"].quantum.weights.grad.abs().max() > 0


def test_trained_vqc_exports_to_qiskit_and_openqasm3():
    from qiskit.quantum_info import Statevector

    info = DatasetInfo("iris", (4,), 3, 4)
    model = vqc(info, layers=1, precision="double")
    x = torch.rand(1, 4, dtype=torch.float64)
    bound = model.quantum.to_qiskit(x[0].tolist())
    state = torch.as_tensor(Statevector(bound).data).reshape(2, 2, 2, 2).permute(3, 2, 1, 0)
    ours = model.quantum._run.state(x, model.quantum.weights.detach())
    assert (ours.reshape(-1) - state.reshape(-1)).abs().max() < 1e-6
    qasm = model.quantum.to_qasm3()
    assert qasm.startswith("OPENQASM 3")
    assert "input float[64] x" in qasm or "input float" in qasm  # inputs stay free
    assert qasm.count("cx ") == 4  # the CNOT ring of one layer on 4 qubits


def test_kernel_protocol_qsvc_separates_ad_hoc_where_rbf_does_not():
    quantum = _run(dataset="ad_hoc", model="linear", protocol="kernel", method="qsvc")
    classical = _run(dataset="ad_hoc", model="linear", protocol="kernel", method="svc")
    assert quantum.metrics["test/accuracy"] == 1.0
    assert classical.metrics["test/accuracy"] <= 0.8
    assert len(quantum.phases) == 1 and quantum.phases[0]["kind"] == "fit"


def test_fidelity_kernel_matches_qiskit_machine_learning():
    import numpy as np
    from qiskit.circuit.library import zz_feature_map
    from qiskit_machine_learning.kernels import FidelityStatevectorKernel

    from paralab_quantum.kernel import FidelityKernel

    x = np.random.default_rng(0).uniform(0, 2 * np.pi, (25, 3))
    y = np.random.default_rng(1).uniform(0, 2 * np.pi, (7, 3))
    reference = FidelityStatevectorKernel(feature_map=zz_feature_map(3, reps=2))
    kernel = FidelityKernel("zz", reps=2)
    assert np.abs(kernel(torch.as_tensor(x)).numpy() - reference.evaluate(x)).max() < 1e-6
    cross = kernel(torch.as_tensor(y), torch.as_tensor(x)).numpy()
    assert np.abs(cross - reference.evaluate(y, x)).max() < 1e-6
    assert np.allclose(np.diag(kernel(torch.as_tensor(x)).numpy()), 1.0)


# ------------------------------------------------------------------------------- bad input


def test_more_features_than_the_embedding_takes_is_refused_before_training():
    with pytest.raises(SpecError, match=r"model: model 'vqc' \(paralab_quantum\): .*13 input features .* takes at most 4; use n_qubits >= 13"):
        _run(dataset="wine", model={"name": "vqc", "n_qubits": 4},
             protocol={"name": "supervised", "epochs": 50})


def test_a_qubit_count_beyond_memory_is_refused_before_allocating():
    info = DatasetInfo("wide", (40,), 2, 40)
    with pytest.raises(QubitMemoryError, match=r"n_qubits=40: torch simulator: 40 qubits .* needs 8\.0 TiB"):
        vqc(info, n_qubits=40)
    with pytest.raises(QubitMemoryError, match="batch 64 needs"):
        check_statevector(20, batch=64, limit_bytes=2**20)
    model = vqc(DatasetInfo("small", (10,), 2, 10), memory_limit_gb=0.001)  # 1 MiB
    with pytest.raises(QubitMemoryError, match="at most"):
        model(torch.rand(512, 10))  # 512 x 2**10 x 8 bytes x 2 copies > 1 MiB


def test_unknown_gate_backend_embedding_and_measurement_are_named():
    with pytest.raises(CircuitError, match="gate 'FOO' is unknown; valid gates: H, X"):
        Gate("FOO", (0,))
    with pytest.raises(CircuitError, match="acts on 2 distinct wire"):
        Gate("CNOT", (1, 1))
    with pytest.raises(CircuitError, match="wires 0..1"):
        Circuit(2, gates=(Gate("H", (3,)),))
    with pytest.raises(CircuitError, match="embedding 'fourier' is unknown; valid: angle, amplitude, zz"):
        Embedding("fourier")
    with pytest.raises(CircuitError, match="entangler 'all' is unknown"):
        Ansatz(1, entangler="all")
    with pytest.raises(ValueError, match="backend 'cirq' is unknown; valid: torch, pennylane, lightning"):
        vqc(DatasetInfo("iris", (4,), 3, 4), backend="cirq")
    with pytest.raises(SpecError, match="model: .*measurement 'counts' is unknown"):
        _run(dataset="iris", model={"name": "vqc", "measurement": "counts"})


def test_direct_readout_needs_an_output_per_class():
    with pytest.raises(ValueError, match="readout 'direct' needs an output per class"):
        hybrid(DatasetInfo("digits", (64,), 10, 64), n_qubits=3)  # linear head: fine
        vqc(DatasetInfo("iris", (2,), 3, 2), readout="direct")


def test_evaluating_first_under_inference_mode_does_not_break_training_afterwards():
    for n_qubits in (3, 8):  # the whole-unitary and the block paths cache different constants
        model = vqc(DatasetInfo("t", (n_qubits,), 2, n_qubits), entangler="cz_ring")
        x = torch.rand(4, n_qubits)
        with torch.inference_mode():
            expected = model(x)
        logits = model(x)
        logits.sum().backward()
        assert torch.allclose(logits.detach(), expected)
        assert model.quantum.weights.grad.abs().max() > 0


def test_models_train_under_vmap_as_federated_clients_do():
    from torch.func import functional_call, grad, vmap

    for model in (vqc(DatasetInfo("t", (4,), 3, 4), embedding="amplitude"),
                  vqc(DatasetInfo("t", (8,), 3, 8), entangler="cz_ring"),
                  hybrid(DatasetInfo("t", (5,), 3, 5))):
        n = 5 if isinstance(model, HybridNetwork) else model.quantum.circuit.n_features
        params = {k: v.detach() for k, v in model.named_parameters()}
        stacked = {k: torch.stack([v, v + 0.1]) for k, v in params.items()}  # two "clients"
        x, y = torch.rand(2, 6, n) + 0.1, torch.randint(0, 3, (2, 6))

        def loss(p, xb, yb, model=model):
            return torch.nn.functional.cross_entropy(functional_call(model, p, (xb,)), yb)

        batched = vmap(grad(loss))(stacked, x, y)
        for client in range(2):
            single = grad(loss)({k: v[client] for k, v in stacked.items()}, x[client], y[client])
            for name in single:
                assert torch.allclose(batched[name][client], single[name], atol=1e-5)


def test_quantum_models_train_under_the_few_shot_protocol():
    from paralab.host import get_registry

    if "episodic" not in get_registry().components["protocol"]:
        pytest.skip("paralab_fewshot is not installed")
    protocol = {"name": "episodic", "ways": 2, "shots": 1, "queries": 2, "meta_batch": 2,
                "meta_iterations": 2, "eval_every": 2, "val_episodes": 4, "eval_episodes": 6,
                "eval_meta_batch": 4, "class_split": [0.4, 0.3, 0.3]}
    for model in ({"name": "hybrid", "n_qubits": 3}, {"name": "vqc", "embedding": "amplitude"}):
        for method in ({"name": "maml", "inner_steps": 1}, {"name": "protonet"}):
            result = _run(dataset="digits", model=model, protocol=protocol, method=method)
            assert result.status == "completed"
            assert 0.0 <= result.metrics["meta_test/accuracy"] <= 1.0
