"""Parity with the libraries the plugin stands beside: Flower's aggregation and server
optimizers (flwr), and Google's dp_accounting for the privacy budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paralab.context import Update
from paralab_federated.aggregation import weighted_mean
from paralab_federated.methods import FedAdam, FedAvg, FedYogi
from paralab_federated.privacy import clip_delta, epsilon

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest

flwr = pytest.importorskip("flwr")
from flwr.common import (  # noqa: E402
    Code,
    FitRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)


def _flower_dp():
    """Flower's DP helpers (moved from flwr.common to flwr.supercore in recent releases)."""
    try:
        from flwr.supercore import differential_privacy
    except ImportError:  # flwr < 1.2x
        from flwr.common import differential_privacy
    return differential_privacy


def _clients(seed: int = 0, n: int = 5):
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)]
    deltas = [[0.1 * rng.normal(size=w.shape).astype(np.float32) for w in weights]
              for _ in range(n)]
    sizes = [int(s) for s in rng.integers(5, 60, size=n)]
    return weights, deltas, sizes


def _fit_results(weights, deltas, sizes):
    return [
        (None, FitRes(Status(Code.OK, ""),
                      ndarrays_to_parameters([w + d for w, d in zip(weights, ds)]), size, {}))
        for ds, size in zip(deltas, sizes)
    ]


def _ours(weights, deltas, sizes):
    names = ["w", "b"]
    params = {n: torch.from_numpy(w) for n, w in zip(names, weights)}
    updates = [Update({n: torch.from_numpy(d) for n, d in zip(names, ds)}, source=k, weight=s)
               for k, (ds, s) in enumerate(zip(deltas, sizes))]
    return names, params, updates


def test_fedavg_aggregate_equals_flower() -> None:
    from flwr.server.strategy.aggregate import aggregate

    weights, deltas, sizes = _clients()
    expected = aggregate([([w + d for w, d in zip(weights, ds)], s)
                          for ds, s in zip(deltas, sizes)])
    names, params, updates = _ours(weights, deltas, sizes)
    new = FedAvg().server_step(params, weighted_mean(updates), 0)
    for n, e in zip(names, expected):
        np.testing.assert_allclose(new[n].numpy(), e, atol=1e-6)


def test_fedyogi_matches_flower_over_rounds() -> None:
    weights, _, _ = _clients()
    strategy = flwr.server.strategy.FedYogi(
        initial_parameters=ndarrays_to_parameters(weights), eta=0.05, eta_l=0.1, beta_1=0.9,
        beta_2=0.99, tau=1e-3, min_fit_clients=1, min_available_clients=1)
    ours = FedYogi(lr=0.1, server_lr=0.05, beta1=0.9, beta2=0.99, tau=1e-3)
    current = [w.copy() for w in weights]
    names = ["w", "b"]
    params = {n: torch.from_numpy(w.copy()) for n, w in zip(names, weights)}
    for server_round in (1, 2, 3):
        _, deltas, sizes = _clients(seed=server_round)
        results = _fit_results(current, deltas, sizes)
        parameters, _ = strategy.aggregate_fit(server_round, results, [])
        current = parameters_to_ndarrays(parameters)
        updates = [Update({n: torch.from_numpy(d) for n, d in zip(names, ds)}, source=k, weight=s)
                   for k, (ds, s) in enumerate(zip(deltas, sizes))]
        params = ours.server_step(params, weighted_mean(updates), server_round - 1)
        for n, expected in zip(names, current):
            np.testing.assert_allclose(params[n].numpy(), expected, atol=1e-5)


def test_fedadam_first_round_matches_flower() -> None:
    # Flower scales eta by its bias correction sqrt(1 - b2^(t+1)) / (1 - b1^(t+1)); Reddi et
    # al.'s Algorithm 2 (ours) has none, so we compare one round with eta rescaled.
    weights, deltas, sizes = _clients(seed=7)
    strategy = flwr.server.strategy.FedAdam(
        initial_parameters=ndarrays_to_parameters(weights), eta=0.05, beta_1=0.9, beta_2=0.99,
        tau=1e-3, min_fit_clients=1, min_available_clients=1)
    parameters, _ = strategy.aggregate_fit(1, _fit_results(weights, deltas, sizes), [])
    names, params, updates = _ours(weights, deltas, sizes)
    correction = np.sqrt(1 - 0.99**2) / (1 - 0.9**2)
    ours = FedAdam(server_lr=0.05 * correction, beta1=0.9, beta2=0.99, tau=1e-3)
    new = ours.server_step(params, weighted_mean(updates), 0)
    for n, expected in zip(names, parameters_to_ndarrays(parameters)):
        np.testing.assert_allclose(new[n].numpy(), expected, atol=1e-5)


def test_clipping_matches_flower_client_side_fixed_clipping() -> None:
    compute_clip_model_update = _flower_dp().compute_clip_model_update
    rng = np.random.default_rng(3)
    old = [rng.normal(size=(5, 4)), rng.normal(size=4)]
    new = [o + rng.normal(size=o.shape) for o in old]
    expected = [n.copy() for n in new]
    compute_clip_model_update(expected, old, 0.7)
    clipped, _ = clip_delta({"a": torch.from_numpy(new[0] - old[0]),
                             "b": torch.from_numpy(new[1] - old[1])}, 0.7)
    np.testing.assert_allclose(clipped["a"].numpy() + old[0], expected[0], atol=1e-10)
    np.testing.assert_allclose(clipped["b"].numpy() + old[1], expected[1], atol=1e-10)


def test_epsilon_is_dp_accountings_rdp_value() -> None:
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant

    accountant = rdp_privacy_accountant.RdpAccountant()
    for _ in range(50):
        accountant.compose(dp_accounting.PoissonSampledDpEvent(
            0.1, dp_accounting.GaussianDpEvent(1.1)))
    assert epsilon(1.1, 0.1, 50, 1e-5) == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)
    # More noise, fewer rounds or a smaller sampling rate spend less budget.
    assert epsilon(2.0, 0.1, 50, 1e-5) < epsilon(1.1, 0.1, 50, 1e-5)
    assert epsilon(1.1, 0.05, 50, 1e-5) < epsilon(1.1, 0.1, 50, 1e-5)
    assert epsilon(1.1, 0.1, 50, 1e-5, "pld") <= epsilon(1.1, 0.1, 50, 1e-5, "rdp") + 1e-6


def test_aggregated_dp_noise_has_flowers_server_side_std() -> None:
    """Each of m clients adds N(0, (z S)^2 / m); their mean carries Flower's z S / m."""
    from paralab_federated.privacy import DPFedAvg

    m, z, clip = 8, 1.3, 0.5
    middleware = DPFedAvg(clip=clip, noise_multiplier=z, seed=4)
    clients = list(range(m))
    noisy = []
    for k in clients:
        generator = middleware.paralab_process_update(None, None)
        next(generator)
        zero = Update({"w": torch.zeros(20000, dtype=torch.float64)}, source=k, weight=3.0,
                      info={"round": 0, "round_clients": clients, "num_clients": 80})
        try:
            generator.send(zero)
        except StopIteration as stop:
            noisy.append(stop.value)
    assert all(u.weight == 1.0 for u in noisy)
    mean = weighted_mean(noisy)["w"]
    expected = _flower_dp().compute_stdv(z, clip, m)
    assert float(mean.std()) == pytest.approx(expected, rel=0.03)
