"""Observables: Pauli strings and Hamiltonians, expectation and variance, batched.

The torch simulator's expectations and variances of random Hamiltonians on random circuits
equal PennyLane's ``qml.expval`` / ``qml.var`` of the same Hamiltonian and Qiskit's
``Statevector.expectation_value`` of the same ``SparsePauliOp`` (1e-10, complex128); gradients
equal PennyLane's backprop; a model measures them through the spec, and a bad observable is a
``SpecError`` naming the option before anything is built.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

import paralab
from paralab import DatasetInfo, SpecError
from paralab_quantum.circuit import Circuit, CircuitError, Embedding, random_circuit
from paralab_quantum.models import vqc
from paralab_quantum.observables import Observable, ObservableError, PauliTerm, parse
from paralab_quantum.simulator import TorchSimulator

pytestmark = pytest.mark.usefixtures("one_torch_thread")
pytest.importorskip("pennylane")
pytest.importorskip("qiskit")
from paralab_quantum import pennylane_backend, qiskit_backend  # noqa: E402

TOLERANCE = 1e-10


def test_the_grammar_reads_terms_coefficients_and_identities():
    observable = parse("0.5*X0 Y2 - 0.25*Z1 + 1 - 2e-1 * Z0@Z3")
    assert observable.terms == (
        PauliTerm(0.5, ((0, "X"), (2, "Y"))), PauliTerm(-0.25, ((1, "Z"),)),
        PauliTerm(1.0, ()), PauliTerm(-0.2, ((0, "Z"), (3, "Z"))))
    assert parse("-Y1 X0").terms == (PauliTerm(-1.0, ((0, "X"), (1, "Y"))),)
    assert parse("I0").terms == (PauliTerm(1.0, ()),)
    assert Observable.from_terms([(0.5, "ZIX")]).terms == (PauliTerm(0.5, ((0, "Z"), (2, "X"))),)


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty"), ("Q1", "cannot read 'Q1'"), ("Z0 Z0", "wire 0 appears twice"),
    ("2Z0", "cannot read '2Z0'"), ("Z0 +", "an empty term"), ("Z", "cannot read 'Z'"),
])
def test_bad_observables_are_refused_with_the_grammar(text, message):
    with pytest.raises(ObservableError, match=message):
        parse(text)


def _random_observable(rng: random.Random, n_qubits: int, diagonal: bool = False) -> Observable:
    terms = []
    for _ in range(rng.randint(1, 5)):
        letters = "IZ" if diagonal else "IXYZ"
        word = "".join(rng.choice(letters) for _ in range(n_qubits))
        terms.append((rng.uniform(-2, 2), word))
    return Observable.from_terms(terms)


CASES = [(n, seed, diagonal) for n in (1, 3, 5) for seed in range(2) for diagonal in (False, True)]


@pytest.mark.parametrize(("n_qubits", "seed", "diagonal"), CASES)
@pytest.mark.parametrize("measurement", ["expval", "var"])
def test_expectations_and_variances_match_pennylane_and_qiskit(n_qubits, seed, diagonal,
                                                                measurement):
    rng = random.Random(100 * n_qubits + seed)
    observables = tuple(_random_observable(rng, n_qubits, diagonal) for _ in range(3))
    base = random_circuit(n_qubits, 15, seed=seed, embedding="angle", layers=1)
    circuit = dataclasses.replace(base, observables=observables, measurement=measurement)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(4, n_qubits, generator=generator, dtype=torch.float64) * 3
    weights = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 6 - 3
    ours = TorchSimulator(circuit, dtype=torch.complex128)(x, weights)
    assert ours.shape == (4, 3)
    theirs = pennylane_backend.make_qnode(circuit)(x, weights).reshape(ours.shape)
    assert (ours - theirs).abs().max().item() < TOLERANCE
    qiskit = qiskit_backend.expectations(circuit, x, weights, variance=measurement == "var")
    assert np.abs(ours.numpy() - qiskit).max() < TOLERANCE
    assert ours.std() > 1e-3  # not a constant on both sides


def test_default_measurement_is_z_of_each_qubit_and_var_is_one_minus_its_square():
    circuit = random_circuit(3, 10, seed=4, embedding="angle", layers=1)
    x = torch.rand(5, 3, dtype=torch.float64)
    weights = torch.rand(circuit.n_weights, dtype=torch.float64)
    expval = TorchSimulator(circuit, dtype=torch.complex128)(x, weights)
    explicit = dataclasses.replace(circuit, observables=("Z0", "Z1", "Z2"))
    assert (TorchSimulator(explicit, dtype=torch.complex128)(x, weights) - expval).abs().max() < 1e-12
    variance = dataclasses.replace(circuit, measurement="var")
    var = TorchSimulator(variance, dtype=torch.complex128)(x, weights)
    assert (var - (1 - expval**2)).abs().max().item() < 1e-12


def test_hamiltonian_gradients_match_pennylane_backprop():
    circuit = Circuit(3, Embedding("angle"), observables=("0.7*X0 X1 - 0.3*Y1 Z2 + 0.2*Z0",
                                                          "X2 + Y0"))
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, generator=generator, dtype=torch.float64)
    weights = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64)
    for measurement in ("expval", "var"):
        measured = dataclasses.replace(circuit, measurement=measurement)

        def gradient(run, measured=measured):
            w = weights.clone().requires_grad_(True)
            run(x, w).sum().backward()
            return w.grad

        ours = gradient(TorchSimulator(measured, dtype=torch.complex128))
        theirs = gradient(pennylane_backend.make_qnode(measured))
        assert ours.abs().max() > 1e-3
        assert (ours - theirs).abs().max().item() < 1e-9


def test_observables_out_of_range_or_with_probs_are_circuit_errors():
    with pytest.raises(CircuitError, match="acts on wire 3 but the circuit has 2 qubit"):
        Circuit(2, observables=("Z0 X3",))
    with pytest.raises(CircuitError, match="not 'probs'"):
        Circuit(2, observables=("Z0",), measurement="probs")
    with pytest.raises(CircuitError, match="acts on wire 5"):
        vqc(DatasetInfo("iris", (4,), 3, 4), observables=["Z5"])


def test_a_vqc_measuring_a_hamiltonian_trains_through_the_spec():
    result = paralab.run({
        "dataset": "iris", "output": None, "device": "cpu", "seed": 0,
        "model": {"name": "vqc", "layers": 2,
                  "observables": ["Z0 Z1", "0.5*X0 + 0.5*X2", "Y1 Y3", "Z2 - Z3"]},
        "protocol": {"name": "supervised", "epochs": 8, "batch_size": 16},
        "method": {"name": "adam", "lr": 0.05},
    })
    assert result.status == "completed"
    losses = [phase["metrics"]["train/loss"] for phase in result.phases]
    assert losses[-1] < 0.8 * losses[0]
    assert result.metrics["test/accuracy"] > 0.6  # chance is 1/3


def test_a_bad_observable_is_a_spec_error_naming_the_option(tmp_path):
    with pytest.raises(SpecError) as caught:
        paralab.run({"dataset": "iris", "output": str(tmp_path), "device": "cpu",
                     "model": {"name": "vqc", "observables": ["Z0 Z1", "0.5*W0"]}})
    assert "model.observables" in str(caught.value)
    assert "entry [1]" in str(caught.value) and "cannot read 'W0'" in str(caught.value)
    assert list(tmp_path.iterdir()) == []
