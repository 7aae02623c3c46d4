"""Reproduce the split-MNIST table of van de Ven and Tolias, "Three scenarios for continual
learning" (Table 3 of arXiv 1809.10635v2; Table 2 of arXiv 1904.07734) with paralab.

Split MNIST: the ten digits in five experiences (0/1, 2/3, 4/5, 6/7, 8/9), performed as
Task-IL (task known: each task's two output units), Domain-IL (task unknown, the label is
"first or second digit of the pair": ``domain = "split"``) and Class-IL (task unknown, all ten
units). The paper's network (784-400-400-10 MLP, ReLU) and optimiser (Adam, lr 0.001, batch
128); fewer iterations than its 2,000 per task because only the official 10k test images are
available here (80% train, 20% test), and exemplar replay stands in for its generative replay.

Every run is one ``paralab.run`` of the ``continual`` protocol; the value reported for a
method and scenario is the run's ``average_accuracy`` (final accuracy averaged over the five
experiences), averaged over seeds.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

import torch

import paralab

SCENARIOS = {
    "task_il": {"scenario": "task_incremental"},
    "domain_il": {"scenario": "domain_incremental", "domain": "split"},
    "class_il": {"scenario": "class_incremental"},
}
ADAM = {"optimizer": "adam", "lr": 0.001}
METHODS: dict[str, dict[str, Any]] = {
    "none": {"name": "naive", **ADAM},
    "ewc": {"name": "ewc", "ewc_lambda": 1000.0, "fisher_batch_size": 128, **ADAM},
    "online_ewc": {"name": "online_ewc", "ewc_lambda": 1000.0, "decay": 1.0,
                   "fisher_batch_size": 128, **ADAM},
    "si": {"name": "si", "si_lambda": 1.0, "damping": 0.1, **ADAM},
    "lwf": {"name": "lwf", "alpha": 1.0, "temperature": 2.0, **ADAM},
    "replay": {"name": "replay", "buffer_size": 1000, "policy": "class_balanced", **ADAM},
    "joint": {"name": "joint", **ADAM},
}


def spec(method: dict[str, Any], scenario: dict[str, Any], epochs: int, seed: int) -> dict[str, Any]:
    return {
        "name": "three-scenarios",
        "dataset": "mnist",
        "model": {"name": "mlp", "hidden": [400, 400]},
        "protocol": {
            "name": "continual",
            "experiences": 5,
            "epochs": epochs,
            "batch_size": 128,
            "shuffle_classes": False,
            "forward_transfer": False,
            "plot": False,
            **scenario,
        },
        "method": method,
        "metrics": ["accuracy"],
        "output": None,
        "seed": seed,
    }


def reproduce(quick: bool = False) -> dict[str, float]:
    """``method/scenario`` -> average accuracy. Quick: 1 seed, 2 epochs per experience; full:
    2 seeds, 5 epochs (about 65 iterations of 128 per task, the paper runs 2,000)."""
    if not os.environ.get("PARALAB_DATA"):
        raise RuntimeError(
            "three_scenarios needs the MNIST test files: set PARALAB_DATA to the data folder"
        )
    torch.set_num_threads(int(os.environ.get("PARALAB_THREADS", "2")))
    seeds = [0] if quick else [0, 1]
    epochs = 2 if quick else 5
    ours: dict[str, float] = {}
    for name, method in METHODS.items():
        for scenario_name, scenario in SCENARIOS.items():
            values = [
                paralab.run(spec(method, scenario, epochs, seed)).metrics["average_accuracy"]
                for seed in seeds
            ]
            ours[f"{name}/{scenario_name}"] = statistics.mean(values)
    return ours
