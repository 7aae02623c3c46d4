"""Diagnostics a quantum-ML researcher asks for before training.

* :func:`gradient_variance`: the barren-plateau probe (McClean et al. 2018): the variance, over
  uniformly random weights, of ``d<H>/dw_0`` for the hardware-efficient ansatz, on a grid of
  qubit counts and depths. Exponential decay in the qubits (for a global cost) is the plateau.
* :func:`expressibility`: Sim et al. 2019: the KL divergence between the distribution of
  fidelities ``|<psi(a)|psi(b)>|^2`` of random-weight state pairs and the Haar one,
  ``P(F) = (N - 1)(1 - F)**(N - 2)`` (``N = 2**n``), on ``bins`` histogram bins. Small: the
  circuit covers the state space like Haar states; large: it reaches few states.
* :func:`target_alignment`: kernel-target alignment (Cristianini et al. 2002; Hubregtsen et al.
  2022), ``<K, y y^T>_F / (||K||_F ||y y^T||_F)`` with labels +-1, differentiable in ``K``: the
  objective of a trainable kernel (:func:`train_alignment` maximises it over an embedding's
  input scale by gradient ascent).
* :func:`projected_kernel`: Huang et al. 2021's projected quantum kernel
  ``exp(-gamma * sum_q ||rho_q(x) - rho_q(y)||_F**2)`` from each qubit's reduced density matrix.

Everything runs on the batched torch statevector simulator in complex128.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from paralab_quantum.circuit import Ansatz, Circuit, Embedding
from paralab_quantum.simulator import TorchSimulator


def _ansatz_circuit(n_qubits: int, depth: int, observable: str) -> Circuit:
    word = {"global": " ".join(f"Z{q}" for q in range(n_qubits)), "local": "Z0 Z1"
            if n_qubits > 1 else "Z0"}[observable]
    return Circuit(n_qubits, None, Ansatz(depth, ("RY", "RZ"), "cnot_chain"),
                   observables=(word,))


def gradient_variance(qubits: Sequence[int], depths: Sequence[int], *, samples: int = 200,
                      observable: str = "global", seed: int = 0
                      ) -> dict[tuple[int, int], float]:
    """``{(n_qubits, depth): Var_w[d<H>/dw_0]}`` over ``samples`` uniform weights in
    ``[0, 2 pi)``; ``observable`` ``global`` (Z on every qubit) or ``local`` (Z0 Z1)."""
    if observable not in ("global", "local"):
        raise ValueError(f"observable must be 'global' or 'local', got {observable!r}")
    generator = torch.Generator().manual_seed(seed)
    result = {}
    for n in qubits:
        for depth in depths:
            circuit = _ansatz_circuit(n, depth, observable)
            simulator = TorchSimulator(circuit, dtype=torch.complex128)
            grads = []
            for _ in range(samples):
                w = (torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64)
                     * 2 * math.pi).requires_grad_(True)
                value, = torch.autograd.grad(simulator(None, w).sum(), w)
                grads.append(value[0])
            result[(n, depth)] = float(torch.stack(grads).var())
    return result


def haar_fidelity_density(fidelity: torch.Tensor, n_qubits: int) -> torch.Tensor:
    """The Haar-random fidelity density ``(N - 1)(1 - F)**(N - 2)``."""
    size = 2**n_qubits
    return (size - 1) * (1 - fidelity) ** (size - 2)


def expressibility(circuit: Circuit, *, samples: int = 2000, bins: int = 75,
                   seed: int = 0) -> float:
    """Sim et al.'s expressibility: ``KL(P_circuit(F) || P_Haar(F))`` on ``bins`` bins of
    ``[0, 1]`` from ``samples`` pairs of uniform random weights (inputs: none)."""
    if circuit.reads_inputs:
        raise ValueError("expressibility samples weights only: use a circuit without inputs")
    generator = torch.Generator().manual_seed(seed)
    simulator = TorchSimulator(circuit, dtype=torch.complex128)
    states = []
    for _ in range(2 * samples):
        w = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 2 * math.pi
        states.append(simulator.state(None, w)[0])
    psi = torch.stack(states).reshape(samples, 2, -1)
    fidelity = (psi[:, 0].conj() * psi[:, 1]).sum(-1).abs().square().clamp(0, 1)
    return kl_to_haar(fidelity, circuit.n_qubits, bins)


def kl_to_haar(fidelity: torch.Tensor, n_qubits: int, bins: int = 75) -> float:
    """KL divergence of the fidelities' histogram from the Haar distribution (its exact bin
    masses ``(1 - a)**(N-1) - (1 - b)**(N-1)``), empty bins contributing 0."""
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    counts = torch.histc(fidelity.to(torch.float64), bins=bins, min=0, max=1)
    p = counts / counts.sum()
    size = 2**n_qubits
    q = (1 - edges[:-1]) ** (size - 1) - (1 - edges[1:]) ** (size - 1)
    mask = p > 0
    return float((p[mask] * (p[mask] / q[mask].clamp_min(1e-300)).log()).sum())


def target_alignment(gram: torch.Tensor, labels: torch.Tensor, *,
                     rescale_class_labels: bool = False) -> torch.Tensor:
    """Kernel-target alignment of ``gram`` ``(m, m)`` with binary ``labels`` (any two values:
    mapped to -1, +1), differentiable. ``rescale_class_labels`` divides each label by its
    class's size (PennyLane's default: unbalanced classes weigh alike)."""
    values = labels.unique()
    if values.numel() != 2:
        raise ValueError(f"target alignment needs two classes, got {values.numel()}")
    y = torch.where(labels == values[1], 1.0, -1.0).to(gram.dtype)
    if rescale_class_labels:
        y = y / torch.where(labels == values[1], (labels == values[1]).sum(),
                            (labels != values[1]).sum()).to(gram.dtype)
    target = y[:, None] * y[None, :]
    return (gram * target).sum() / (gram.norm() * target.norm())


def fidelity_gram(circuit: Circuit, a: torch.Tensor, b: torch.Tensor | None = None,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """``|<phi(a_i)|phi(b_j)>|^2`` for ``circuit``'s states, differentiable in the inputs."""
    simulator = TorchSimulator(circuit, dtype=torch.complex128)
    left = simulator.state(a, weights)
    right = left if b is None else simulator.state(b, weights)
    return (left.conj() @ right.T).abs().square()


