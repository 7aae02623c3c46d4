"""Issue 18: per-client metrics on held-out rows (``client_test_fraction``), not on the rows the
clients trained on; without held-out rows the metrics are named ``clients/train_accuracy_*``."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch

import paralab
from paralab_federated.schedule import plan_round
from tests.federated_helpers import spec

ROUNDS = 3


class _Capture:
    def __init__(self) -> None:
        self.model: Any = None
        self.protocol: Any = None
        self.data: Any = None

    @paralab.hookimpl
    def paralab_after_experiment(self, run: Any, result: Any) -> None:
        self.model = copy.deepcopy(run.model).eval()
        self.protocol = run.protocol
        self.data = (run.dataset.x, run.dataset.y)


def _run(**protocol: Any) -> tuple[paralab.Result, _Capture]:
    registry = paralab.get_registry()
    capture = _Capture()
    registry.pm.register(capture, name="capture-clients")
    try:
        result = paralab.run(spec(**{"rounds": ROUNDS, "client_eval": True, **protocol}))
    finally:
        registry.pm.unregister(name="capture-clients")
    return result, capture


def test_client_metrics_are_the_global_models_accuracy_on_held_out_rows() -> None:
    result, capture = _run(client_test_fraction=0.25)
    protocol = capture.protocol
    trained, held = protocol._partition, protocol._held_out
    for k in range(trained.n_clients):
        train_rows = set(trained.client(k).tolist())
        test_rows = set(held.client(k).tolist())
        assert test_rows and not train_rows & test_rows
        n = len(train_rows) + len(test_rows)
        assert len(test_rows) == round(0.25 * n)
    # No held-out row is ever in a minibatch of any round.
    held_rows = set(held.rows.tolist())
    for r in range(ROUNDS):
        plan = plan_round(trained, round_index=r, seed=0, fraction=0.25, stragglers=0.0,
                          epochs=1, batch_size=16)
        assert all(not held_rows & set(b.tolist()) for bs in plan.batches.values() for b in bs)
    # The reported distribution is the final model's per-client accuracy on held-out rows,
    # computed here from the model itself.
    x, y = capture.data
    with torch.no_grad():
        per_client = np.array([
            float((capture.model(x[held.client(k)]).argmax(1) == y[held.client(k)])
                  .double().mean()) for k in range(held.n_clients)])
    worst = np.sort(per_client)[:math.ceil(0.1 * len(per_client))].mean()
    assert result.metrics["clients/accuracy_mean"] == pytest.approx(per_client.mean(), abs=1e-6)
    assert result.metrics["clients/accuracy_worst10"] == pytest.approx(worst, abs=1e-6)
    assert result.metrics["clients/accuracy_std"] == pytest.approx(per_client.std(ddof=1),
                                                                   abs=1e-6)
    assert result.metrics["clients/rows"] == "held_out"
    assert result.metrics["clients/evaluated"] == 20
    assert "clients/train_accuracy_mean" not in result.metrics


def test_held_out_rows_leave_the_training_rows_and_weights() -> None:
    _, capture = _run(client_test_fraction=0.25, rounds=1)
    plan = plan_round(capture.protocol._partition, round_index=0, seed=0, fraction=0.25,
                      stragglers=0.0, epochs=1, batch_size=16)
    sizes = capture.protocol._partition.sizes
    assert all(plan.weights[k] == float(sizes[k]) for k in plan.clients)
    assert int(sizes.sum()) + len(capture.protocol._held_out.rows) == 1437  # digits' train


def test_without_held_out_rows_the_metrics_say_train() -> None:
    result, _ = _run(rounds=1)
    assert result.metrics["clients/rows"] == "train"
    assert "clients/train_accuracy_mean" in result.metrics
    assert "clients/accuracy_mean" not in result.metrics


@pytest.mark.parametrize("value", [1.0, -0.1])
def test_bad_client_test_fraction_is_a_spec_error(value: float, tmp_path: Any) -> None:
    experiment = spec(overrides={"output": str(tmp_path)}, client_test_fraction=value)
    with pytest.raises(paralab.SpecError, match="protocol.client_test_fraction"):
        paralab.run(experiment)
    assert not any(tmp_path.iterdir())


def test_a_fraction_that_holds_out_nothing_is_a_spec_error(tmp_path: Any) -> None:
    # 1437 rows among 700 clients: 2 or 3 rows each; 0.1 of that rounds to 0 everywhere.
    experiment = spec(overrides={"output": str(tmp_path)}, clients=700,
                      client_test_fraction=0.1)
    with pytest.raises(paralab.SpecError, match="client_test_fraction = 0.1 holds out no row"):
        paralab.run(experiment)
    assert not any(tmp_path.iterdir())
