"""Shared by papers/manhaeve2018_deepproblog, papers/mnist_addition_n4 and
papers/mnist_addition_n15: one MNIST-addition run.

The real data is the MNIST test split under $PARALAB_DATA/mnist (the only MNIST split stored
here), divided by paralab's loader into 8,000 training and 2,000 test images; the papers train on
the 60,000 training images and test on the 10,000 test images. Without PARALAB_DATA (or in quick
mode) the embedded 8x8 digits stand in.
"""

from __future__ import annotations

import os
from typing import Any


def addition_accuracy(
    digits_per_number: int,
    *,
    quick: bool,
    pairs: int = 0,
    epochs: int = 1,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    inference: str = "exact",
    top_k: int = 64,
    test_pairs: int = 0,
) -> dict[str, float]:
    """Sum and digit accuracy of one ``addition`` run (``quick``: digits, an MLP)."""
    import paralab

    real = bool(os.environ.get("PARALAB_DATA")) and not quick
    # the paper's network (DeepProbLog's MNIST LeNet) on MNIST; an MLP on the 8x8 digits
    model: dict[str, Any] = {"name": "lenet"} if real else {"name": "mlp", "hidden": [128]}
    result = paralab.run({
        "name": f"addition-n{digits_per_number}",
        "dataset": "mnist" if real else "digits",
        "model": model,
        "protocol": {"name": "addition", "digits_per_number": digits_per_number,
                     "pairs": pairs, "epochs": epochs, "batch_size": batch_size,
                     "inference": inference, "top_k": top_k, "test_pairs": test_pairs},
        "method": {"name": "adam", "lr": lr},
        "output": None,
        "seed": seed,
    })
    prefix = f"N{digits_per_number}"
    return {
        f"{prefix}/sum_accuracy": float(result.metrics["test/sum_accuracy"]),
        f"{prefix}/digit_accuracy": float(result.metrics["test/accuracy"]),
        f"{prefix}/train_seconds": float(sum(p["metrics"]["train/seconds"] for p in result.phases)),
    }
