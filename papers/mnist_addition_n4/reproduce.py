"""MNIST addition with N = 4 digits per number (sums 0..19998), exact inference.

The sum distribution of 8 digits is computed exactly as a chain of batched convolutions (10**8
worlds never enumerated). Full: MNIST (PARALAB_DATA), 8,000 training images recombined into
``PAIRS`` examples per epoch, the LeNet of DeepProbLog's MNIST
experiments, Adam 1e-3, batch 8. Quick: N = 2 on the embedded digits (the
N = 4 task is not learnable from 1,437 8x8 images in seconds), reported as N2.
"""

from __future__ import annotations

from paralab_neurosymbolic.reproduction import addition_accuracy

PAIRS, EPOCHS = 8000, 3


def reproduce(quick: bool) -> dict[str, float]:
    if quick:
        return addition_accuracy(2, quick=True, pairs=1500, epochs=2, batch_size=16, lr=3e-3)
    return addition_accuracy(4, quick=False, pairs=PAIRS, epochs=EPOCHS, batch_size=8, lr=1e-3)
