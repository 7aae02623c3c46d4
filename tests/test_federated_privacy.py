"""DP-FedAvg and secure aggregation as middleware around the client update."""

from __future__ import annotations

import pytest
import torch

import paralab
from paralab import Update
from paralab_federated.aggregation import weighted_mean
from paralab_federated.privacy import DPFedAvg, epsilon, epsilon_fixed_size
from paralab_federated.secure_aggregation import SecureAggregation
from tests.federated_helpers import final_parameters, max_difference, run, spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


def through(middleware, update: Update, run=None) -> Update:
    """Drive a wrapper hookimpl by hand, as pluggy does: the inner result goes in at the yield."""
    generator = middleware.paralab_process_update(run, None)
    next(generator)
    try:
        generator.send(update)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the wrapper did not return")


def round_updates(n: int = 6, seed: int = 0) -> list[Update]:
    generator = torch.Generator().manual_seed(seed)
    clients = list(range(3, 3 + n))
    info = {"round": 2, "round_clients": clients, "num_clients": 50}
    return [
        Update({"w": torch.randn(7, 5, generator=generator),
                "b": torch.randn(5, generator=generator)},
               source=k, weight=float(10 + 3 * k), info=info)
        for k in clients
    ]


def test_masked_aggregate_equals_the_unmasked_one() -> None:
    updates = round_updates()
    masked = [through(SecureAggregation(seed=11), u) for u in updates]
    plain, secure = weighted_mean(updates), weighted_mean(masked)
    for n in plain:
        assert secure[n].dtype == plain[n].dtype
        torch.testing.assert_close(secure[n], plain[n], atol=1e-6, rtol=0)
    # One masked update alone says nothing about its delta: residues spread over 2**62.
    lone = masked[0].delta["w"].double()
    assert float(lone.abs().min()) > 2.0**40
    plain_w = updates[0].delta["w"].double().flatten()
    assert float(torch.corrcoef(torch.stack([lone.flatten(), plain_w]))[0, 1]) < 0.9


def test_masks_only_cancel_over_the_whole_round() -> None:
    updates = round_updates()
    masked = [through(SecureAggregation(seed=11), u) for u in updates]
    partial = weighted_mean(masked[:-1])
    expected = weighted_mean(updates[:-1])
    assert float((partial["w"] - expected["w"]).abs().max()) > 1.0


def test_dp_clips_each_update_and_sets_equal_weights() -> None:
    updates = round_updates()
    clipped = [through(DPFedAvg(clip=0.5, noise_multiplier=0.0), u) for u in updates]
    for before, after in zip(updates, clipped):
        norm = torch.cat([v.flatten() for v in after.delta.values()]).norm()
        assert float(norm) == pytest.approx(0.5, rel=1e-6)  # every update here is longer than 0.5
        assert after.weight == 1.0
        assert after.info["dp"]["clipped"] and after.info["dp"]["norm"] > 0.5
        ratio = after.delta["w"] / before.delta["w"]
        torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio[0, 0])))


def test_secure_aggregation_leaves_the_federated_model_unchanged() -> None:
    plain = final_parameters(backend="vmap")
    secure = final_parameters(backend="vmap", middleware=["secure_aggregation"])
    assert max_difference(plain, secure) < 1e-6


def test_dp_run_records_epsilon_and_masking_does_not_change_it() -> None:
    dp = {"name": "dp", "clip": 0.5, "noise_multiplier": 1.1, "delta": 1e-5}
    result = run(middleware=[dp], rounds=3, clients=20, fraction=0.25)
    rounds = [p["metrics"]["privacy/epsilon"] for p in result.phases]
    assert rounds == sorted(rounds) and rounds[0] > 0
    # Under dp clients are sampled by Poisson at rate 0.25 (test_federated_dp_sampling
    # checks the value against dp_accounting computed in the test).
    assert result.metrics["federated/client_sampling"] == "poisson"
    assert rounds[-1] == pytest.approx(epsilon(1.1, 5 / 20, 3, 1e-5), rel=1e-9)
    # The same noise in all three (reproducible_noise): masking must change nothing else.
    same = {**dp, "reproducible_noise": True}
    with pytest.warns(UserWarning, match="NOT private"):
        alone = final_parameters(middleware=[same])
        both = final_parameters(middleware=["secure_aggregation", same])
        reversed_order = final_parameters(middleware=[same, "secure_aggregation"])
    assert max_difference(alone, both) < 1e-6
    assert max_difference(alone, reversed_order) < 1e-6
    plain = final_parameters()
    assert max_difference(alone, plain) > 1e-3  # the noise and clipping did act


