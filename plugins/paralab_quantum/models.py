"""Quantum models as plain ``torch.nn.Module`` s, so every protocol can train them.

* :class:`QuantumLayer`: a circuit with trainable weights on one backend (the native torch
  simulator, PennyLane ``default.qubit`` with backprop, or ``lightning.qubit`` with adjoint).
* :func:`vqc`: a variational quantum classifier, embedding -> ansatz -> Pauli-Z readout ->
  logits.
* :func:`hybrid`: classical layers -> quantum layer -> linear head; the classical front learns
  a projection, so any number of features fits a few qubits.

Both are ``nn.Sequential`` s ending in their head (``model.quantum`` names the quantum layer),
so few-shot methods that split off the linear head (ProtoNets, ANIL) take them too.

Federated, continual and few-shot protocols see an ``nn.Module`` with ``parameters()`` and
``state_dict()`` like any other: nothing quantum-specific leaks into them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from paralab import DatasetInfo
from paralab_quantum.choices import BACKENDS
from paralab_quantum.circuit import Ansatz, Circuit, CircuitError, Embedding
from paralab_quantum.memory import QubitMemoryError, check_statevector
from paralab_quantum.spec_circuit import build, n_qubits_of

if TYPE_CHECKING:
    from paralab import RunContext

PRECISIONS = {"single": torch.complex64, "double": torch.complex128}


class QuantumLayer(nn.Module):
    """A circuit whose ansatz weights are an ``nn.Parameter``; ``forward(x)`` returns the
    measured outputs ``(batch, circuit.n_outputs)``."""

    def __init__(self, circuit: Circuit, *, backend: str = "torch", precision: str = "single",
                 memory_limit: int | None = None, generator: torch.Generator | None = None,
                 noise: Any = None, shots: int = 0, diff_method: str = "backprop") -> None:
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
        noisy = noise is not None and (bool(noise.channels()) or bool(noise.readout))
        if noisy and backend == "lightning":
            raise ValueError("noise needs a density-matrix simulator: backend 'torch' (paralab's) "
                             "or 'pennylane' (default.mixed), not 'lightning'")
        if shots and diff_method != "parameter-shift":
            raise ValueError(f"shots = {shots} needs diff_method = 'parameter-shift' (a sampled "
                             "expectation has no backprop gradient)")
        if diff_method == "parameter-shift" and backend != "torch":
            raise ValueError(f"diff_method 'parameter-shift' runs on backend 'torch', not "
                             f"{backend!r}")
        if diff_method == "parameter-shift":
            from paralab_quantum.shots import ShotParameterShift

            self._run = ShotParameterShift(circuit, int(shots), noise=noise if noisy else None,
                                           memory_limit=memory_limit, generator=generator)
        elif backend == "torch" and noisy and not noise.channels():
            # readout error alone acts on the outcomes: the statevector simulator suffices
            from paralab_quantum.readout import Readout
            from paralab_quantum.simulator import TorchSimulator

            self._run = Readout(circuit, noise.readout).wrap(lambda inner: TorchSimulator(
                inner, dtype=PRECISIONS[precision], memory_limit=memory_limit))
        elif backend == "torch" and noisy:
            from paralab_quantum.density import DensityMatrixSimulator

            self._run: Any = DensityMatrixSimulator(circuit, noise, dtype=PRECISIONS[precision],
                                                    memory_limit=memory_limit)
        elif backend == "torch":
            from paralab_quantum.simulator import TorchSimulator

            self._run = TorchSimulator(circuit, dtype=PRECISIONS[precision],
                                       memory_limit=memory_limit)
        else:
            check_statevector(circuit.n_qubits, bytes_per_amplitude=16, simulator=backend,
                              limit_bytes=memory_limit)
            from paralab_quantum.pennylane_backend import make_qnode

            self._run = make_qnode(circuit, backend, noise=noise if noisy else None)

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


class DirectReadout(nn.Module):
    """Logits are a learned scale times the first ``n_classes`` outputs (needs an output per
    class: :meth:`check`, called by the model's ``validate(run)`` before training)."""

    def __init__(self, n_outputs: int, n_classes: int) -> None:
        super().__init__()
        self.n_outputs = n_outputs
        self.n_classes = n_classes
        self.scale = nn.Parameter(torch.tensor(3.0))

    def check(self) -> None:
        """:raises CircuitError: the circuit measures fewer outputs than there are classes."""
        if self.n_outputs < self.n_classes:
            raise CircuitError(
                f"readout 'direct' needs an output per class: {self.n_classes} classes but the "
                f"circuit measures {self.n_outputs}; use more qubits or readout 'linear'"
            )

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        if self.n_outputs < self.n_classes:  # never silently fewer logits than classes
            self.check()
        return self.scale * outputs[:, : self.n_classes]


def _readout(kind: str, n_outputs: int, n_classes: int) -> nn.Module:
    """``linear``: a linear layer on all outputs; ``direct``: :class:`DirectReadout`."""
    if kind == "linear":
        return nn.Linear(n_outputs, n_classes)
    if kind == "direct":
        return DirectReadout(n_outputs, n_classes)
    raise ValueError(f"readout {kind!r} is unknown; valid: linear, direct")


class _QuantumSequential(nn.Sequential):
    """An ``nn.Sequential`` (so few-shot methods that split off the linear head, such as
    ProtoNets and ANIL, take it like an MLP) that names its :class:`QuantumLayer`. Built
    like any ``nn.Sequential``, so slicing it works."""

    @property
    def quantum(self) -> QuantumLayer | None:
        return next((m for m in self if isinstance(m, QuantumLayer)), None)

    def validate(self, run: RunContext) -> None:
        """The run's data against the circuit, once the data and model are built and before
        training (the ``validate(run)`` convention); a ``ValueError`` rejects the spec."""
        self.check_fits(run.dataset.info)

    def check_fits(self, info: DatasetInfo) -> None:
        """:raises CircuitError: (a ``ValueError``) the data does not fit the model."""
        for module in self:
            if isinstance(module, DirectReadout):
                module.check()


class VariationalClassifier(_QuantumSequential):
    """Flatten -> :class:`QuantumLayer` -> readout."""

    def check_fits(self, info: DatasetInfo) -> None:
        """Also: no more input features than the embedding takes on the circuit's qubits (the
        simulators refuse wider inputs at every forward pass too)."""
        quantum = self.quantum
        assert quantum is not None
        quantum.circuit.check_features(info.n_features, f"model 'vqc' on dataset {info.name!r}")
        super().check_fits(info)


class ToAngles(nn.Module):
    """Squash features into rotation angles in (-pi, pi)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * math.pi


class HybridNetwork(_QuantumSequential):
    """Flatten -> classical front -> angles in (-pi, pi) -> :class:`QuantumLayer` -> linear
    head."""


def _layer(name: str, circuit: Circuit, backend: str, precision: str,
           memory_limit_gb: float, noise: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0),
           shots: int = 0, diff_method: str = "backprop", noise_per: str = "gate"
           ) -> QuantumLayer:
    limit = int(memory_limit_gb * 2**30) if memory_limit_gb else None
    channels = None
    if noise_per != "gate" and not any(noise[:3]):
        raise CircuitError(f"model {name!r} option noise_per = {noise_per!r} places the "
                           "noise_depolarizing / noise_amplitude_damping / noise_phase_damping "
                           "channels, but all are 0: set one above 0, or leave noise_per 'gate'")
    if any(noise):
        from paralab_quantum.density import Noise

        channels = Noise(*noise, per=noise_per)
    try:
        return QuantumLayer(circuit, backend=backend, precision=precision, memory_limit=limit,
                            noise=channels, shots=shots, diff_method=diff_method)
    except QubitMemoryError as error:
        raise QubitMemoryError(f"model {name!r} option n_qubits={circuit.n_qubits}: {error}") from None


def _replaced(model: str, **options: tuple[Any, Any]) -> None:
    """:raises CircuitError: an option the spec ``circuit`` replaces was set (it would do
    nothing)."""
    changed = [name for name, (value, default) in options.items() if value != default]
    if changed:
        raise CircuitError(f"model {model!r}: option circuit replaces {', '.join(changed)}; "
                           "leave them at their defaults or drop circuit")


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
    observables: Sequence[str] = (),
    readout: str = "linear",
    backend: str = "torch",
    precision: str = "single",
    memory_limit_gb: float = 0.0,
    noise_depolarizing: float = 0.0,
    noise_amplitude_damping: float = 0.0,
    noise_phase_damping: float = 0.0,
    noise_readout: float = 0.0,
    noise_per: str = "gate",
    shots: int = 0,
    diff_method: str = "backprop",
    circuit: Sequence[Any] = (),
) -> nn.Module:
    """A variational quantum classifier on ``info``'s flattened features.

    ``n_qubits`` 0 picks the fewest qubits that hold every feature (one per feature for the
    angle and ZZ embeddings, ``ceil(log2(features))`` for the amplitude embedding).
    ``observables`` (Pauli sums as text, e.g. ``["Z0 Z1", "0.5*X0 + 0.5*X1"]``) replace the
    per-qubit Z readout: one output each, their expectation (``measurement = "expval"``) or
    variance (``"var"``). A ``noise_*`` strength above 0 trains on the density-matrix
    simulator with that channel after every gate (``noise_per = "layer"``: after every circuit
    layer on every wire; :mod:`paralab_quantum.density`);
    ``noise_readout`` flips each measured bit with that probability
    (:mod:`paralab_quantum.readout`). ``diff_method = "parameter-shift"`` estimates each
    expectation from ``shots`` samples (0: exact) and its gradient by the parameter-shift rule
    (:mod:`paralab_quantum.shots`). Options are
    declared (and checked) in :mod:`paralab_quantum`; more features than the embedding takes,
    or a ``direct`` readout with fewer outputs than classes, is the model's
    ``validate(run)`` error, before any training.
    """
    if circuit:
        _replaced("vqc", embedding=(embedding, "angle"), layers=(layers, 2),
                  rotations=(tuple(rotations), ("RY", "RZ")), entangler=(entangler, "cnot_ring"))
        n = int(n_qubits) or max(n_qubits_of(circuit), info.n_features)
        gates, inputs = build(circuit, n)
        built = Circuit(n, None, None, gates, measurement=measurement,
                        observables=tuple(observables), inputs=inputs)
        quantum = _layer("vqc", built, backend, precision, memory_limit_gb,
                         (noise_depolarizing, noise_amplitude_damping, noise_phase_damping,
                          noise_readout), shots, diff_method, noise_per)
        return VariationalClassifier(nn.Flatten(), quantum,
                                     _readout(readout, built.n_outputs, info.n_classes))
    embed = Embedding(embedding, scale=input_scale, reps=reps)
    if not n_qubits:
        n_qubits = (
            max(1, math.ceil(math.log2(max(info.n_features, 1))))
            if embedding == "amplitude"
            else info.n_features
        )
    circuit = Circuit(int(n_qubits), embed, Ansatz(layers, tuple(rotations), entangler),
                      measurement=measurement, observables=tuple(observables))
    quantum = _layer("vqc", circuit, backend, precision, memory_limit_gb,
                     (noise_depolarizing, noise_amplitude_damping, noise_phase_damping,
                      noise_readout), shots, diff_method, noise_per)
    head = _readout(readout, circuit.n_outputs, info.n_classes)
    return VariationalClassifier(nn.Flatten(), quantum, head)


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
    observables: Sequence[str] = (),
    noise_depolarizing: float = 0.0,
    noise_amplitude_damping: float = 0.0,
    noise_phase_damping: float = 0.0,
    noise_readout: float = 0.0,
    noise_per: str = "gate",
    shots: int = 0,
    diff_method: str = "backprop",
    circuit: Sequence[Any] = (),
) -> nn.Module:
    """A hybrid network: ``Linear``+``ReLU`` per hidden width, a linear map to one angle per
    qubit, the quantum layer (angle embedding + ansatz), and a linear head on its Pauli-Z
    expectations (or on the expectations of ``observables``). Options are declared (and
    checked) in :mod:`paralab_quantum`."""
    if circuit:
        _replaced("hybrid", layers=(layers, 2), rotations=(tuple(rotations), ("RY", "RZ")),
                  entangler=(entangler, "cnot_ring"))
        gates, inputs = build(circuit, int(n_qubits))
        if not inputs:
            raise CircuitError("model 'hybrid' option circuit: no gate reads an input ('x'): "
                               "the classical front would feed nothing")
        built = Circuit(int(n_qubits), None, None, gates, observables=tuple(observables),
                        inputs=inputs)
    else:
        built = Circuit(int(n_qubits), Embedding("angle"),
                        Ansatz(layers, tuple(rotations), entangler),
                        observables=tuple(observables))
    circuit = built
    quantum = _layer("hybrid", circuit, backend, precision, memory_limit_gb,
                     (noise_depolarizing, noise_amplitude_damping, noise_phase_damping,
                      noise_readout), shots, diff_method, noise_per)
    front: list[nn.Module] = []
    width = info.n_features
    for size in hidden:
        front += [nn.Linear(width, int(size)), nn.ReLU()]
        width = int(size)
    front.append(nn.Linear(width, circuit.n_features))
    head = nn.Linear(circuit.n_outputs, info.n_classes)
    return HybridNetwork(nn.Flatten(), *front, ToAngles(), quantum, head)
