"""Quantum models as plain ``torch.nn.Module`` s, so every protocol can train them.

* :class:`QuantumLayer`: a circuit with trainable weights on one backend (the native torch
  simulator, PennyLane ``default.qubit`` with backprop, or ``lightning.qubit`` with adjoint).
* :func:`vqc`: a variational quantum classifier, embedding -> ansatz -> Pauli-Z readout ->
  logits.
* :func:`hybrid`: classical layers -> quantum layer -> linear head; the classical front learns
  a projection, so any number of features fits a few qubits.

Federated, continual and few-shot protocols see an ``nn.Module`` with ``parameters()`` and
``state_dict()`` like any other: nothing quantum-specific leaks into them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from paralab.data.shared import DatasetInfo
from paralab_quantum.circuit import Ansatz, Circuit, CircuitError, Embedding
from paralab_quantum.memory import QubitMemoryError, check_statevector

BACKENDS = ("torch", "pennylane", "lightning")
PRECISIONS = {"single": torch.complex64, "double": torch.complex128}


class QuantumLayer(nn.Module):
    """A circuit whose ansatz weights are an ``nn.Parameter``; ``forward(x)`` returns the
    measured outputs ``(batch, circuit.n_outputs)``."""

    def __init__(self, circuit: Circuit, *, backend: str = "torch", precision: str = "single",
                 memory_limit: int | None = None, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(
                f"backend {backend!r} is unknown; valid: {', '.join(BACKENDS)} (Qiskit runs a "
                "trained model through paralab_quantum.qiskit_backend: export, shots, noise)"
            )
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is unknown; valid: {', '.join(PRECISIONS)}")
        self.circuit = circuit
        self.backend = backend
        initial = (torch.rand(circuit.n_weights, generator=generator) * 2 - 1) * math.pi
        self.weights = nn.Parameter(initial)
        if backend == "torch":
            from paralab_quantum.simulator import TorchSimulator

            self._run: Any = TorchSimulator(circuit, dtype=PRECISIONS[precision],
                                            memory_limit=memory_limit)
        else:
            check_statevector(circuit.n_qubits, bytes_per_amplitude=16, simulator=backend,
                              limit_bytes=memory_limit)
            from paralab_quantum.pennylane_backend import make_qnode

            self._run = make_qnode(circuit, backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "torch":
            return self._run(x, self.weights).to(x.dtype)
        weights = self.weights.to(torch.float64)
        return self._run(x.to(torch.float64), weights).to(x.dtype)

    def to_qiskit(self, x: Sequence[float] | None = None) -> Any:
        """The trained circuit as a Qiskit ``QuantumCircuit`` (inputs free unless given)."""
        from paralab_quantum.qiskit_backend import to_qiskit

        return to_qiskit(self.circuit, x, self.weights.detach().cpu().tolist())

    def to_qasm3(self, x: Sequence[float] | None = None) -> str:
        """The trained circuit in OpenQASM 3, ready for hardware."""
        from paralab_quantum.qiskit_backend import to_qasm3

        return to_qasm3(self.circuit, x, self.weights.detach().cpu().tolist())


class Readout(nn.Module):
    """``direct``: logits are a learned scale times the first ``n_classes`` outputs (needs as many
    outputs as classes); ``linear``: a linear layer on all outputs."""

    def __init__(self, kind: str, n_outputs: int, n_classes: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "linear":
            self.linear = nn.Linear(n_outputs, n_classes)
        elif kind == "direct":
            if n_outputs < n_classes:
                raise ValueError(
                    f"readout 'direct' needs an output per class: {n_classes} classes but the "
                    f"circuit measures {n_outputs}; use more qubits or readout 'linear'"
                )
            self.n_classes = n_classes
            self.scale = nn.Parameter(torch.tensor(3.0))
        else:
            raise ValueError(f"readout {kind!r} is unknown; valid: linear, direct")

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return self.linear(outputs)
        return self.scale * outputs[:, : self.n_classes]


class VariationalClassifier(nn.Module):
    """Flatten -> :class:`QuantumLayer` -> :class:`Readout`."""

    def __init__(self, quantum: QuantumLayer, readout: Readout) -> None:
        super().__init__()
        self.quantum = quantum
        self.readout = readout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.quantum(x.reshape(x.shape[0], -1)))


class HybridNetwork(nn.Module):
    """Classical front -> angles in (-pi, pi) -> :class:`QuantumLayer` -> linear head."""

    def __init__(self, front: nn.Module, quantum: QuantumLayer, head: nn.Module) -> None:
        super().__init__()
        self.front = front
        self.quantum = quantum
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = torch.tanh(self.front(x.reshape(x.shape[0], -1))) * math.pi
        return self.head(self.quantum(angles))


def _layer(name: str, circuit: Circuit, backend: str, precision: str,
           memory_limit_gb: float) -> QuantumLayer:
    limit = int(memory_limit_gb * 2**30) if memory_limit_gb else None
    try:
        return QuantumLayer(circuit, backend=backend, precision=precision, memory_limit=limit)
    except QubitMemoryError as error:
        raise QubitMemoryError(f"model {name!r} option n_qubits={circuit.n_qubits}: {error}") from None
    except (CircuitError, ValueError) as error:
        raise ValueError(f"model {name!r}: {error}") from None


def vqc(
    info: DatasetInfo,
    n_qubits: int = 0,
    layers: int = 2,
    embedding: str = "angle",
    rotations: Sequence[str] = ("RY", "RZ"),
    entangler: str = "cnot_ring",
    input_scale: float = 1.0,
    reps: int = 2,
    measurement: str = "expval",
    readout: str = "linear",
    backend: str = "torch",
    precision: str = "single",
    memory_limit_gb: float = 0.0,
) -> nn.Module:
    """A variational quantum classifier on ``info``'s flattened features.

    ``n_qubits`` 0 picks the fewest qubits that hold every feature (one per feature for the
    angle and ZZ embeddings, ``ceil(log2(features))`` for the amplitude embedding). More
    features than the embedding takes is an error, raised here, before any training.
    """
    try:
        embed = Embedding(embedding, scale=input_scale, reps=reps)
        if not n_qubits:
            n_qubits = (
                max(1, math.ceil(math.log2(max(info.n_features, 1))))
                if embedding == "amplitude"
                else info.n_features
            )
        circuit = Circuit(int(n_qubits), embed, Ansatz(layers, tuple(rotations), entangler),
                          measurement=measurement)
        circuit.check_features(info.n_features, f"model 'vqc' on dataset {info.name!r}")
    except CircuitError as error:
        raise ValueError(str(error) if str(error).startswith("model") else f"model 'vqc': {error}") from None
    quantum = _layer("vqc", circuit, backend, precision, memory_limit_gb)
    return VariationalClassifier(quantum, Readout(readout, circuit.n_outputs, info.n_classes))


def hybrid(
    info: DatasetInfo,
    hidden: Sequence[int] = (16,),
    n_qubits: int = 4,
    layers: int = 2,
    rotations: Sequence[str] = ("RY", "RZ"),
    entangler: str = "cnot_ring",
    backend: str = "torch",
    precision: str = "single",
    memory_limit_gb: float = 0.0,
) -> nn.Module:
    """A hybrid network: ``Linear``+``ReLU`` per hidden width, a linear map to one angle per
    qubit, the quantum layer (angle embedding + ansatz), and a linear head on its Pauli-Z
    expectations."""
    try:
        circuit = Circuit(int(n_qubits), Embedding("angle"),
                          Ansatz(layers, tuple(rotations), entangler))
    except CircuitError as error:
        raise ValueError(f"model 'hybrid': {error}") from None
    quantum = _layer("hybrid", circuit, backend, precision, memory_limit_gb)
    front: list[nn.Module] = []
    width = info.n_features
    for size in hidden:
        front += [nn.Linear(width, int(size)), nn.ReLU()]
        width = int(size)
    front.append(nn.Linear(width, circuit.n_qubits))
    return HybridNetwork(nn.Sequential(*front), quantum, nn.Linear(circuit.n_outputs, info.n_classes))