@pytest.mark.parametrize(
    ("middleware", "message"),
    [
        ({"name": "dp", "clip": 0}, r"middleware\[0\]\.clip = 0: must be > 0"),
        ({"name": "dp", "clip": float("inf")}, r"middleware\[0\]\.clip = inf: must be a finite"),
        ({"name": "dp", "noise_multiplier": float("nan")},
         r"middleware\[0\]\.noise_multiplier = nan: must be a finite number"),
        ({"name": "dp", "noise_multiplier": float("inf")},
         r"middleware\[0\]\.noise_multiplier = inf: must be a finite number"),
        ({"name": "dp", "noise_multiplier": -1.0},
         r"middleware\[0\]\.noise_multiplier = -1\.0: must be >= 0"),
        ({"name": "dp", "delta": 2}, r"middleware\[0\]\.delta = 2: must be < 1"),
        ({"name": "dp", "delta": 0.0}, r"middleware\[0\]\.delta = 0\.0: must be > 0"),
        ({"name": "dp", "accountant": "moments"},
         r"middleware\[0\]\.accountant = 'moments': expected one of 'rdp', 'pld'"),
        ({"name": "dp", "seed": "0"}, r"middleware\[0\]\.seed = '0': expected int or None"),
        ({"name": "secure_aggregation", "bits": 63},
         r"middleware\[0\]\.bits = 63: must be <= 62"),
        ({"name": "secure_aggregation", "precision": -1},
         r"middleware\[0\]\.precision = -1: must be >= 0"),
    ],
)
def test_bad_middleware_options_are_spec_errors_naming_the_option(middleware, message,
                                                                  tmp_path) -> None:
    # Formerly accepted (noise_multiplier = nan reported epsilon 0.0 with a NaN model) or
    # raised by the constructor; now declared, checked before anything is built or saved.
    with pytest.raises(paralab.SpecError, match=message):
        paralab.run(spec(middleware=[middleware], overrides={"output": str(tmp_path)}))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("middleware", "protocol", "message"),
    [
        ({"name": "secure_aggregation", "precision": 60}, {},
         r"middleware\[0\]: middleware 'secure_aggregation' .*precision = 60 must be at most "
         r"bits - 9 = 53"),
        ("secure_aggregation", {"clients": 4, "fraction": 0.25},
         r"middleware\[0\]: .*samples 1 client per round"),
    ],
)
def test_secure_aggregation_that_would_hide_nothing_is_a_spec_error(middleware, protocol,
                                                                   message, tmp_path) -> None:
    with pytest.raises(paralab.SpecError, match=message):
        paralab.run(spec(middleware=[middleware], overrides={"output": str(tmp_path)},
                         **protocol))
    assert list(tmp_path.iterdir()) == []


class _Run:
    """The one thing the middleware reads of a run here: its seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed


def test_dp_noise_is_a_secret_not_a_function_of_public_seeds() -> None:
    update = round_updates(1)[0]

    def noise(middleware: DPFedAvg, run_seed: int) -> torch.Tensor:
        return through(middleware, update, _Run(run_seed)).delta["w"] - update.delta["w"]

    # Clip large: only the noise moves w. Two runs of the same spec and seed: other noise.
    default = noise(DPFedAvg(clip=100.0, noise_multiplier=1.0), 3)
    assert not torch.equal(default, noise(DPFedAvg(clip=100.0, noise_multiplier=1.0), 3))
    assert float(default.std()) > 0.5  # the declared scale: 1.0 * 100 / sqrt(clients)
    # reproducible_noise: a function of the run seed (or seed), for debugging only.
    seeded = DPFedAvg(clip=100.0, noise_multiplier=1.0, reproducible_noise=True)
    assert not torch.equal(noise(seeded, 0), noise(seeded, 1))
    assert torch.equal(noise(seeded, 3), noise(
        DPFedAvg(clip=100.0, noise_multiplier=1.0, reproducible_noise=True), 3))
    pinned = DPFedAvg(clip=100.0, noise_multiplier=1.0, seed=5, reproducible_noise=True)
    assert torch.equal(noise(pinned, 0), noise(pinned, 1))
    assert seeded.noise_source == "reproducible from a seed: NOT private"


def test_fixed_size_client_sampling_is_accounted_as_dp_accounting_does() -> None:
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant

    accountant = rdp_privacy_accountant.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    # Replace-one: the clipped sum moves by up to 2 * clip, so the noise multiplier relative
    # to the sensitivity is z / 2.
    accountant.compose(dp_accounting.SelfComposedDpEvent(
        dp_accounting.SampledWithoutReplacementDpEvent(
            100, 10, dp_accounting.GaussianDpEvent(1.0 / 2)), 50))
    ours = epsilon_fixed_size(1.0, {(100, 10): 50}, 1e-5)
    assert ours == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-12)
    assert ours > 1.5 * epsilon(1.0, 0.1, 50, 1e-5), "Poisson accounting understated it"


def test_the_pld_accountant_is_refused_for_fixed_size_client_sampling() -> None:
    dp = {"name": "dp", "clip": 0.5, "noise_multiplier": 1.1, "accountant": "pld"}
    with pytest.raises(paralab.SpecError, match="accountant = 'pld': client_sampling = 'fixed'"):
        run(middleware=[dp], rounds=1, clients=10, fraction=0.5, client_sampling="fixed")
