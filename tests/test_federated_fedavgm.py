"""FedAvgM (server momentum, Hsu et al. 2019) against Flower's ``FedAvgM`` over rounds, and
its seeds stacked as separate runs would train them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paralab import Update
from paralab_federated.aggregation import weighted_mean
from paralab_federated.methods import FedAvgM

pytestmark = pytest.mark.usefixtures("one_torch_thread")

flwr = pytest.importorskip("flwr")
from flwr.common import (  # noqa: E402
    Code,
    FitRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)


def _round(seed: int, current: list[np.ndarray]) -> tuple[list[list[np.ndarray]], list[int]]:
    rng = np.random.default_rng(seed)
    deltas = [[0.1 * rng.normal(size=w.shape).astype(np.float32) for w in current]
              for _ in range(4)]
    return deltas, [int(s) for s in rng.integers(5, 60, size=4)]


def test_fedavgm_matches_flower_over_rounds() -> None:
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)]
    strategy = flwr.server.strategy.FedAvgM(
        initial_parameters=ndarrays_to_parameters(weights), server_learning_rate=0.7,
        server_momentum=0.9, min_fit_clients=1, min_available_clients=1)
    ours = FedAvgM(lr=0.1, server_lr=0.7, server_momentum=0.9)
    names = ["w", "b"]
    params = {n: torch.from_numpy(w.copy()) for n, w in zip(names, weights)}
    ours.setup(params)
    current = [w.copy() for w in weights]
    for server_round in (1, 2, 3, 4):
        deltas, sizes = _round(server_round, current)
        results = [(None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(
            [w + d for w, d in zip(current, ds)]), size, {})) for ds, size in zip(deltas, sizes)]
        parameters, _ = strategy.aggregate_fit(server_round, results, [])
        current = parameters_to_ndarrays(parameters)
        updates = [Update({n: torch.from_numpy(d) for n, d in zip(names, ds)}, source=k,
                          weight=s) for k, (ds, s) in enumerate(zip(deltas, sizes))]
        params = ours.server_step(params, weighted_mean(updates), server_round - 1)
        for n, expected in zip(names, current):
            np.testing.assert_allclose(params[n].numpy(), expected, atol=1e-5)
    # Momentum does act: four rounds differ from FedAvg's plain steps.
    assert float(ours.m["w"].abs().max()) > 0


def test_fedavgm_seeds_stack_as_separate_runs() -> None:
    from paralab import run_seeds
    from tests.federated_helpers import spec
    from tests.test_seeds_federated import assert_equal_runs

    one = spec({"name": "fedavgm", "lr": 0.1, "server_lr": 0.5}, rounds=3)
    stacked = run_seeds(one, [0, 1])
    assert [r.provenance["seed_axis"]["stacked"] for r in stacked] == [2, 2]
    separate = run_seeds(one, [0, 1], vectorize=False)
    assert_equal_runs(stacked, separate)
