"""Issue 18, items 1 (robust aggregation) and 4 (attacks): median, trimmed mean, Krum and
Multi-Krum against Flower's own aggregate functions, and the ``byzantine`` middleware."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import paralab
from paralab import Update
from paralab_federated.byzantine import attackers
from paralab_federated.robust import robust_aggregate
from tests.federated_helpers import run, spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPES = {"w": (6, 4), "b": (4,)}


def _updates(n: int, seed: int = 0) -> tuple[dict[str, torch.Tensor], list[Update]]:
    generator = torch.Generator().manual_seed(seed)
    start = {k: torch.randn(shape, generator=generator, dtype=torch.float64)
             for k, shape in SHAPES.items()}
    updates = [Update({k: torch.randn(shape, generator=generator, dtype=torch.float64)
                       for k, shape in SHAPES.items()}, source=i, weight=float(5 + 3 * i))
               for i in range(n)]
    return start, updates


def _flower_results(start: dict[str, torch.Tensor], updates: list[Update]) -> list[Any]:
    """Flower's input: each client's *model* (global + delta) as NDArrays, with its examples."""
    return [([(start[k] + u.delta[k]).numpy() for k in SHAPES], int(u.weight)) for u in updates]


def _ours(start: dict[str, torch.Tensor], updates: list[Update], rule: str,
          **options: Any) -> list[np.ndarray]:
    delta = robust_aggregate(updates, rule, **options)
    return [(start[k] + delta[k]).numpy() for k in SHAPES]


@pytest.mark.parametrize("n", [5, 6])
def test_median_equals_flowers_fedmedian(n: int) -> None:
    from flwr.server.strategy.aggregate import aggregate_median

    start, updates = _updates(n)
    expected = aggregate_median(_flower_results(start, updates))
    for ours, theirs in zip(_ours(start, updates, "median"), expected):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_trimmed_mean_equals_flowers_fedtrimmedavg() -> None:
    from flwr.server.strategy.aggregate import aggregate_trimmed_avg

    start, updates = _updates(10)
    expected = aggregate_trimmed_avg(_flower_results(start, updates), 0.2)
    for ours, theirs in zip(_ours(start, updates, "trimmed_mean", trim_fraction=0.2), expected):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("rule", "keep"), [("krum", 0), ("multi_krum", 3)])
def test_krum_and_multi_krum_equal_flowers(rule: str, keep: int) -> None:
    from flwr.server.strategy.aggregate import aggregate_krum

    start, updates = _updates(8, seed=3)
    updates[2] = Update({k: v * 40 for k, v in updates[2].delta.items()}, source=2, weight=11.0)
    expected = aggregate_krum(_flower_results(start, updates), num_malicious=2, to_keep=keep)
    ours = _ours(start, updates, rule, malicious=2, keep=keep)
    for a, b in zip(ours, expected):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


def test_the_median_survives_sign_flipping_clients_where_the_mean_does_not() -> None:
    """20 clients, 10 per round, 30% Byzantine (6 clients) sending -5 x their delta: the
    weighted mean is driven backwards, the coordinate median is not (stated fraction 0.3)."""
    attack = {"name": "byzantine", "attack": "sign_flip", "fraction": 0.3, "scale": 5.0}
    options = {"rounds": 8, "clients": 20, "fraction": 0.5, "local_epochs": 2,
               "method": {"name": "fedavg", "lr": 0.3}}
    honest = run(**options)
    mean = run(middleware=[attack], **options)
    median = run(middleware=[attack], aggregation="median", **options)
    assert len(mean.metrics["byzantine/clients"]) == 6
    accuracy = {name: r.metrics["test/accuracy"]
                for name, r in (("honest", honest), ("mean", mean), ("median", median))}
    # Measured (seed 0): honest 0.911, median 0.881, mean 0.100 (chance).
    assert accuracy["honest"] > 0.8, accuracy
    assert accuracy["median"] > accuracy["honest"] - 0.1, accuracy
    assert accuracy["mean"] < 0.3, accuracy


@pytest.mark.parametrize(("attack", "share"), [("scale", 0.3), ("label_flip", 0.7)])
def test_attacks_hurt_the_mean_and_krum_resists_scaling(attack: str, share: float) -> None:
    """Scaled updates (x20 from 30% of clients) and label flipping (70% of clients: a
    minority of flipped labels only slows FedAvg, 0.864 against 0.911 at 30%)."""
    byzantine = {"name": "byzantine", "attack": attack, "fraction": share,
                 "scale": 20.0}
    options = {"rounds": 8, "clients": 20, "fraction": 0.5, "local_epochs": 2,
               "method": {"name": "fedavg", "lr": 0.3}}
    honest = run(**options).metrics["test/accuracy"]
    attacked = run(middleware=[byzantine], **options).metrics["test/accuracy"]
    assert attacked < honest - 0.1, (attacked, honest)  # the attack does act
    if attack == "scale":
        krum = run(middleware=[byzantine], aggregation="multi_krum", krum_malicious=3,
                   **options).metrics["test/accuracy"]
        assert krum > honest - 0.1, (krum, honest)


def test_attackers_are_a_fixed_seeded_set() -> None:
    assert attackers(20, 0.3, 0) == attackers(20, 0.3, 0)
    assert len(attackers(20, 0.3, 0)) == 6 and attackers(20, 0.3, 0) != attackers(20, 0.3, 1)


@pytest.mark.parametrize(
    ("middleware", "protocol", "message"),
    [
        (["dp"], {"aggregation": "median"}, r"aggregation = 'median' cannot run with middleware \['dp'\]"),
        (["secure_aggregation"], {"aggregation": "krum"}, "secure aggregation reveals only the sum"),
        ([{"name": "byzantine", "fraction": 0.01}], {}, r"fraction = 0.01 of 20 clients is no attacker"),
        ([], {"aggregation": "mode"}, r"protocol.aggregation = 'mode'"),
        ([], {"trim_fraction": 0.5}, r"protocol.trim_fraction = 0.5: must be < 0.5"),
    ],
)
def test_bad_robust_specs_are_spec_errors(middleware: list[Any], protocol: dict[str, Any],
                                          message: str, tmp_path: Any) -> None:
    experiment = spec(middleware=middleware, overrides={"output": str(tmp_path)}, **protocol)
    with pytest.raises(paralab.SpecError, match=message):
        paralab.run(experiment)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("protocol", "unused"), [
    ({"partition": "iid", "alpha": 0.1}, "alpha"),
    ({"aggregation": "mean", "trim_fraction": 0.2}, "trim_fraction"),
    ({"aggregation": "median", "krum_malicious": 2}, "krum_malicious"),
    ({"backend": "vmap", "ray_num_cpus": 2}, "ray_num_cpus"),
])
def test_an_option_that_would_do_nothing_is_a_spec_error(protocol, unused) -> None:
    spec = {"dataset": "digits", "model": "mlp", "output": None, "method": {"name": "fedavg"},
            "protocol": {"name": "federated", "clients": 4, "rounds": 1, **protocol}}
    with pytest.raises(paralab.SpecError, match=rf"protocol\.{unused}: .* uses it only when"):
        paralab.run(spec)
