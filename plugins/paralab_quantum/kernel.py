"""The fidelity quantum kernel ``k(x, y) = |<phi(x)|phi(y)>|^2`` from statevectors.

Each point is simulated once (O(N) simulations, batched in one pass of the torch simulator),
then the whole Gram matrix is one complex matrix product and an absolute square. A
circuit-per-pair kernel costs O(N^2) simulations: qiskit-machine-learning was 50x slower before
it cached statevectors (#547), and its ``FidelityStatevectorKernel`` still builds each state
with one Qiskit ``Statevector`` per point. The parity test checks this against it to 1e-6.
"""

from __future__ import annotations

import math

import torch

from paralab_quantum.circuit import Circuit, CircuitError, Embedding
from paralab_quantum.memory import check_statevector
from paralab_quantum.simulator import TorchSimulator

PRECISIONS = {"single": torch.complex64, "double": torch.complex128}


class FidelityKernel:
    """A fidelity kernel of an embedding circuit (by default Qiskit's ``zz_feature_map`` with
    2 repetitions and full entanglement, the feature map of Havlicek et al. 2019).

    :param n_qubits: qubits; 0 means one per feature (``ceil(log2)`` for ``amplitude``),
        decided at the first call.
    :param chunk: rows simulated per pass, to bound memory on large sets.
    """

    def __init__(self, embedding: str = "zz", *, n_qubits: int = 0, reps: int = 2,
                 entanglement: str = "full", scale: float = 1.0, rotation: str = "RY",
                 precision: str = "double", chunk: int = 4096) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is unknown; valid: {', '.join(PRECISIONS)}")
        self.embedding = Embedding(embedding, rotation=rotation, scale=scale, reps=reps,
                                   entanglement=entanglement)
        self.n_qubits = int(n_qubits)
        self.dtype = PRECISIONS[precision]
        self.chunk = int(chunk)
        self._simulator: TorchSimulator | None = None

    def simulator(self, n_features: int) -> TorchSimulator:
        if self._simulator is None:
            n_qubits = self.n_qubits or (
                max(1, math.ceil(math.log2(max(n_features, 1))))
                if self.embedding.kind == "amplitude"
                else n_features
            )
            circuit = Circuit(n_qubits, self.embedding, ansatz=None, measurement="probs")
            circuit.check_features(n_features, "fidelity kernel")
            self._simulator = TorchSimulator(circuit, dtype=self.dtype)
        elif n_features > self._simulator.circuit.n_features:
            raise CircuitError(
                f"fidelity kernel: built for {self._simulator.circuit.n_features} features, "
                f"got {n_features}"
            )
        return self._simulator

    def states(self, x: torch.Tensor) -> torch.Tensor:
        """The embedded statevectors ``(N, 2**n)``, simulated ``chunk`` rows per pass."""
        x = torch.as_tensor(x)
        x = x.reshape(x.shape[0], -1)
        simulator = self.simulator(x.shape[1])
        check_statevector(simulator.n, batch=x.shape[0],
                          bytes_per_amplitude=simulator.bytes_per_amplitude,
                          simulator="fidelity kernel", device=str(x.device))
        with torch.no_grad():
            parts = [simulator.state(x[i : i + self.chunk], None)
                     for i in range(0, x.shape[0], self.chunk)]
        return torch.cat(parts) if parts else torch.empty(0, 2**simulator.n, dtype=self.dtype)

    def gram(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        """``K[i, j] = |<phi(a_i)|phi(b_j)>|^2`` (``b`` defaults to ``a``), real, on a's device."""
        left = self.states(a)
        right = left if b is None else self.states(torch.as_tensor(b).to(left.device))
        overlaps = left.conj() @ right.T
        return torch.view_as_real(overlaps).square().sum(-1)

    __call__ = gram
