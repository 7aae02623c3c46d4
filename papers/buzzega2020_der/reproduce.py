"""Reproduce the Seq-MNIST rows of Buzzega et al. 2020, "Dark Experience for General Continual
Learning: a Strong, Simple Baseline" (NeurIPS 2020, arXiv 2004.07211, Table 2): ER, DER and
DER++ with buffers of 200 and 500, Class-IL and Task-IL, beside SGD (the lower bound) and
JOINT (the upper bound), with paralab.

Seq-MNIST: the ten digits in five experiences (0/1, 2/3, ..., 8/9), one epoch each, batches of
10, the paper's MLP (784-100-100-10) and each method's hyper-parameters from the authors'
code (aimagelab/mammoth, ``utils/best_args.py``, ``seq-mnist``: learning rate, memory
minibatch, alpha, beta). Task-IL trains exactly as Class-IL (all ten units, ``heads =
"shared"``) and masks the outputs to the task's two units at evaluation, as mammoth does.

Differences (stated in paper.toml's ``data``): only the official 10k MNIST test images exist
here (8k train / 2k test, stratified) against the paper's 60k / 10k, so each task trains about
160 steps instead of about 1,200; paralab's ER updates its reservoir memory when an experience
ends (mammoth's at every step); paralab's DER is Avalanche's variant (a class-balanced memory
whose logits are stored when each row's experience ends, one memory batch for both DER++
terms) where mammoth stores logits on the fly in a reservoir and draws two batches.

Each value is a run's ``average_accuracy`` (final accuracy averaged over the five
experiences), averaged over seeds.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

import torch

import paralab

SCENARIOS = {
    "class_il": {"scenario": "class_incremental"},
    "task_il": {"scenario": "task_incremental"},
}

METHODS: dict[str, dict[str, Any]] = {
    "sgd": {"name": "naive", "lr": 0.03},
    "joint": {"name": "joint", "lr": 0.03},
    "er_200": {"name": "replay", "buffer_size": 200, "policy": "reservoir", "lr": 0.01,
               "memory_batch_size": 10},
    "er_500": {"name": "replay", "buffer_size": 500, "policy": "reservoir", "lr": 0.1,
               "memory_batch_size": 10},
    "der_200": {"name": "der", "buffer_size": 200, "alpha": 0.2, "beta": 0.0, "lr": 0.03,
                "memory_batch_size": 10},
    "der_500": {"name": "der", "buffer_size": 500, "alpha": 1.0, "beta": 0.0, "lr": 0.03,
                "memory_batch_size": 128},
    "derpp_200": {"name": "der", "buffer_size": 200, "alpha": 0.2, "beta": 1.0, "lr": 0.03,
                  "memory_batch_size": 128},
    "derpp_500": {"name": "der", "buffer_size": 500, "alpha": 1.0, "beta": 0.5, "lr": 0.03,
                  "memory_batch_size": 10},
}
"""The authors' seq-mnist settings (mammoth ``best_args``), as paralab methods: SGD with no
momentum, batch 10, one epoch."""


def spec(method: dict[str, Any], scenario: dict[str, Any], seed: int) -> dict[str, Any]:
    return {
        "name": "buzzega2020-der",
        "dataset": "mnist",
        "model": {"name": "mlp", "hidden": [100, 100]},
        "protocol": {
            "name": "continual",
            "experiences": 5,
            "epochs": 1,
            "batch_size": 10,
            "shuffle_classes": False,
            "forward_transfer": False,
            "plot": False,
            **scenario,
        },
        "method": {**method, "heads": "shared"},
        "metrics": ["accuracy"],
        "output": None,
        "seed": seed,
    }


def reproduce(quick: bool = False) -> dict[str, float]:
    """``method/scenario`` -> average accuracy. Quick: 1 seed; full: 5 seeds (the paper: 10)."""
    if not os.environ.get("PARALAB_DATA"):
        raise RuntimeError(
            "buzzega2020_der needs the MNIST test files: set PARALAB_DATA to the data folder")
    torch.set_num_threads(int(os.environ.get("PARALAB_THREADS", "2")))
    seeds = [0] if quick else [0, 1, 2, 3, 4]
    ours: dict[str, float] = {}
    for name, method in METHODS.items():
        for scenario_name, scenario in SCENARIOS.items():
            values = [paralab.run(spec(method, scenario, seed)).metrics["average_accuracy"]
                      for seed in seeds]
            ours[f"{name}/{scenario_name}"] = statistics.mean(values)
    return ours
