"""Manhaeve et al. 2018: single-digit MNIST addition learnt from sums only.

Full: MNIST (PARALAB_DATA), the 8,000 training images recombined into 12,000 pairs per epoch,
the paper's LeNet, Adam 1e-3, batch 8, 3 epochs. Quick: the embedded 8x8 digits (718 pairs), an
MLP, 3 epochs.
"""

from __future__ import annotations

from paralab_neurosymbolic.reproduction import addition_accuracy


def reproduce(quick: bool) -> dict[str, float]:
    if quick:
        return addition_accuracy(1, quick=True, epochs=3, batch_size=16, lr=3e-3)
    return addition_accuracy(1, quick=False, pairs=12000, epochs=3, batch_size=8, lr=1e-3)
