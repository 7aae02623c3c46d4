"""MNIST addition with N = 15 digits per number (sums of two 15-digit numbers, 2e15 values).

No distribution over the sum can be held, and DeepProbLog's exact engine does not get past
N = 2 here (N = 3: one query not compiled in 150 s). Top-k inference of the observed sum
(``inference = "topk"``, k = 8) keeps the partial sums of the digits decided so far, merged
(two survive each place: the carry), which is the exact P(observed sum). Full: MNIST
(PARALAB_DATA), 8,000 training images recombined into ``PAIRS`` examples of 30 images per
epoch, the LeNet of DeepProbLog's MNIST experiments, Adam 1e-3, batch 16. Quick: the same N = 15
on the embedded 8x8 digits with an MLP.
"""

from __future__ import annotations

from paralab_neurosymbolic.reproduction import addition_accuracy

PAIRS, EPOCHS, TEST_PAIRS = 8000, 3, 500


def reproduce(quick: bool) -> dict[str, float]:
    if quick:
        return addition_accuracy(15, quick=True, pairs=600, epochs=3, batch_size=16, lr=3e-3,
                                 inference="topk", top_k=8, test_pairs=100)
    return addition_accuracy(15, quick=False, pairs=PAIRS, epochs=EPOCHS, batch_size=16,
                             lr=1e-3, inference="topk", top_k=8, test_pairs=TEST_PAIRS)
