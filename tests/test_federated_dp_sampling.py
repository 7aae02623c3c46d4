"""Issue 18, item 3: under ``dp`` clients are sampled the way the accountant assumes (Poisson),
and the reported epsilon is dp_accounting's for the sampling actually used, computed here."""

from __future__ import annotations

import logging

import pytest
import torch

import paralab
from paralab_federated.partitions import make_partition
from paralab_federated.schedule import plan_round
from tests.federated_helpers import final_parameters, parameters_after, run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DP = {"name": "dp", "clip": 0.5, "noise_multiplier": 1.1, "delta": 1e-5}


def _poisson_epsilon(z: float, rate: float, rounds: int, delta: float, engine: str) -> float:
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant
    from dp_accounting.rdp import rdp_privacy_accountant

    logging.getLogger("absl").setLevel(logging.ERROR)
    accountant = (pld_privacy_accountant.PLDAccountant() if engine == "pld"
                  else rdp_privacy_accountant.RdpAccountant())
    for _ in range(rounds):
        accountant.compose(dp_accounting.PoissonSampledDpEvent(
            rate, dp_accounting.GaussianDpEvent(z)))
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize("engine", ["rdp", "pld"])
def test_dp_samples_clients_by_poisson_and_reports_its_epsilon(engine: str) -> None:
    result = run(middleware=[{**DP, "accountant": engine}], rounds=4, clients=20,
                 fraction=0.25, stragglers=0.2)
    assert result.metrics["federated/client_sampling"] == "poisson"
    # Each client reports with probability fraction * (1 - stragglers): one Poisson event of
    # that rate per round.
    expected = _poisson_epsilon(1.1, 0.25 * 0.8, 4, 1e-5, engine)
    assert result.metrics["privacy/epsilon"] == pytest.approx(expected, rel=1e-6)


def test_fixed_size_sampling_when_asked_is_accounted_without_replacement() -> None:
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant

    result = run(middleware=[DP], rounds=3, clients=20, fraction=0.25, client_sampling="fixed")
    assert result.metrics["federated/client_sampling"] == "fixed"
    accountant = rdp_privacy_accountant.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    accountant.compose(dp_accounting.SelfComposedDpEvent(
        dp_accounting.SampledWithoutReplacementDpEvent(
            20, 5, dp_accounting.GaussianDpEvent(1.1 / 2)), 3))  # replace-one: 2 * clip
    assert result.metrics["privacy/epsilon"] == pytest.approx(accountant.get_epsilon(1e-5),
                                                              rel=1e-9)


def test_poisson_rounds_vary_in_size_around_the_rate() -> None:
    partition = make_partition(torch.arange(2000), torch.zeros(2000, dtype=torch.long), 200,
                               "iid", generator=torch.Generator().manual_seed(0))
    sizes = [len(plan_round(partition, round_index=r, seed=0, fraction=0.1, stragglers=0.0,
                            epochs=1, batch_size=16, poisson=True).sampled)
             for r in range(200)]
    assert len(set(sizes)) > 5  # not a fixed number
    mean = sum(sizes) / len(sizes)
    assert abs(mean - 20) < 3 * (200 * 0.1 * 0.9 / 200) ** 0.5 * 3  # E = 20, sd of mean ~0.3
    fixed = {len(plan_round(partition, round_index=r, seed=0, fraction=0.1, stragglers=0.0,
                            epochs=1, batch_size=16).sampled) for r in range(20)}
    assert fixed == {20}


def test_without_dp_the_default_sampling_stays_fixed() -> None:
    result = run(rounds=1)
    assert result.metrics["federated/client_sampling"] == "fixed"
    assert result.phases[0]["metrics"]["round/clients"] == 5


def test_an_empty_poisson_round_still_releases_noise() -> None:
    """4 clients at rate 0.001: the round samples nobody. It must still move the model by the
    noise (an unchanged model would reveal an empty sum without noise) and be accounted."""
    dp = {**DP, "reproducible_noise": True}
    results = []
    with pytest.warns(UserWarning, match="NOT private"):
        noisy = parameters_after(lambda: results.append(
            run(middleware=[dp], rounds=1, clients=4, fraction=0.001)))
    (result,) = results
    assert result.phases[0]["metrics"]["round/clients"] == 0
    assert result.metrics["privacy/epsilon"] == pytest.approx(
        _poisson_epsilon(1.1, 0.001, 1, 1e-5, "rdp"), rel=1e-6)
    with pytest.warns(UserWarning, match="adds no noise"):
        silent = final_parameters(middleware=[{**dp, "noise_multiplier": 0.0}], rounds=1,
                                  clients=4, fraction=0.001)
    assert max(float((noisy[n] - silent[n]).abs().max()) for n in noisy) > 1e-3


def test_federated_noise_is_secret_by_default_and_reproducible_noise_is_recorded() -> None:
    """Two runs of one spec and seed: other noise (seeded from the operating system), and
    result.json says so; ``reproducible_noise`` gives equal models and records NOT private."""
    import json

    results: list[paralab.Result] = []
    first = parameters_after(lambda: results.append(run(middleware=[DP], rounds=2)))
    second = final_parameters(middleware=[DP], rounds=2)
    assert max(float((first[n] - second[n]).abs().max()) for n in first) > 1e-4
    assert results[0].metrics["privacy/noise"] == "seeded from the operating system"
    same = {**DP, "reproducible_noise": True}
    with pytest.warns(UserWarning, match="NOT private"):
        a = parameters_after(lambda: results.append(run(middleware=[same], rounds=2)))
        b = final_parameters(middleware=[same], rounds=2)
    assert all(torch.equal(a[n], b[n]) for n in a)
    recorded = json.loads(json.dumps(results[-1].to_dict(), default=str))  # result.json's
    assert recorded["metrics"]["privacy/noise"] == "reproducible from a seed: NOT private"
