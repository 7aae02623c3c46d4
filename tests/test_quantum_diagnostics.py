"""Diagnostics: barren-plateau probe, expressibility, kernel-target alignment (a trainable
kernel), projected quantum kernel.

* gradient variance: each sampled gradient equals PennyLane's (default.qubit backprop) at the
  same weights (1e-10), and for a global cost the variance decays with the qubits (McClean et
  al. 2018) while a shallow local one's does not (Cerezo et al. 2021);
* expressibility: Haar-random states (Qiskit's ``random_statevector``) give a KL near 0, an idle
  circuit (one RZ on |0>) a large one, a deep hardware-efficient ansatz a small one;
* alignment equals PennyLane's ``qml.kernels.target_alignment`` on the same kernel (1e-10) and
  training the input scale raises it;
* the projected kernel equals one computed from Qiskit's ``partial_trace`` (1e-10).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from paralab_quantum.circuit import Ansatz, Circuit, Embedding
from paralab_quantum.diagnostics import (
    _ansatz_circuit,
    expressibility,
    fidelity_gram,
    gradient_variance,
    kl_to_haar,
    projected_kernel,
    target_alignment,
    train_alignment,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_gradient_samples_equal_pennylane_and_global_costs_plateau():
    pytest.importorskip("pennylane")
    from paralab_quantum import pennylane_backend

    circuit = _ansatz_circuit(3, 2, "global")
    qnode = pennylane_backend.make_qnode(circuit)
    from paralab_quantum.simulator import TorchSimulator

    simulator = TorchSimulator(circuit, dtype=torch.complex128)
    for seed in range(3):
        w = (torch.rand(circuit.n_weights, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64) * 2 * math.pi).requires_grad_(True)
        ours, = torch.autograd.grad(simulator(None, w).sum(), w)
        theirs, = torch.autograd.grad(qnode(None, w).sum(), w)
        assert (ours - theirs).abs().max().item() < 1e-10
    # shallow (depth 2): a global cost plateaus with the qubits, a local one does not
    # (Cerezo et al. 2021); measured 0.116 -> 0.010 and 0.116 -> 0.108 at 150 samples
    global_ = gradient_variance([2, 6], [2], samples=150, observable="global")
    local = gradient_variance([2, 6], [2], samples=150, observable="local")
    assert global_[(6, 2)] < global_[(2, 2)] / 4
    assert local[(6, 2)] > 4 * global_[(6, 2)]
    assert all(v > 0 for v in global_.values())


def test_expressibility_against_haar_states_and_limits():
    qiskit = pytest.importorskip("qiskit.quantum_info")
    n, samples = 2, 1500
    states = np.stack([qiskit.random_statevector(2**n, seed=s).data for s in range(2 * samples)])
    psi = torch.as_tensor(states).reshape(samples, 2, -1)
    haar = kl_to_haar((psi[:, 0].conj() * psi[:, 1]).sum(-1).abs().square(), n)
    idle = expressibility(Circuit(1, None, Ansatz(1, ("RZ",), "none")), samples=300)
    deep = expressibility(Circuit(n, None, Ansatz(4, ("RY", "RZ"), "cnot_chain")),
                          samples=samples)
    shallow = expressibility(Circuit(n, None, Ansatz(1, ("RX",), "none")), samples=samples)
    assert haar < 0.1 and deep < 0.1  # sampling noise of 75 bins at 1500 pairs
    assert idle > 2.0  # every fidelity is 1: one bin
    assert shallow > 2 * deep


def test_alignment_equals_pennylane_and_training_raises_it():
    qml = pytest.importorskip("pennylane")
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(16, 2, generator=generator, dtype=torch.float64) * 2
    labels = (x[:, 0] > x[:, 1]).long()
    circuit = Circuit(2, Embedding("angle"), None)
    gram = fidelity_gram(circuit, x)
    index = {tuple(row.tolist()): i for i, row in enumerate(x)}

    def kernel(a, b):
        return gram[index[tuple(np.asarray(a).tolist())], index[tuple(np.asarray(b).tolist())]]

    for rescale in (False, True):
        ours = target_alignment(gram, labels, rescale_class_labels=rescale)
        theirs = qml.kernels.target_alignment(x.numpy(), (2 * labels - 1).numpy(), kernel,
                                              rescale_class_labels=rescale)
        assert abs(float(ours) - float(theirs)) < 1e-10
    before, after, scale = train_alignment(x, labels, steps=25, lr=0.2, scale=0.2)
    assert after > before + 0.02 and scale != pytest.approx(0.2)


def test_projected_kernel_equals_qiskit_partial_traces():
    qiskit = pytest.importorskip("qiskit.quantum_info")
    from paralab_quantum.simulator import TorchSimulator

    circuit = Circuit(3, Embedding("zz", reps=1), Ansatz(1))
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, generator=generator, dtype=torch.float64)
    w = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64)
    ours = projected_kernel(circuit, x, gamma=0.7, weights=w)
    states = TorchSimulator(circuit, dtype=torch.complex128).state(x, w).numpy()
    reduced = []
    for state in states:
        sv = qiskit.Statevector(state)  # Qiskit is little-endian: paralab wire q is qubit n-1-q
        reduced.append([qiskit.partial_trace(sv, [k for k in range(3) if k != 2 - q]).data
                        for q in range(3)])
    reduced = np.asarray(reduced)
    reference = np.exp(-0.7 * np.abs(reduced[:, None] - reduced[None]).__pow__(2).sum((2, 3, 4)))
    assert np.abs(ours.numpy() - reference).max() < 1e-10
    assert ours.diagonal().allclose(torch.ones(4, dtype=torch.float64))
    assert ours.min() < 0.999  # different inputs: different kernels
