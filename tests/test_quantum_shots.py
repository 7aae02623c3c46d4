"""Shots during training: sampled expectations and parameter-shift gradients.

* The analytic rule (shots 0) equals autograd on random circuits over every gate (two-term for
  rotations, Rot and U3; four-term for CRX/CRY/CRZ; two-term for CP), to 1e-12, through the
  statevector and the density-matrix simulator (with readout error), and carries gradients to
  the inputs (a hybrid model's front).
* Under shots, the gradient's mean and variance over 400 repetitions equal PennyLane's
  ``parameter-shift`` on ``default.qubit`` with the same shots (fixed seeds). Tolerances come
  from the variance: means within 5 standard errors of their difference; variances within 5
  standard errors of a sample variance (``var * sqrt(2 / (R - 1))``, each side) and both within
  the same of the exact variance ``sum_i c_i**2 (1 - <P>_i**2) / shots`` of the rule.
* ``vqc`` with ``shots`` and ``diff_method = "parameter-shift"`` trains through ``paralab.run``;
  ``shots`` without it is refused naming the fields.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from paralab_quantum.circuit import Angle, Circuit, Gate, random_circuit
from paralab_quantum.density import DensityMatrixSimulator, Noise
from paralab_quantum.shots import ShotParameterShift, shift_rule
from paralab_quantum.simulator import TorchSimulator

pytestmark = pytest.mark.usefixtures("one_torch_thread")
OBSERVABLES = ("Z0 X1", "0.5*Y2 + Z0 - 0.3", "X0 Y1 Z2")


def _case(seed):
    circuit = random_circuit(3, 30, seed=seed, layers=1)
    circuit = dataclasses.replace(circuit, observables=OBSERVABLES)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(2, circuit.n_features, generator=generator, dtype=torch.float64) * 3
    weights = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 6 - 3
    return circuit, x, weights


@pytest.mark.parametrize("seed", range(6))
def test_analytic_shift_rule_equals_autograd_on_random_circuits(seed):
    circuit, x, weights = _case(seed)
    x.requires_grad_(True)
    weights.requires_grad_(True)
    mix = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    for reference, shifted in [
        (TorchSimulator(circuit, dtype=torch.complex128), ShotParameterShift(circuit, 0)),
        (DensityMatrixSimulator(circuit, Noise(0.02, 0.03, readout=0.05)),
         ShotParameterShift(circuit, 0, noise=Noise(0.02, 0.03, readout=0.05))),
    ]:
        exact = reference(x, weights)
        ours = shifted(x, weights)
        assert (exact - ours).abs().max().item() < 1e-12
        grad_exact = torch.autograd.grad((exact * mix).sum(), (weights, x))
        grad_ours = torch.autograd.grad((ours * mix).sum(), (weights, x))
        assert grad_ours[0].abs().max().item() > 1e-3  # a gradient, not zeros
        for a, b in zip(grad_exact, grad_ours, strict=True):  # (an RZ embedding: d/dx = 0)
            assert (a - b).abs().max().item() < 1e-12


def test_every_parametric_gate_has_its_rule():
    from paralab_quantum.operations import OPERATIONS

    four = {name for name, op in OPERATIONS.items() for k in range(op.n_params)
            if len(shift_rule(name, k)) == 4}
    assert four == {"CRX", "CRY", "CRZ"}
    assert len(shift_rule("CP", 0)) == 2 and len(shift_rule("U3", 1)) == 2


def _small():
    """2 qubits: a two-term (RY, RX) and a four-term (CRX) parameter; <Z0 X1>-like readout."""
    gates = (Gate("RY", (0,), Angle("w", 0)), Gate("RX", (1,), Angle("w", 1)),
             Gate("CRX", (0, 1), Angle("w", 2)), Gate("RZ", (1,), Angle("w", 3)))
    circuit = Circuit(2, embedding=None, ansatz=None, gates=gates, observables=("Z0 Y1",))
    return circuit, torch.tensor([0.7, -0.4, 1.3, 0.5], dtype=torch.float64)


def test_shot_gradients_match_pennylane_parameter_shift_in_mean_and_variance():
    qml = pytest.importorskip("pennylane")
    shots, repeats = 200, 400
    circuit, weights = _small()
    generator = torch.Generator().manual_seed(1)
    ours_layer = ShotParameterShift(circuit, shots, generator=generator)
    ours = []
    for _ in range(repeats):
        w = weights.clone().requires_grad_(True)
        ours_layer(None, w)[0, 0].backward()
        ours.append(w.grad)
    ours = torch.stack(ours)

    device = qml.device("default.qubit", wires=2, seed=7)

    @qml.set_shots(shots)
    @qml.qnode(device, interface="torch", diff_method="parameter-shift")
    def pennylane(w):
        qml.RY(w[0], wires=0)
        qml.RX(w[1], wires=1)
        qml.CRX(w[2], wires=[0, 1])
        qml.RZ(w[3], wires=1)
        return qml.expval(qml.PauliZ(0) @ qml.PauliY(1))

    theirs = []
    for _ in range(repeats):
        w = weights.clone().requires_grad_(True)
        pennylane(w).backward()
        theirs.append(w.grad)
    theirs = torch.stack(theirs)

    # the exact gradient and the rule's exact variance, from exact shifted expectations
    exact_layer = ShotParameterShift(circuit, 0)
    w = weights.clone().requires_grad_(True)
    exact_layer(None, w)[0, 0].backward()
    exact_mean = w.grad
    exact_var = torch.zeros(4, dtype=torch.float64)
    for column, rule in enumerate(exact_layer.rules):
        for shift, coefficient in rule:
            moved = weights.clone()
            moved[column] += shift
            value = exact_layer.terms(moved[None])[0, 0]
            exact_var[column] += coefficient**2 * (1 - value**2) / shots

    root = math.sqrt(2 / (repeats - 1))
    for name, sample in (("ours", ours), ("pennylane", theirs)):
        se_mean = (exact_var / repeats).sqrt()
        assert ((sample.mean(0) - exact_mean).abs() < 5 * se_mean).all(), name
        assert ((sample.var(0) - exact_var).abs() < 5 * root * exact_var).all(), name
    difference = (ours.mean(0) - theirs.mean(0)).abs()
    assert (difference < 5 * (ours.var(0) / repeats + theirs.var(0) / repeats).sqrt()).all()
    assert ((ours.var(0) - theirs.var(0)).abs()
            < 5 * root * (ours.var(0) + theirs.var(0)) / math.sqrt(2)).all()
    # the four-term CRX parameter has a smaller variance than a naive two-shift would: nonzero
    assert (exact_var > 0).all()


def test_vqc_trains_with_shots_and_parameter_shift():
    import paralab
    from paralab import SpecError

    spec = {"dataset": "iris", "output": None, "device": "cpu", "seed": 0,
            "model": {"name": "vqc", "layers": 2, "shots": 500,
                      "diff_method": "parameter-shift"},
            "protocol": {"name": "supervised", "epochs": 12, "batch_size": 16},
            "method": {"name": "adam", "lr": 0.05}}
    result = paralab.run(spec)
    assert result.status == "completed"
    assert result.metrics["test/accuracy"] >= 0.7
    losses = [phase["metrics"]["train/loss"] for phase in result.phases]
    assert losses[-1] < 0.8 * losses[0]
    with pytest.raises(SpecError, match="shots = 100 needs diff_method"):
        paralab.run({**spec, "model": {"name": "vqc", "shots": 100}})
    with pytest.raises(SpecError, match="diff_method"):
        paralab.run({**spec, "model": {"name": "vqc", "diff_method": "adjoint"}})
