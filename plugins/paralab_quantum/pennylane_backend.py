"""The same :class:`~paralab_quantum.circuit.Circuit` as a PennyLane qnode.

``default.qubit`` runs with backprop and parameter broadcasting (the whole batch in one
broadcast tape); ``lightning.qubit`` with the adjoint method. PennyLane is imported here, never
at plugin import time (it takes seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from paralab_quantum.circuit import Circuit
from paralab_quantum.memory import check_statevector

DEVICES = {
    "pennylane": ("default.qubit", "backprop"),
    "lightning": ("lightning.qubit", "adjoint"),
}
"""paralab backend name -> (PennyLane device, differentiation method)."""

_OPERATIONS = {
    "H": "Hadamard", "X": "PauliX", "Y": "PauliY", "Z": "PauliZ", "S": "S", "T": "T",
    "RX": "RX", "RY": "RY", "RZ": "RZ", "P": "PhaseShift",
    "CNOT": "CNOT", "CZ": "CZ", "SWAP": "SWAP", "CRZ": "CRZ",
}


def make_qnode(circuit: Circuit, backend: str = "pennylane", *, output: str | None = None,
               diff_method: str | None = None) -> Callable[[Any, Any], Any]:
    """A qnode ``f(x, weights)`` for ``circuit``; ``x`` is ``(batch, features)``.

    :param backend: ``pennylane`` (default.qubit, backprop) or ``lightning`` (lightning.qubit,
        adjoint).
    :param output: ``"expval"``, ``"probs"`` or ``"state"``; default the circuit's measurement.
    :return: a function returning a ``(batch, outputs)`` torch tensor.
    """
    if backend not in DEVICES:
        raise ValueError(f"backend {backend!r} is not a PennyLane backend; valid: {sorted(DEVICES)}")
    check_statevector(circuit.n_qubits, bytes_per_amplitude=16, simulator=backend)
    import pennylane as qml

    device_name, method = DEVICES[backend]
    device = qml.device(device_name, wires=circuit.n_qubits)
    program = circuit.program()
    wires = list(range(circuit.n_qubits))
    output = output or circuit.measurement
    operations = {name: getattr(qml, op) for name, op in _OPERATIONS.items()}

    @qml.qnode(device, interface="torch", diff_method=diff_method or method)
    def qnode(x: Any, angles: Any, weights: Any) -> Any:
        if circuit.amplitude:
            qml.AmplitudeEmbedding(x, wires=wires, pad_with=0.0, normalize=True)
        for gate in program:
            operation = operations[gate.name]
            if gate.angle is None:
                operation(wires=list(gate.wires))
                continue
            source = gate.angle.source
            if source == "x":
                value = angles[..., gate.angle.index]
            elif source == "w":
                value = weights[gate.angle.index]
            else:
                value = gate.angle.value
            operation(value, wires=list(gate.wires))
        if output == "state":
            return qml.state()
        if output == "probs":
            return qml.probs(wires=wires)
        return [qml.expval(qml.PauliZ(q)) for q in wires]

    def run(x: torch.Tensor | None, weights: torch.Tensor) -> torch.Tensor:
        angles = None
        if x is not None:
            x = x.reshape(x.shape[0], -1).to(torch.float64)
            circuit.check_features(x.shape[1], f"{backend} backend")
            if not circuit.amplitude and circuit.embedding is not None:
                angles = torch.stack(circuit.angle_terms(list(x.unbind(1))), 1)
        result = qnode(x, angles, weights)
        if isinstance(result, (list, tuple)):
            result = torch.stack(list(result), -1)
        if x is not None and result.dim() == 1:
            result = result[None]
        return result

    return run
