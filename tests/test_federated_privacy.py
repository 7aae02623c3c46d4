"""DP-FedAvg and secure aggregation as middleware around the client update."""

from __future__ import annotations

import pytest
import torch

from paralab.context import Update
from paralab_federated.aggregation import weighted_mean
from paralab_federated.privacy import DPFedAvg, epsilon
from paralab_federated.secure_aggregation import SecureAggregation
from tests.federated_helpers import final_parameters, max_difference, run

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


def through(middleware, update: Update) -> Update:
    """Drive a wrapper hookimpl by hand, as pluggy does: the inner result goes in at the yield."""
    generator = middleware.paralab_process_update(None, None)
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
    assert rounds[-1] == pytest.approx(epsilon(1.1, 5 / 20, 3, 1e-5), rel=1e-9)
    alone = final_parameters(middleware=[dp])
    both = final_parameters(middleware=["secure_aggregation", dp])
    reversed_order = final_parameters(middleware=[dp, "secure_aggregation"])
    assert max_difference(alone, both) < 1e-6
    assert max_difference(alone, reversed_order) < 1e-6
    plain = final_parameters()
    assert max_difference(alone, plain) > 1e-3  # the noise and clipping did act


def test_bad_dp_options_name_the_option() -> None:
    with pytest.raises(ValueError, match="dp: clip = 0"):
        DPFedAvg(clip=0)
    with pytest.raises(ValueError, match=r"dp: delta = 2 must be in \(0, 1\)"):
        DPFedAvg(delta=2)
    with pytest.raises(ValueError, match="accountant = 'moments'"):
        DPFedAvg(accountant="moments")
