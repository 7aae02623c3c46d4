"""Issue 18, item 1: stateful clients (SCAFFOLD's control variates), FedAdagrad against
Flower's, and client optimizer momentum; the vmap backend against the loop reference."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch

import paralab
from paralab import Update
from paralab_federated.aggregation import weighted_mean
from paralab_federated.methods import FedAdagrad
from tests.federated_helpers import final_parameters, max_difference, run, spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SKEWED = {"clients": 20, "fraction": 0.5, "rounds": 10, "partition": "dirichlet",
          "alpha": 0.1, "local_epochs": 5, "batch_size": 16}


def test_scaffold_beats_fedavg_on_dirichlet_0_1_over_three_seeds() -> None:
    """Karimireddy et al.'s claim at equal rounds: with highly skewed clients (Dirichlet
    alpha = 0.1) and many local steps, the drift correction gives a better global model."""
    def mean_accuracy(method: str) -> float:
        return statistics.mean(
            paralab.run(spec({"name": method, "lr": 0.05}, overrides={"seed": seed},
                             **SKEWED)).metrics["test/accuracy"]
            for seed in (0, 1, 2))

    fedavg, scaffold = mean_accuracy("fedavg"), mean_accuracy("scaffold")
    assert scaffold > fedavg + 0.05, (scaffold, fedavg)


def test_scaffold_keeps_client_state_and_its_first_round_is_fedavgs() -> None:
    one = {"clients": 10, "fraction": 0.5, "partition": "dirichlet", "alpha": 0.3}
    # Round 0: every control variate is zero, so the corrected steps are FedAvg's.
    assert max_difference(final_parameters(method="scaffold", rounds=1, **one),
                          final_parameters(method="fedavg", rounds=1, **one)) < 1e-6
    # Later rounds: the variates act (a no-op correction would leave FedAvg's model).
    assert max_difference(final_parameters(method="scaffold", rounds=3, **one),
                          final_parameters(method="fedavg", rounds=3, **one)) > 1e-3


def test_scaffold_vmap_equals_the_loop() -> None:
    options = {"clients": 10, "fraction": 0.5, "rounds": 3, "partition": "dirichlet",
               "alpha": 0.3}
    vmap = final_parameters(method="scaffold", backend="vmap", **options)
    loop = final_parameters(method="scaffold", backend="loop", **options)
    assert max_difference(vmap, loop) < 1e-5


def test_scaffold_control_variates_follow_option_two() -> None:
    """``c_i+ = c_i - c - delta_i / (K lr)`` and ``c += |S|/N * mean(c_i+ - c_i)``."""
    from paralab_federated.methods import ClientReport, Scaffold

    method = Scaffold(lr=0.5)
    params = {"w": torch.zeros(3)}
    method.setup(params)
    method.c = {"w": torch.tensor([0.1, 0.0, -0.1])}
    method.client_c = {1: {"w": torch.tensor([0.2, 0.2, 0.2])}}
    corrections = method.client_corrections([1, 2])
    assert torch.allclose(corrections[1]["w"], torch.tensor([-0.1, -0.2, -0.3]))
    assert torch.allclose(corrections[2]["w"], torch.tensor([0.1, 0.0, -0.1]))
    d1, d2 = torch.tensor([1.0, -1.0, 0.0]), torch.tensor([0.0, 2.0, 4.0])
    method.observe_clients([ClientReport(1, {"w": d1}, 5.0, 4),
                            ClientReport(2, {"w": d2}, 3.0, 2)], n_clients=8)
    c = torch.tensor([0.1, 0.0, -0.1])
    new1 = torch.tensor([0.2, 0.2, 0.2]) - c - d1 / (4 * 0.5)
    new2 = -c - d2 / (2 * 0.5)
    assert torch.allclose(method.client_c[1]["w"], new1)
    assert torch.allclose(method.client_c[2]["w"], new2)
    method.server_step(params, {"w": torch.zeros(3)}, 0)
    change = ((new1 - torch.tensor([0.2, 0.2, 0.2])) + new2) / 2
    assert torch.allclose(method.c["w"], c + 2 / 8 * change)


def test_scaffold_refuses_middleware_its_variates_would_bypass() -> None:
    with pytest.raises(paralab.SpecError, match="control-variate change"):
        run(method="scaffold", middleware=[{"name": "dp", "noise_multiplier": 0.5}], rounds=1)


def test_client_momentum_acts_and_vmap_equals_the_loop() -> None:
    method = {"name": "fedavg", "lr": 0.05, "client_momentum": 0.9}
    vmap = final_parameters(method=method, backend="vmap", rounds=2)
    loop = final_parameters(method=method, backend="loop", rounds=2)
    assert max_difference(vmap, loop) < 1e-5
    plain = final_parameters(method={"name": "fedavg", "lr": 0.05}, rounds=2)
    assert max_difference(vmap, plain) > 1e-3


def test_client_momentum_is_torch_sgd_momentum() -> None:
    """One client's local training against ``torch.optim.SGD(momentum=0.9)`` written here."""
    from paralab_federated.local_training import train_client

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    x, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
    batches = [torch.arange(0, 4), torch.arange(4, 8), torch.arange(8, 12)]
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    delta, _ = train_client(model, start, x, y, batches, lr=0.1, momentum=0.9)
    reference = torch.nn.Sequential(torch.nn.Linear(4, 3))
    reference.load_state_dict({n: t.clone() for n, t in start.items()})
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    for rows in batches:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(reference(x[rows]), y[rows]).backward()
        optimizer.step()
    for n, p in reference.named_parameters():
        torch.testing.assert_close(start[n] + delta[n], p.detach())


