"""McMahan et al. 2017, Table 2: communication rounds to a target accuracy, FedSGD vs FedAvg.

Each setting is one paralab run of the ``federated`` protocol with ``target_accuracy``: the run
stops at the first round whose global model reaches the target on the test split and records
``federated/rounds_to_target``. A speed-up is FedSGD's rounds over the setting's rounds.
``quick`` runs only FedSGD and FedAvg (E = 5, B = 10), on IID and non-IID data: the checked
claims; the full run adds the (E, B) rows that are only reported.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import paralab

CLIENTS, FRACTION, HIDDEN, MAX_ROUNDS = 100, 0.1, [200, 200], 300
FEDSGD_LR, FEDAVG_LR = 0.5, 0.1
TARGETS = {"iid": 0.90, "noniid": 0.85}
PARTITIONS = {"iid": {"partition": "iid"},
              "noniid": {"partition": "shards", "classes_per_client": 2}}
FEDAVG_SETTINGS = [(5, 10), (1, 10), (5, 50)]


def rounds_to_target(dataset: str, method: dict[str, Any], partition: dict[str, Any],
                     epochs: int | None, batch_size: int | None, target: float, max_rounds: int,
                     seed: int = 0) -> float:
    """Rounds until the global model reaches ``target`` (``max_rounds + 1`` if never);
    ``epochs``/``batch_size`` ``None``: FedSGD's one full-batch step."""
    local = {} if epochs is None else {"local_epochs": epochs, "batch_size": batch_size}
    result = paralab.run({
        "name": "mcmahan2017",
        "dataset": dataset,
        "model": {"name": "mlp", "hidden": HIDDEN},
        "protocol": {"name": "federated", "clients": CLIENTS, "fraction": FRACTION,
                     "rounds": max_rounds, "client_eval": False, "target_accuracy": target,
                     **local, **partition},
        "method": method,
        "output": None,
        "seed": seed,
    })
    rounds = float(result.metrics.get("federated/rounds_to_target", max_rounds + 1))
    print(f"  {method['name']} E={epochs} B={batch_size} {partition['partition']}: "
          f"{rounds:g} rounds to {target:.0%}", file=sys.stderr, flush=True)
    return rounds


def table(dataset: str, distributions: list[str], settings: list[tuple[int, int]],
          targets: dict[str, float], max_rounds: int) -> dict[str, float]:
    """Rounds and speed-ups over FedSGD for each data distribution and FedAvg (E, B)."""
    ours: dict[str, float] = {}
    for name in distributions:
        partition, target = PARTITIONS[name], targets[name]
        sgd = rounds_to_target(dataset, {"name": "fedsgd", "lr": FEDSGD_LR}, partition, None,
                               None, target, max_rounds)
        ours[f"{name}/fedsgd_rounds"] = sgd
        for epochs, batch in settings:
            key = f"{name}/fedavg_E{epochs}_B{batch}"
            rounds = rounds_to_target(dataset, {"name": "fedavg", "lr": FEDAVG_LR}, partition,
                                      epochs, batch, target, max_rounds)
            ours[f"{key}_rounds"] = rounds
            ours[f"{key}_speedup"] = sgd / rounds
    return ours


def reproduce(quick: bool) -> dict[str, float]:
    if not os.environ.get("PARALAB_DATA"):
        raise RuntimeError("set PARALAB_DATA to the folder holding mnist/ (../shared/data)")
    import torch

    # One thread: the models are small, and on a shared machine a second intra-op thread
    # mostly waits for the first.
    torch.set_num_threads(1)
    if quick:
        return table("mnist", ["iid", "noniid"], [(5, 10)], TARGETS, MAX_ROUNDS)
    return table("mnist", ["iid", "noniid"], FEDAVG_SETTINGS, TARGETS, MAX_ROUNDS)
