"""Circuits written in the spec (``model.circuit``): layers of named gates on wires, parameters
from weights, inputs or constants, data re-uploading blocks.

The built circuit's states equal PennyLane's and Qiskit's (1e-10, complex128) on a spec over
every gate with re-uploaded inputs; its QASM 3 export (inputs free) reads back to the same
state; the shift rule differentiates it; ``vqc`` and ``hybrid`` train with one through
``paralab.run``; every bad entry is a spec error naming its field.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import paralab
from paralab import SpecError
from paralab_quantum.circuit import Circuit, CircuitError
from paralab_quantum.operations import OPERATIONS
from paralab_quantum.shots import ShotParameterShift
from paralab_quantum.simulator import TorchSimulator
from paralab_quantum.spec_circuit import build

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REUPLOAD = [
    {"gate": "H", "wires": "all"},
    {"repeat": 2, "layers": [
        {"gate": "RY", "wires": "all", "params": ["x"]},
        {"gate": "Rot", "wires": "all", "params": ["w", "w", "w"]},
        {"gate": "CNOT", "wires": "ring"},
    ]},
    {"gate": "CRX", "wires": [[0, 1], [2, 1]], "params": ["x2"]},
    {"gate": "RZ", "wires": [0], "params": [0.5]},
]


def _every_gate():
    """One layer per gate of the table on the first wires, parameters cycling w, x, constant."""
    layers, sources = [], ["w", "x", 0.3]
    for k, (name, op) in enumerate(OPERATIONS.items()):
        params = [sources[(k + j) % 3] for j in range(op.n_params)]
        layers.append({"gate": name, "wires": [list(range(op.n_wires))], "params": params})
    return [{"repeat": 2, "layers": layers}]


@pytest.mark.parametrize("spec", [REUPLOAD, _every_gate()], ids=["reupload", "every_gate"])
def test_spec_circuits_equal_pennylane_and_qiskit(spec):
    pytest.importorskip("pennylane")
    pytest.importorskip("qiskit")
    from paralab_quantum import pennylane_backend, qiskit_backend
    from paralab_quantum.qasm_import import from_qasm3

    gates, inputs = build(spec, 3)
    circuit = Circuit(3, None, None, gates, inputs=inputs)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(3, inputs, generator=generator, dtype=torch.float64) * 3
    weights = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 6 - 3
    ours = TorchSimulator(circuit, dtype=torch.complex128).state(x, weights)
    theirs = pennylane_backend.make_qnode(circuit, output="state")(x, weights)
    assert (ours - theirs.reshape(ours.shape)).abs().max().item() < 1e-10
    qiskit = qiskit_backend.statevector(circuit, x, weights)
    assert np.abs(qiskit - ours.numpy()).max() < 1e-10
    # the inputs change the state (they are read, not dropped)
    other = TorchSimulator(circuit, dtype=torch.complex128).state(x + 0.5, weights)
    assert (other - ours).abs().max().item() > 1e-3
    # QASM 3 with the inputs free reads back to the same state
    imported = from_qasm3(qiskit_backend.to_qasm3(circuit, None, weights.tolist()))
    values = {f"x_{i}": float(v) for i, v in enumerate(x[0])}
    bound = torch.tensor(imported.weights(values), dtype=torch.float64)
    back = TorchSimulator(imported.circuit, dtype=torch.complex128).state(None, bound)
    assert (back[0] - ours[0]).abs().max().item() < 1e-10


def test_reuploading_reads_inputs_each_repetition_with_new_weights():
    once, inputs_once = build([{"repeat": 1, "layers": REUPLOAD[1]["layers"]}], 3)
    twice, inputs_twice = build([REUPLOAD[1]], 3)
    assert inputs_once == inputs_twice == 3
    reads = [sum(a.source == "x" for g in gates for a in g.params) for gates in (once, twice)]
    weights = [sum(a.source == "w" for g in gates for a in g.params) for gates in (once, twice)]
    assert reads == [3, 6] and weights == [9, 18]
    assert len({a.index for g in twice for a in g.params if a.source == "w"}) == 18


def test_shift_rule_differentiates_a_spec_circuit():
    gates, inputs = build(REUPLOAD, 3)
    circuit = Circuit(3, None, None, gates, inputs=inputs, observables=("Z0 Z1", "X2"))
    x = torch.rand(2, inputs, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(circuit.n_weights, dtype=torch.float64, requires_grad=True)
    exact = TorchSimulator(circuit, dtype=torch.complex128)(x, weights).sum()
    shifted = ShotParameterShift(circuit, 0)(x, weights).sum()
    for a, b in zip(torch.autograd.grad(exact, (x, weights)),
                    torch.autograd.grad(shifted, (x, weights)), strict=True):
        assert (a - b).abs().max().item() < 1e-12


def _run(model, epochs=10):
    return paralab.run({"dataset": "iris", "output": None, "device": "cpu", "seed": 0,
                        "model": model,
                        "protocol": {"name": "supervised", "epochs": epochs, "batch_size": 16},
                        "method": {"name": "adam", "lr": 0.05}})


def test_vqc_and_hybrid_train_with_a_spec_circuit():
    result = _run({"name": "vqc", "circuit": REUPLOAD})
    assert result.status == "completed"
    assert result.metrics["test/accuracy"] >= 0.8
    hybrid = _run({"name": "hybrid", "n_qubits": 3, "hidden": [8], "circuit": REUPLOAD}, 8)
    assert hybrid.metrics["test/accuracy"] >= 0.8


@pytest.mark.parametrize(("circuit", "message"), [
    ([{"gate": "FOO", "wires": "all"}], r"circuit\[0\]\.gate = 'FOO' is unknown; valid: H"),
    ([{"gate": "RY", "wires": "all", "params": ["q"]}], r"circuit\[0\]\.params\[0\] = 'q'"),
    ([{"gate": "RY", "wires": "all"}], r"circuit\[0\]\.params = \[\]: gate RY takes 1"),
    ([{"repeat": 2, "layers": [{"gate": "CNOT", "wires": "all"}]}],
     r"circuit\[0\]\.layers\[0\]\.wires = 'all' places a one-wire gate"),
    ([{"repeat": 0, "layers": [{"gate": "H", "wires": "all"}]}], r"circuit\[0\]\.repeat = 0"),
    ([{"gate": "H", "wires": "all", "angle": 1}], r"circuit\[0\]: unknown key 'angle'"),
    ([{"gate": "CNOT", "wires": [[0, 0]]}], r"circuit\[0\]\.wires: \[0, 0\] but the gate acts"),
])
def test_bad_circuits_are_spec_errors_naming_the_field(circuit, message):
    with pytest.raises(SpecError, match=message):
        _run({"name": "vqc", "circuit": circuit})


def test_options_the_circuit_replaces_are_refused_and_wires_checked_on_the_model():
    with pytest.raises(SpecError, match="option circuit replaces layers"):
        _run({"name": "vqc", "circuit": REUPLOAD, "layers": 3})
    with pytest.raises(SpecError, match=r"wire 5 is not one of 0\.\.3"):
        _run({"name": "vqc", "n_qubits": 4,
              "circuit": [{"gate": "RX", "wires": [5], "params": ["w"]}]})
    with pytest.raises(SpecError, match="no gate reads an input"):
        _run({"name": "hybrid", "circuit": [{"gate": "RX", "wires": "all", "params": ["w"]}]})
    with pytest.raises(CircuitError, match="gates read 3"):
        gates, inputs = build(REUPLOAD, 3)
        Circuit(3, None, None, gates, inputs=inputs).check_features(4)