def test_fedadagrad_matches_flower_over_rounds() -> None:
    flwr = pytest.importorskip("flwr")
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)]
    strategy = flwr.server.strategy.FedAdagrad(
        initial_parameters=ndarrays_to_parameters(weights), eta=0.1, tau=1e-3,
        min_fit_clients=1, min_available_clients=1)
    ours = FedAdagrad(server_lr=0.1, beta1=0.0, tau=1e-3)
    names = ["w", "b"]
    params = {n: torch.from_numpy(w.copy()) for n, w in zip(names, weights)}
    ours.setup(params)
    current = [w.copy() for w in weights]
    for server_round in (1, 2, 3):
        deltas = [[0.1 * rng.normal(size=w.shape).astype(np.float32) for w in current]
                  for _ in range(3)]
        sizes = [int(s) for s in rng.integers(5, 60, size=3)]
        results = [(None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(
            [w + d for w, d in zip(current, ds)]), size, {})) for ds, size in zip(deltas, sizes)]
        parameters, _ = strategy.aggregate_fit(server_round, results, [])
        current = parameters_to_ndarrays(parameters)
        updates = [Update({n: torch.from_numpy(d) for n, d in zip(names, ds)}, source=k,
                          weight=s) for k, (ds, s) in enumerate(zip(deltas, sizes))]
        params = ours.server_step(params, weighted_mean(updates), server_round - 1)
        for n, expected in zip(names, current):
            np.testing.assert_allclose(params[n].numpy(), expected, atol=1e-5)


def _reports(rng: np.random.Generator, steps: list[int]) -> list:
    from paralab_federated.methods import ClientReport

    return [ClientReport(k, {"w": torch.from_numpy(rng.normal(size=3))}, float(w), s)
            for k, (w, s) in enumerate(zip([10, 30, 60], steps))]


def test_fednova_is_wang_et_als_normalized_average() -> None:
    """``w + tau_eff * sum_i p_i delta_i / K_i`` (Wang et al. 2020, eq. for vanilla SGD),
    written here, through the protocol's path: observe, client_delta, weighted mean, step."""
    from paralab_federated.methods import FedNova

    reports = _reports(np.random.default_rng(0), [2, 5, 11])
    method = FedNova(server_lr=1.0)
    params = {"w": torch.zeros(3, dtype=torch.float64)}
    method.observe_clients(reports, n_clients=3)
    sent = [Update(method.client_delta(r), source=r.client, weight=r.weight) for r in reports]
    ours = method.server_step(params, weighted_mean(sent), 0)["w"]
    p = np.array([10, 30, 60]) / 100
    tau = np.array([2, 5, 11])
    deltas = np.stack([r.delta["w"].numpy() for r in reports])
    expected = (p @ tau) * (p / tau) @ deltas
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-12)
    plain = weighted_mean([Update(r.delta, source=r.client, weight=r.weight) for r in reports])
    assert float((ours - plain["w"]).abs().max()) > 1e-3  # unequal steps: not FedAvg