def train_alignment(x: torch.Tensor, labels: torch.Tensor, *, embedding: str = "angle",
                    reps: int = 1, steps: int = 30, lr: float = 0.1,
                    scale: float = 1.0) -> tuple[float, float, float]:
    """A trainable kernel: the fidelity kernel of ``Embedding(embedding)`` on inputs
    ``scale * x`` with ``scale`` learned by gradient ascent on the alignment (Adam). Returns
    ``(alignment before, alignment after, learned scale)``."""
    x = x.to(torch.float64)
    circuit = Circuit(x.shape[1], Embedding(embedding, reps=reps), None)
    log_scale = torch.tensor(math.log(scale), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([log_scale], lr=lr)
    first = None
    for _ in range(steps):
        alignment = target_alignment(fidelity_gram(circuit, x * log_scale.exp()), labels)
        first = float(alignment.detach()) if first is None else first
        optimizer.zero_grad()
        (-alignment).backward()
        optimizer.step()
    with torch.no_grad():
        last = float(target_alignment(fidelity_gram(circuit, x * log_scale.exp()), labels))
    return float(first), last, float(log_scale.detach().exp())


def reduced_density_matrices(states: torch.Tensor, n_qubits: int) -> torch.Tensor:
    """Each qubit's reduced density matrix ``(batch, n, 2, 2)`` of statevectors
    ``(batch, 2**n)`` (wire 0 the most significant bit)."""
    batch = states.shape[0]
    tensor = states.reshape(batch, *([2] * n_qubits))
    out = []
    for q in range(n_qubits):
        moved = tensor.movedim(1 + q, 1).reshape(batch, 2, -1)
        out.append(moved @ moved.conj().mT)
    return torch.stack(out, 1)


def projected_kernel(circuit: Circuit, a: torch.Tensor, b: torch.Tensor | None = None, *,
                     gamma: float = 1.0, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Huang et al.'s projected quantum kernel between the rows of ``a`` and ``b``."""
    simulator = TorchSimulator(circuit, dtype=torch.complex128)
    n = circuit.n_qubits
    left = reduced_density_matrices(simulator.state(a, weights), n)
    right = left if b is None else reduced_density_matrices(simulator.state(b, weights), n)
    difference = left[:, None] - right[None, :]
    distance = difference.abs().square().sum((-1, -2, -3))
    return torch.exp(-gamma * distance)


__all__ = ["expressibility", "fidelity_gram", "gradient_variance", "haar_fidelity_density",
           "kl_to_haar", "projected_kernel", "reduced_density_matrices", "target_alignment",
           "train_alignment"]
