"""Issue 18, item 3: adaptive clipping (Andrew et al. 2021) in the ``dp`` middleware: the
bound moves to the target quantile of the update norms, the update noise is Flower's (and the
paper's) ``z_delta``, and the epsilon stays the accountant's for ``z``."""

from __future__ import annotations

import math

import pytest
import torch

import paralab
from paralab import Update
from paralab_federated.privacy import DPFedAvg, adaptive_noise_multiplier, epsilon
from tests.federated_helpers import run
from tests.test_federated_privacy import _Run, through

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _round(middleware: DPFedAvg, norms: list[float], round_index: int) -> None:
    """One federated round of updates of the given norms through the middleware, then the
    bound's update that follows the round's phase."""
    clients = list(range(len(norms)))
    sampling = {"kind": "fixed", "population": 100, "sample_size": len(norms)}
    info = {"round": round_index, "round_clients": clients, "num_clients": 100,
            "sampling": sampling}
    for k, norm in enumerate(norms):
        delta = {"w": torch.zeros(4)}
        delta["w"][k % 4] = norm
        through(middleware, Update(delta, source=k, weight=1.0, info=info), _Run(0))
    middleware.adapt_clip(_Run(0), round_index)


@pytest.mark.parametrize("start", [0.05, 80.0])
def test_the_bound_moves_to_the_target_quantile_of_the_norms(start: float) -> None:
    """Norms uniform on [0, 10]: the median is 5, the 0.8 quantile 8. A bound that does not
    adapt stays at its start; one that counts clipped updates (Flower 1.42's server-side
    adaptive clipping) runs away from the target."""
    for quantile, expected in ((0.5, 5.0), (0.8, 8.0)):
        middleware = DPFedAvg(clip=start, noise_multiplier=0.0, adaptive_clip=True,
                              target_quantile=quantile, clip_lr=0.2, clipped_count_stddev=0.0,
                              reproducible_noise=True)
        norms = [10 * (i + 0.5) / 40 for i in range(40)]
        for r in range(150):
            _round(middleware, norms, r)
        assert middleware.clip == pytest.approx(expected, abs=0.6), (quantile, middleware.clip)


def test_one_step_is_the_papers_geometric_update() -> None:
    middleware = DPFedAvg(clip=2.0, noise_multiplier=0.0, adaptive_clip=True,
                          target_quantile=0.5, clip_lr=0.2, clipped_count_stddev=0.0,
                          reproducible_noise=True)
    _round(middleware, [1.0, 1.5, 3.0, 4.0, 5.0], 0)  # 2 of 5 unclipped
    assert middleware.clip == pytest.approx(2.0 * math.exp(-0.2 * (2 / 5 - 0.5)), rel=1e-12)


@pytest.mark.parametrize(("z", "m", "stddev"), [(1.0, 20, None), (0.8, 30, 2.0), (0.3, 10, 0.2)])
def test_update_noise_multiplier_is_flowers(z: float, m: int, stddev: float | None) -> None:
    pytest.importorskip("flwr")
    try:
        from flwr.supercore.differential_privacy import compute_adaptive_noise_params
    except ImportError:  # flwr < 1.2x
        from flwr.common.differential_privacy import compute_adaptive_noise_params
    sigma_b, expected = compute_adaptive_noise_params(z, m, stddev)
    assert adaptive_noise_multiplier(z, sigma_b) == pytest.approx(expected, rel=1e-12)


def test_an_adaptive_run_records_its_bounds_and_the_accountants_epsilon() -> None:
    dp = {"name": "dp", "clip": 0.01, "noise_multiplier": 0.5, "adaptive_clip": True,
          "clipped_count_stddev": 0.5}
    result = run(middleware=[dp], rounds=4, clients=40, fraction=0.5)
    clips = [p["metrics"]["privacy/clip"] for p in result.phases]
    assert clips[0] == 0.01 and all(b > a for a, b in zip(clips, clips[1:])), clips
    assert result.metrics["privacy/epsilon"] == pytest.approx(
        epsilon(0.5, 0.5, 4, 1e-5), rel=1e-9)  # the budget of z, whatever the bound did


def test_too_little_count_noise_is_a_spec_error() -> None:
    dp = {"name": "dp", "noise_multiplier": 1.0, "adaptive_clip": True}
    # 20 clients at 0.25: m = 5, sigma_b = 0.25 < z / 2
    with pytest.raises(paralab.SpecError, match="clipped_count_stddev > noise_multiplier / 2"):
        run(middleware=[dp], rounds=1)
