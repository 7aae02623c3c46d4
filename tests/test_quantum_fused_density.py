"""The fused density-matrix path equals the gate-by-gate one.

The fused path (Pauli transfer matrices on a paired layout, one-qubit runs multiplied and
absorbed into the next multi-qubit gate, measurements read from the Pauli vector) must compute
the same density matrices, outputs and gradients as the gate-by-gate path that the Qiskit and
PennyLane parity tests of ``test_quantum_density.py`` check: random noisy circuits over every
gate and embedding, every measurement, with and without readout error, to 1e-12 in complex128.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from paralab_quantum import pauli_basis, superop
from paralab_quantum.circuit import Ansatz, Circuit, Embedding, random_circuit
from paralab_quantum.density import DensityMatrixSimulator, Noise
from paralab_quantum.observables import parse

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NOISES = [Noise(), Noise(0.05), Noise(0, 0.1, 0.2), Noise(0.03, 0.08, 0.05, 0.04)]
EMBEDDINGS = ["angle", "zz", "amplitude", None]


def _inputs(circuit, seed):
    generator = torch.Generator().manual_seed(seed)
    x = None
    if circuit.reads_inputs:
        x = torch.rand(3, circuit.n_features, generator=generator, dtype=torch.float64) * 3
    weights = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 6 - 3
    return x, weights, generator


def _both(circuit, noise, x, weights, generator, call):
    """Outputs and gradients (weights and inputs) of the two paths for one random probe."""
    results = []
    probe = None
    for fused in (True, False):
        w = weights.clone().requires_grad_(True)
        inputs = None if x is None else x.clone().requires_grad_(True)
        simulator = DensityMatrixSimulator(circuit, noise, fused=fused)
        out = call(simulator, inputs, w)
        if probe is None:
            probe = torch.randn(out.shape, generator=generator, dtype=torch.float64)
        (out * probe).real.sum().backward() if out.is_complex() else (out * probe).sum().backward()
        grads = [w.grad] + ([] if inputs is None or inputs.grad is None else [inputs.grad])
        results.append((out.detach(), grads))
    return results


@pytest.mark.parametrize("n_qubits", [1, 2, 3, 4])
@pytest.mark.parametrize("noise", range(len(NOISES)))
def test_fused_density_matrices_and_gradients_equal_gate_by_gate(n_qubits, noise):
    worst = 0.0
    for seed in range(4):
        circuit = random_circuit(n_qubits, 30, seed=41 * n_qubits + seed,
                                 embedding=EMBEDDINGS[seed], layers=2)
        x, weights, generator = _inputs(circuit, seed)
        (fused, fused_grads), (plain, plain_grads) = _both(
            circuit, dataclasses.replace(NOISES[noise], readout=0.0), x, weights, generator,
            lambda s, x, w: s.density(x, w))
        assert fused.shape == plain.shape
        worst = max(worst, (fused - plain).abs().max().item())
        assert len(fused_grads) == len(plain_grads)
        for ours, theirs in zip(fused_grads, plain_grads, strict=True):
            worst = max(worst, (ours - theirs).abs().max().item())
    assert worst < 1e-12


@pytest.mark.parametrize("measurement", ["expval", "var", "probs", "hamiltonian"])
@pytest.mark.parametrize("noise", range(len(NOISES)))
def test_fused_measurements_equal_gate_by_gate(measurement, noise):
    noise = NOISES[noise]
    for seed, n_qubits in enumerate((2, 3)):
        circuit = random_circuit(n_qubits, 25, seed=int(700 * noise.depolarizing) + seed,
                                 embedding=EMBEDDINGS[seed], layers=1)
        if measurement == "hamiltonian":
            circuit = dataclasses.replace(circuit, observables=(
                "0.5*X0 Z1 - 0.2*Y1 + 0.7", "Y0 Y1 + 0.3*Z0 X1", "X1"), measurement="var")
            noise = dataclasses.replace(noise, readout=0.0)  # var + readout: Z-only terms
        else:
            circuit = dataclasses.replace(circuit, measurement=measurement)
        x, weights, generator = _inputs(circuit, seed)
        (fused, fused_grads), (plain, plain_grads) = _both(
            circuit, noise, x, weights, generator, lambda s, x, w: s(x, w))
        assert fused.shape == plain.shape
        assert (fused - plain).abs().max().item() < 1e-12
        for ours, theirs in zip(fused_grads, plain_grads, strict=True):
            assert ours.abs().max() > 0
            assert (ours - theirs).abs().max().item() < 1e-12


def test_the_plan_fuses_one_qubit_runs_and_loses_no_gate():
    circuit = Circuit(4, Embedding("angle"), Ansatz(2, ("RY", "RZ"), "cnot_ring"))
    program = circuit.program()
    plan = superop.plan(program)
    # 28 gates; the 8 CNOTs are the only passes: every one-qubit run is in the product state
    # (the embedding and first layer) or absorbed into the second ring's CNOTs
    assert len(program) == 28
    assert [program[s.gate].name for s in plan.steps] == ["CNOT"] * 8
    assert sorted(plan.initial) == [0, 1, 2, 3]
    covered = sorted(i for run in plan.runs for i in run) + [s.gate for s in plan.steps]
    assert sorted(covered) == list(range(28))  # every gate is used exactly once


def test_the_pauli_basis_round_trips_and_measures_what_a_trace_gives():
    generator = torch.Generator().manual_seed(3)
    n = 3
    a = torch.randn(2, 2**n, 2**n, dtype=torch.complex128, generator=generator)
    rho = a @ a.mH
    rho = rho / rho.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None]
    paired = superop.to_paired(rho, n)
    vector = pauli_basis.to_pauli(paired, n)
    assert vector.dtype == torch.float64
    back = superop.from_paired(pauli_basis.from_pauli(vector, n, torch.complex128), n)
    assert (back - rho).abs().max().item() < 1e-14
    from paralab_quantum.expectations import PauliSum

    observable = parse("0.5*X0 Y2 - Z1 + 0.25*Y0 Y1 Z2 + 0.1")
    measurement = pauli_basis.PauliMeasurement([observable], n, variance=True)
    h = PauliSum(observable, n)
    mean = h.apply(rho.mT).diagonal(dim1=-2, dim2=-1).sum(-1).real
    second = h.apply(h.apply(rho.mT)).diagonal(dim1=-2, dim2=-1).sum(-1).real
    assert (measurement.values(vector)[:, 0] - (second - mean**2)).abs().max() < 1e-13
    probabilities = measurement.probabilities(vector)
    assert (probabilities - rho.diagonal(dim1=-2, dim2=-1).real).abs().max() < 1e-14


def test_constants_built_under_inference_mode_still_train():
    # evaluation (inference mode) first builds and caches the constant transfer matrices;
    # a training step afterwards must be able to save them for backward
    circuit = Circuit(3, Embedding("angle"), Ansatz(2, ("RY", "RZ"), "cnot_ring"),
                      observables=("Z0 Z1", "X2"), measurement="var")
    simulator = DensityMatrixSimulator(circuit, Noise(0.02, 0.03, 0.01, 0.05, per="layer"))
    x = torch.rand(4, 3, dtype=torch.float64)
    weights = torch.rand(circuit.n_weights, dtype=torch.float64, requires_grad=True)
    with torch.inference_mode():
        evaluated = simulator(x, weights.detach())
    trained = simulator(x, weights)
    trained.sum().backward()
    assert weights.grad.abs().max() > 0
    assert (trained.detach() - evaluated).abs().max().item() < 1e-14
