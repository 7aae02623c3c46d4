"""The same :class:`~paralab_quantum.circuit.Circuit` as a PennyLane qnode.

``default.qubit`` runs with backprop and parameter broadcasting (the whole batch in one
broadcast tape); ``lightning.qubit`` with the adjoint method. PennyLane is imported here, never
at plugin import time (it takes seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from paralab_quantum.circuit import Angle, Circuit
from paralab_quantum.memory import check_statevector
from paralab_quantum.observables import Observable
from paralab_quantum.operations import OPERATIONS

DEVICES = {
    "pennylane": ("default.qubit", "backprop"),
    "lightning": ("lightning.qubit", "adjoint"),
}
"""paralab backend name -> (PennyLane device, differentiation method)."""

def make_qnode(circuit: Circuit, backend: str = "pennylane", *, output: str | None = None,
               diff_method: str | None = None, noise: Any = None,
               shots: int | None = None) -> Callable[[Any, Any], Any]:
    """A qnode ``f(x, weights)`` for ``circuit``; ``x`` is ``(batch, features)``.

    :param backend: ``pennylane`` (default.qubit, backprop) or ``lightning`` (lightning.qubit,
        adjoint).
    :param output: ``"expval"``, ``"var"`` (of the circuit's observables, default Z of each
        qubit), ``"probs"`` or ``"state"``; default the circuit's measurement.
    :param noise: a :class:`~paralab_quantum.density.Noise`: run on ``default.mixed`` with its
        channels after every gate on each of the gate's wires, or after every layer on every
        wire (``Noise(per="layer")``; ``"state"`` is then the density
        matrix) and its ``readout`` error on the measured outcomes
        (:class:`~paralab_quantum.readout.Readout`).
    :param shots: sample the measurements with that many shots (``diff_method``
        ``"parameter-shift"`` then gives PennyLane's shot-based gradients); ``None``: exact.
    :return: a function returning a ``(batch, outputs)`` torch tensor.
    """
    if backend not in DEVICES:
        raise ValueError(f"backend {backend!r} is not a PennyLane backend; valid: {sorted(DEVICES)}")
    check_statevector(circuit.n_qubits, bytes_per_amplitude=16, simulator=backend)
    import pennylane as qml

    from paralab_quantum.density import NoiseEvent
    from paralab_quantum.density import schedule as noise_schedule

    device_name, method = DEVICES[backend]
    channels = noise.channels() if noise is not None else []
    if noise is not None:
        device_name = "default.mixed"
    if noise is not None and noise.readout and output in (None, circuit.measurement):
        # default.mixed's readout_prob crashes in PennyLane 0.45.1 (a float where its measure
        # expects a list of channels): flip the outcomes as the torch simulator does
        import dataclasses

        from paralab_quantum.readout import Readout

        bare = dataclasses.replace(noise, readout=0.0)
        return Readout(circuit, noise.readout).wrap(lambda inner: make_qnode(
            inner, backend, diff_method=diff_method, noise=bare, shots=shots))
    device = qml.device(device_name, wires=circuit.n_qubits)
    pennylane_channels = {"depolarizing": qml.DepolarizingChannel,
                          "amplitude_damping": qml.AmplitudeDamping,
                          "phase_damping": qml.PhaseDamping}
    # the gates, and where the channels act (after each gate, or each layer, on which wires)
    schedule = circuit.program() if noise is None else noise_schedule(
        circuit.program(), noise, circuit.n_qubits)
    wires = list(range(circuit.n_qubits))
    output = output or circuit.measurement
    operations = {name: getattr(qml, op.pennylane) for name, op in OPERATIONS.items()}
    observables = [to_pennylane(o) for o in circuit.measured]

    @qml.qnode(device, interface="torch", diff_method=diff_method or method)
    def qnode(x: Any, angles: Any, weights: Any) -> Any:
        if circuit.amplitude:
            qml.AmplitudeEmbedding(x, wires=wires, pad_with=0.0, normalize=True)
        for gate in schedule:
            if isinstance(gate, NoiseEvent):  # the channels on one wire
                for name, strength in channels:
                    pennylane_channels[name](strength, wires=gate.wire)
                continue
            values = [_value(a, angles, weights) for a in gate.params]
            if len(values) > 1:  # PennyLane's Rot/U3 need one kind of number: constants too
                values = [torch.as_tensor(v, dtype=torch.float64) for v in values]
            word = OPERATIONS[gate.name].pauli_word
            if word is not None:  # a Pauli rotation PennyLane names by its word
                values.append(word)
            operations[gate.name](*values, wires=list(gate.wires))
        if output == "state":
            return qml.state()
        if output == "probs":
            return qml.probs(wires=wires)
        if output == "var":
            return [qml.var(o) for o in observables]
        return [qml.expval(o) for o in observables]

    if shots:
        qnode = qml.set_shots(qnode, shots=shots)

    def run(x: torch.Tensor | None, weights: torch.Tensor) -> torch.Tensor:
        angles = None
        if x is not None:
            x = x.reshape(x.shape[0], -1).to(torch.float64)
            circuit.check_features(x.shape[1], f"{backend} backend")
            if not circuit.amplitude and circuit.reads_inputs:
                angles = torch.stack(circuit.angle_terms(list(x.unbind(1))), 1)
        result = qnode(x, angles, weights)
        if isinstance(result, (list, tuple)):
            result = torch.stack(list(result), -1)
        if x is not None and result.dim() == 1:
            result = result[None]
        return result

    return run


def _value(angle: Angle, angles: Any, weights: Any) -> Any:
    """A gate parameter's value in the qnode: an embedding angle column, a weight, a constant."""
    if angle.source == "x":
        return angles[..., angle.index]
    if angle.source == "w":
        return weights[angle.index]
    return angle.value


def to_pennylane(observable: Observable) -> Any:
    """The same Hamiltonian in PennyLane: a ``LinearCombination`` of Pauli products (a single
    unit-weight Pauli string stays a plain operator)."""
    import pennylane as qml

    paulis = {"X": qml.PauliX, "Y": qml.PauliY, "Z": qml.PauliZ}
    coefficients, operators = [], []
    for term in observable.terms:
        factors = [paulis[letter](wire) for wire, letter in term.paulis]
        operator = (qml.Identity(0) if not factors else
                    factors[0] if len(factors) == 1 else qml.prod(*factors))
        coefficients.append(term.coefficient)
        operators.append(operator)
    if len(operators) == 1 and coefficients[0] == 1.0:
        return operators[0]
    return qml.ops.LinearCombination(coefficients, operators)