def test_fednova_changes_a_quantity_skewed_run_and_vmap_equals_the_loop() -> None:
    options = {"clients": 10, "fraction": 0.5, "rounds": 2, "partition": "quantity",
               "alpha": 0.5}
    nova = final_parameters(method="fednova", backend="vmap", **options)
    assert max_difference(nova, final_parameters(method="fednova", backend="loop",
                                                 **options)) < 1e-5
    assert max_difference(nova, final_parameters(method="fedavg", **options)) > 1e-3


def test_feddyn_state_follows_acar_et_al() -> None:
    """``g_i <- g_i - alpha * delta_i``; ``h <- h - alpha/N * sum delta_i``;
    ``w <- w + mean_delta - h / alpha``; the client's correction is ``-g_i``."""
    from paralab_federated.methods import FedDyn

    reports = _reports(np.random.default_rng(1), [3, 3, 3])
    method = FedDyn(alpha=0.1)
    params = {"w": torch.ones(3, dtype=torch.float64)}
    method.setup(params)
    method.client_g = {0: {"w": torch.tensor([0.5, 0.0, -0.5], dtype=torch.float64)}}
    assert torch.equal(method.client_corrections([0])[0]["w"],
                       torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64))
    assert method.mu == 0.1  # the proximal term alpha/2 ||w - w_global||^2
    method.observe_clients(reports, n_clients=6)
    mean = weighted_mean([Update(r.delta, source=r.client, weight=r.weight) for r in reports])
    new = method.server_step(params, mean, 0)["w"]
    total = sum(r.delta["w"] for r in reports)
    h = -0.1 / 6 * total
    torch.testing.assert_close(method.h["w"], h)
    torch.testing.assert_close(new, params["w"] + mean["w"] - h / 0.1)
    torch.testing.assert_close(method.client_g[0]["w"],
                               torch.tensor([0.5, 0.0, -0.5], dtype=torch.float64)
                               - 0.1 * reports[0].delta["w"])


def test_feddyn_runs_on_vmap_as_on_the_loop_and_learns() -> None:
    options = {"clients": 10, "fraction": 0.5, "rounds": 4, "partition": "dirichlet",
               "alpha": 0.3, "local_epochs": 2}
    method = {"name": "feddyn", "lr": 0.05, "alpha": 0.01}
    dyn = final_parameters(method=method, backend="vmap", **options)
    assert max_difference(dyn, final_parameters(method=method, backend="loop",
                                                **options)) < 1e-4
    prox = final_parameters(method={"name": "fedprox", "lr": 0.05, "mu": 0.01}, **options)
    assert max_difference(dyn, prox) > 1e-3
    # Short and skewed (4 rounds, Dirichlet 0.3): FedAvg reaches 0.217 here, FedDyn 0.319;
    # asserted: well above chance (0.1), i.e. the corrected steps still learn.
    assert run(method=method, **options).metrics["test/accuracy"] > 0.25


@pytest.mark.parametrize("method", ["scaffold", "feddyn"])
def test_stateful_clients_survive_a_resume(method: str, tmp_path) -> None:
    """The clients' variates (c_i, g_i) and the server's (c, h) are checkpointed: a run
    interrupted after round 1 and resumed ends like the uninterrupted one."""
    from tests.test_resume import check_resume, federated

    check_resume(federated(method, partition="dirichlet", alpha=0.3), tmp_path, 2)


def test_adaptive_clipping_survives_a_resume(tmp_path) -> None:
    from tests.test_resume import check_resume, federated

    dp = {"name": "dp", "clip": 0.05, "noise_multiplier": 0.3, "adaptive_clip": True,
          "clipped_count_stddev": 0.5, "reproducible_noise": True}
    with pytest.warns(UserWarning, match="NOT private"):
        resumed = check_resume(federated(middleware=[dp]), tmp_path, 2)
    clips = [p["metrics"]["privacy/clip"] for p in resumed.phases if p["kind"] == "round"]
    assert len(set(clips)) == len(clips)  # the bound moved every round, across the resume


@pytest.mark.parametrize("method", [{"name": "fedadagrad", "server_lr": 0.1},
                                    {"name": "fedavg", "lr": 0.05, "client_momentum": 0.9}])
def test_fedadagrad_and_client_momentum_seeds_stack_as_separate_runs(method: dict) -> None:
    from paralab import run_seeds
    from tests.test_seeds_federated import assert_equal_runs

    one = spec(method, rounds=3)
    stacked = run_seeds(one, [0, 1])
    assert [r.provenance["seed_axis"]["stacked"] for r in stacked] == [2, 2]
    assert_equal_runs(stacked, run_seeds(one, [0, 1], vectorize=False))
