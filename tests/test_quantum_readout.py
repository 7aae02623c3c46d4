"""Readout error (each measured bit flips with probability p) against PennyLane's own readout
machinery: ``qubit_mixed.simulate(readout_errors=[BitFlip(p)])``, the code behind
``default.mixed(readout_prob=p)`` (whose device argument crashes in PennyLane 0.45.1: it passes
the float where the list of channels is expected).

Random noisy circuits over every gate: probabilities, Pauli-word expectations and variances,
Z-only Hamiltonian variances equal PennyLane's to 1e-7 (sums: 1e-6) and their gradients to 1e-6 (default.mixed's
diagonal gates are computed in lower precision: see test_quantum_density); a Hamiltonian's
expectation equals the sum of its terms' flipped expectations (measured term by term, as on
hardware). p = 0 is a no-op, p = 0.5 makes every outcome a fair coin, and a model trains with it.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from paralab_quantum.circuit import CircuitError, random_circuit
from paralab_quantum.density import DensityMatrixSimulator, Noise
from paralab_quantum.observables import parse
from paralab_quantum.operations import OPERATIONS
from paralab_quantum.readout import Readout, flip_probabilities
from paralab_quantum.simulator import TorchSimulator

pytestmark = pytest.mark.usefixtures("one_torch_thread")
qml = pytest.importorskip("pennylane")
from paralab_quantum import pennylane_backend  # noqa: E402

P = 0.07


def _case(n_qubits, seed, measurement="expval", observables=()):
    circuit = random_circuit(n_qubits, 20, seed=700 + 10 * n_qubits + seed, layers=1)
    circuit = dataclasses.replace(circuit, measurement=measurement, observables=observables)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(2, circuit.n_features, generator=generator, dtype=torch.float64) * 3
    weights = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 6 - 3
    return circuit, x, weights


def _pennylane(circuit, x_row, weights, noise, measurements):
    """PennyLane's result for one input row: the circuit and channels queued by hand, measured
    by ``qubit_mixed.simulate`` with a ``BitFlip(p)`` readout error on every measured wire."""
    from pennylane.devices.qubit_mixed import simulate

    angles = circuit.angle_terms(list(x_row.unbind(0)))
    channels = {"depolarizing": qml.DepolarizingChannel, "amplitude_damping": qml.AmplitudeDamping,
                "phase_damping": qml.PhaseDamping}
    with qml.queuing.AnnotatedQueue() as queue:
        for gate in circuit.program():
            values = [angles[a.index] if a.source == "x" else weights[a.index]
                      if a.source == "w" else torch.tensor(a.value, dtype=torch.float64)
                      for a in gate.params]
            op = OPERATIONS[gate.name]
            if op.pauli_word is not None:
                values.append(op.pauli_word)
            getattr(qml, op.pennylane)(*values, wires=list(gate.wires))
            for wire in gate.wires:
                for name, strength in noise.channels():
                    channels[name](strength, wires=wire)
        measurements()
    tape = qml.tape.QuantumScript.from_queue(queue)
    result = simulate(tape, readout_errors=[functools.partial(qml.BitFlip, noise.readout)],
                      interface="torch")
    return torch.stack(list(result)) if isinstance(result, tuple) else result


WORDS = ("Z0", "X0 Y1", "Y1 Z2", "X0 Z1 Y2")
NOISES = [Noise(readout=P), Noise(0.03, 0.05, 0.02, readout=P)]


@pytest.mark.parametrize("noise", range(len(NOISES)))
@pytest.mark.parametrize("seed", range(2))
def test_readout_equals_pennylane_on_random_noisy_circuits(noise, seed):
    noise = NOISES[noise]
    pennylane_words = [pennylane_backend.to_pennylane(parse(w)) for w in WORDS]
    cases = [
        ("probs", (), lambda: qml.probs(wires=[0, 1, 2])),
        ("expval", WORDS, lambda: [qml.expval(o) for o in pennylane_words]),
        ("var", WORDS, lambda: [qml.var(o) for o in pennylane_words]),
    ]
    for measurement, observables, measure in cases:
        circuit, x, weights = _case(3, seed, measurement, observables)
        weights.requires_grad_(True)
        ours = DensityMatrixSimulator(circuit, noise)(x, weights)
        theirs = torch.stack([_pennylane(circuit, row, weights, noise, measure) for row in x])
        assert (ours - theirs).abs().max().item() < 1e-7, measurement
        # the readout error changes the result: not a no-op
        bare = DensityMatrixSimulator(circuit, dataclasses.replace(noise, readout=0.0))(x, weights)
        assert (ours - bare).abs().max().item() > 1e-3, measurement
        grad_ours, = torch.autograd.grad(ours.square().sum(), weights)
        grad_theirs, = torch.autograd.grad(theirs.square().sum(), weights)
        assert (grad_ours - grad_theirs).abs().max().item() < 1e-6, measurement
        if not noise.channels():  # readout alone: the statevector simulator, wrapped
            pure = Readout(circuit, noise.readout).wrap(
                lambda inner: TorchSimulator(inner, dtype=torch.complex128))(x, weights)
            assert (pure - ours).abs().max().item() < 1e-10, measurement


def test_hamiltonians_under_readout_equal_their_terms_measured_separately():
    hamiltonian = "0.5*X0 Y1 - 1.5*Z2 + 0.25*Z0 Z1 Z2 + 0.1"
    circuit, x, weights = _case(3, 0, "expval", (hamiltonian,))
    noise = Noise(0.02, readout=P)
    ours = DensityMatrixSimulator(circuit, noise)(x, weights)[:, 0]
    terms = parse(hamiltonian).terms
    words = [pennylane_backend.to_pennylane(parse(
        " ".join(f"{letter}{wire}" for wire, letter in t.paulis))) for t in terms if t.paulis]
    measured = torch.stack([_pennylane(circuit, row, weights, noise,
                                       lambda: [qml.expval(w) for w in words]) for row in x])
    coefficients = torch.tensor([t.coefficient for t in terms if t.paulis], dtype=torch.float64)
    reference = measured @ coefficients + sum(t.coefficient for t in terms if not t.paulis)
    assert (ours - reference).abs().max().item() < 1e-7
    # a Z-only Hamiltonian's variance: the flipped distribution's, equal to PennyLane's words
    z_only = "Z0 Z1 + 0.5*Z2"
    circuit, x, weights = _case(3, 1, "var", (z_only,))
    ours = DensityMatrixSimulator(circuit, noise)(x, weights)[:, 0]
    probs = torch.stack([_pennylane(circuit, row, weights, noise,
                                    lambda: qml.probs(wires=[0, 1, 2])) for row in x])
    values = torch.tensor([(1 - 2 * (b >> 2 & 1)) * (1 - 2 * (b >> 1 & 1)) + 0.5 * (1 - 2 * (b & 1))
                           for b in range(8)], dtype=torch.float64)
    reference = probs @ values.square() - (probs @ values) ** 2
    assert (ours - reference).abs().max().item() < 1e-6  # a sum of squares of 1e-7 errors


def test_readout_limits_and_refusals():
    circuit, x, weights = _case(2, 0, "probs")
    probabilities = TorchSimulator(circuit, dtype=torch.complex128)(x, weights)
    assert torch.equal(flip_probabilities(probabilities, 0.0, 2), probabilities)
    fair = flip_probabilities(probabilities, 0.5, 2)
    assert torch.allclose(fair, torch.full_like(fair, 0.25), atol=1e-12)
    assert torch.allclose(flip_probabilities(probabilities, 1.0, 2),
                          probabilities.reshape(2, 2, 2).flip(1, 2).reshape(2, 4), atol=1e-12)
    circuit, x, weights = _case(2, 0, "var", ("X0 + Z1",))
    with pytest.raises(CircuitError, match="'X0 \\+ Z1' sums non-commuting terms"):
        Readout(circuit, 0.1)
    with pytest.raises(CircuitError, match="noise readout must be a number in \\[0, 1\\]"):
        Noise(readout=1.5)


def test_vqc_trains_with_readout_error_on_both_backends_alike():
    import paralab
    from paralab import SpecError

    spec = {"dataset": "iris", "output": None, "device": "cpu",
            "model": {"name": "vqc", "layers": 2, "noise_readout": 0.05},
            "protocol": {"name": "supervised", "epochs": 8, "batch_size": 16},
            "method": {"name": "adam", "lr": 0.05}}
    result = paralab.run(spec)
    assert result.status == "completed"
    assert result.metrics["test/accuracy"] >= 0.7
    losses = [phase["metrics"]["train/loss"] for phase in result.phases]
    assert losses[-1] < 0.8 * losses[0]
    with pytest.raises(SpecError, match="noise_readout"):
        paralab.run({**spec, "model": {"name": "vqc", "noise_readout": 2.0}})
    from paralab import DatasetInfo
    from paralab_quantum.models import vqc

    info = DatasetInfo("tiny", (3,), 2, 3)
    torch.manual_seed(0)
    torch_model = vqc(info, layers=1, noise_readout=0.1, precision="double")
    torch.manual_seed(0)
    pennylane_model = vqc(info, layers=1, noise_readout=0.1, backend="pennylane")
    pennylane_model.load_state_dict(torch_model.state_dict())
    x = torch.rand(4, 3, dtype=torch.float64)
    assert (torch_model.double()(x) - pennylane_model.double()(x)).abs().max().item() < 1e-7
