"""The quantum plugin through paralab.run: models train, the kernel protocol fits, bad input is
refused before training with a message that names what to change."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import paralab
from paralab import DatasetInfo, SpecError
from paralab.host import get_registry
from paralab_quantum.circuit import Ansatz, Circuit, CircuitError, Embedding, Gate
from paralab_quantum.memory import QubitMemoryError, check_statevector
from paralab_quantum.models import HybridNetwork, hybrid, vqc
from tests.fairness_helpers import components_of, signature_mismatches

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
    quantum = _run(dataset="ad_hoc", protocol="kernel", method="qsvc")
    classical = _run(dataset="ad_hoc", protocol="kernel", method="svc")
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


def _fake_run(info: DatasetInfo) -> SimpleNamespace:
    """Only what a model's validate(run) reads: the dataset's info."""
    return SimpleNamespace(dataset=SimpleNamespace(info=info), info=info)


def test_more_features_than_the_embedding_takes_is_refused_before_training():
    # The model's validate(run) knows the data: the factory builds, validate refuses.
    model = vqc(DatasetInfo("wine", (13,), 3, 13), n_qubits=4)
    with pytest.raises(CircuitError, match=r"13 input features .* takes at most 4; use n_qubits >= 13"):
        model.validate(_fake_run(DatasetInfo("wine", (13,), 3, 13)))
    with pytest.raises(CircuitError, match="takes at most 4"):  # and never silently trains
        model(torch.rand(2, 13))


def test_more_features_than_the_embedding_takes_is_a_spec_error_before_any_folder(tmp_path):
    with pytest.raises(SpecError, match=r"model: model 'vqc' \(paralab_quantum\): .*13 input features .* takes at most 4; use n_qubits >= 13"):
        _run(dataset="wine", model={"name": "vqc", "n_qubits": 4}, output=str(tmp_path),
             protocol={"name": "supervised", "epochs": 50})
    assert list(tmp_path.iterdir()) == []


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
    # Through a spec, the declared choices refuse them before anything is built.
    with pytest.raises(SpecError, match="model.measurement = 'counts': expected one of 'expval', 'probs'"):
        _run(dataset="iris", model={"name": "vqc", "measurement": "counts"})
    with pytest.raises(SpecError, match="model.backend = 'cirq': expected one of 'torch', 'pennylane', 'lightning'"):
        _run(dataset="iris", model={"name": "vqc", "backend": "cirq"})


def test_direct_readout_needs_an_output_per_class():
    hybrid(DatasetInfo("digits", (64,), 10, 64), n_qubits=3)  # linear head: fine
    info = DatasetInfo("iris", (2,), 3, 2)
    model = vqc(info, readout="direct")
    with pytest.raises(ValueError, match="readout 'direct' needs an output per class"):
        model.validate(_fake_run(info))
    with pytest.raises(ValueError, match="readout 'direct' needs an output per class"):
        model(torch.rand(2, 2))  # never fewer logits than classes


@pytest.mark.parametrize(("model", "field"), [
    ({"name": "vqc", "layers": -1}, "model.layers = -1: must be >= 0"),
    ({"name": "vqc", "reps": 0}, "model.reps = 0: must be >= 1"),
    ({"name": "vqc", "embedding": "amplitude", "input_scale": 2.0},
     "model.input_scale: model 'vqc' (paralab_quantum) uses it only when embedding = 'angle'"),
    ({"name": "vqc", "reps": 3}, "model.reps: model 'vqc' (paralab_quantum) uses it only when "
     "embedding = 'zz', and here embedding = 'angle'"),
    ({"name": "vqc", "rotations": []}, "model.rotations = []: needs at least 1 entries"),
    ({"name": "vqc", "rotations": ["RY", "RW"]}, "model.rotations = ['RY', 'RW']: entry [1]"),
    ({"name": "vqc", "input_scale": math.nan}, "model.input_scale = nan: must be a finite"),
    ({"name": "vqc", "n_qubits": -3}, "model.n_qubits = -3: must be >= 0"),
    ({"name": "vqc", "embedding": "fourier"}, "model.embedding = 'fourier': expected one of"),
    ({"name": "vqc", "readout": "softmax"}, "model.readout = 'softmax': expected one of"),
    ({"name": "vqc", "precision": "half"}, "model.precision = 'half': expected one of"),
    ({"name": "vqc", "memory_limit_gb": -1.0}, "model.memory_limit_gb = -1.0: must be >= 0"),
    ({"name": "hybrid", "n_qubits": 0}, "model.n_qubits = 0: must be >= 1"),
    ({"name": "hybrid", "hidden": [8, 0]}, "model.hidden = [8, 0]: entry [1] must be >= 1"),
    ({"name": "hybrid", "entangler": "all"}, "model.entangler = 'all': expected one of"),
])
def test_bad_model_options_are_spec_errors_before_any_folder(model, field, tmp_path):
    with pytest.raises(SpecError) as caught:
        _run(dataset="iris", model=model, output=str(tmp_path))
    assert field in str(caught.value)
    assert list(tmp_path.iterdir()) == []


KERNEL = {"dataset": "ad_hoc", "protocol": "kernel", "method": "qsvc"}


@pytest.mark.parametrize(("changes", "field"), [
    ({"method": {"name": "qsvc", "C": 0.0}}, "method.C = 0.0: must be > 0"),
    ({"method": {"name": "qsvc", "entanglement": "ring"}}, "method.entanglement = 'ring'"),
    ({"method": {"name": "svc", "kernel": "quantum"}}, "method.kernel = 'quantum': expected one of"),
    ({"method": {"name": "svc", "gamma": -1.0}}, "method.gamma = -1.0: must be >= 0"),
    ({"method": {"name": "svc", "C": math.inf}}, "method.C = inf: must be a finite"),
    ({"protocol": {"name": "kernel", "eval_splits": "test"}}, "protocol.eval_splits = 'test'"),
    ({"dataset": {"name": "ad_hoc", "n": 4}}, "dataset.n = 4: expected one of 2, 3"),
    ({"dataset": {"name": "ad_hoc", "training_size": 0}}, "dataset.training_size = 0"),
    ({"dataset": {"name": "ad_hoc", "gap": 1.0}}, "dataset.gap = 1.0: must be < 1"),
    ({"model": "linear"}, "model.name = 'linear': protocol 'kernel' (paralab_quantum) trains no torch model"),
])
def test_bad_kernel_specs_are_spec_errors_before_any_folder(changes, field, tmp_path):
    with pytest.raises(SpecError) as caught:
        _run(**{**KERNEL, **changes}, output=str(tmp_path))
    assert field in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_kernel_checks_against_the_data_are_spec_errors_before_any_folder(tmp_path):
    with pytest.raises(SpecError) as caught:
        _run(**{**KERNEL, "protocol": {"name": "kernel", "eval_splits": ["test", "val"]}},
             output=str(tmp_path))
    assert "protocol: protocol 'kernel' (paralab_quantum)" in str(caught.value)
    assert "eval_splits[1] = 'val' is not a split of dataset 'ad_hoc'" in str(caught.value)
    with pytest.raises(SpecError, match=r"method: method 'svc' \(paralab_quantum\): gamma = 'scaled': expected 'scale' or 'auto'"):
        _run(**{**KERNEL, "method": {"name": "svc", "gamma": "scaled"}}, output=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_a_loss_under_the_kernel_protocol_is_refused_before_any_folder(tmp_path):
    """Issue 13: ``protocol = kernel, losses = [semantic_loss]`` completed and the loss never
    ran. A kernel machine is fitted in one solve; any loss term named with it is a spec error
    naming ``losses[0]``, before any folder exists."""
    losses = sorted(get_registry().components["loss"])
    assert losses, "no loss term is installed"
    loss = "semantic_loss" if "semantic_loss" in losses else losses[0]
    with pytest.raises(SpecError) as caught:
        _run(**KERNEL, losses=[loss], output=str(tmp_path))
    message = str(caught.value)
    assert f"losses[0] = {loss!r}: protocol 'kernel' (paralab_quantum) adds no loss terms" in message
    assert "would never act" in message
    assert list(tmp_path.iterdir()) == []


def test_svc_takes_a_numeric_gamma_and_qsvc_several_feature_maps():
    assert _run(**{**KERNEL, "method": {"name": "svc", "gamma": 0.5}}).status == "completed"
    result = _run(**{**KERNEL, "method": {"name": "qsvc", "entanglement": "linear", "reps": 1}})
    assert result.status == "completed"


def test_every_component_declares_its_factory_signature():
    components = components_of(get_registry(), "paralab_quantum")
    assert len(components) == 6
    for component in components:
        assert signature_mismatches(component) == [], f"{component.kind} {component.name}"
        for name, option in component.declared_options().items():
            assert option.problem(option.default) is None, f"{component.name}.{name}"


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
