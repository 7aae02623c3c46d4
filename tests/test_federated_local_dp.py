"""Issue 18, item 3: local DP as a second middleware (``local_dp``): each client clips and noises
its own update with the classical Gaussian mechanism, the noise Flower's LocalDpMod adds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from paralab import Update
from paralab_federated.local_privacy import LocalDP, gaussian_sigma
from tests.federated_helpers import final_parameters, max_difference, parameters_after, run
from tests.test_federated_privacy import _Run, through

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_noise_scale_is_flowers_local_dp_at_sensitivity_two_clip() -> None:
    pytest.importorskip("flwr")
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays

    try:
        from flwr.supercore.differential_privacy import add_localdp_gaussian_noise_to_params
    except ImportError:  # flwr < 1.2x
        from flwr.common.differential_privacy import add_localdp_gaussian_noise_to_params
    np.random.seed(0)
    zeros = ndarrays_to_parameters([np.zeros(200_000)])
    noised = parameters_to_ndarrays(add_localdp_gaussian_noise_to_params(
        zeros, sensitivity=2 * 0.7, epsilon=0.5, delta=1e-5))[0]
    ours = LocalDP(clip=0.7, epsilon=0.5, delta=1e-5)
    assert ours.sigma == pytest.approx(gaussian_sigma(1.4, 0.5, 1e-5))
    assert ours.sigma == pytest.approx(float(noised.std()), rel=0.01)
    assert ours.sigma == pytest.approx(1.4 * math.sqrt(2 * math.log(1.25e5)) / 0.5)


def test_each_update_is_clipped_then_noised_on_the_client() -> None:
    middleware = LocalDP(clip=1.0, epsilon=0.9, delta=1e-5, reproducible_noise=True)
    delta = {"w": torch.full((50_000,), 0.1)}  # norm 22.4: clipped to 1
    info = {"round": 0, "round_clients": [3, 4], "num_clients": 10}
    a = through(middleware, Update(delta, source=3, weight=5.0, info=info), _Run(0))
    b = through(middleware, Update(delta, source=4, weight=5.0, info=info), _Run(0))
    clipped = delta["w"] / float(delta["w"].norm())
    noise = a.delta["w"] - clipped
    assert float(noise.std()) == pytest.approx(middleware.sigma, rel=0.02)
    assert abs(float(noise.mean())) < 5 * middleware.sigma / math.sqrt(50_000)
    assert not torch.equal(a.delta["w"], b.delta["w"])  # each client its own noise
    assert a.weight == 5.0  # local DP leaves the aggregate's weights alone
    assert a.info["local_dp"]["norm"] == pytest.approx(float(delta["w"].double().norm()),
                                                             rel=1e-9)


def test_a_run_records_each_releases_budget_and_its_composition() -> None:
    local = {"name": "local_dp", "clip": 0.5, "epsilon": 0.8}
    results = []
    noisy = parameters_after(lambda: results.append(run(middleware=[local], rounds=3)))
    (result,) = results
    partition_rounds = []
    captured = result.metrics
    assert captured["privacy/local_epsilon"] == 0.8
    assert captured["privacy/local_noise"] == "seeded from the operating system"
    # The most rounds any client was sampled in (the phases' client lists): one release each.
    for phase in result.phases:
        partition_rounds.append(phase["info"]["clients"])
    most = max(sum(k in clients for clients in partition_rounds)
               for k in {k for clients in partition_rounds for k in clients})
    assert captured["privacy/local_releases_max"] == most
    assert captured["privacy/local_epsilon_composed"] == pytest.approx(most * 0.8)
    assert max_difference(noisy, final_parameters(rounds=3)) > 1e-2  # the noise acted


def test_epsilon_of_one_or_more_is_a_spec_error() -> None:
    import paralab

    with pytest.raises(paralab.SpecError, match=r"middleware\[0\]\.epsilon = 1\.5"):
        run(middleware=[{"name": "local_dp", "epsilon": 1.5}], rounds=1)

