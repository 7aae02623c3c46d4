"""The simulator: vmap and loop agree, a seed reproduces a run bit for bit, failures are
skipped with the client's id, and bad options are spec errors before any run folder exists."""

from __future__ import annotations

import pytest
import torch

import paralab
from paralab.components import LossSpec
from paralab_federated.local_training import VmapTrainer, parameters_of, train_client
from paralab_federated.partitions import make_partition
from paralab_federated.schedule import client_batches, padded, plan_round
from tests.federated_helpers import final_parameters, max_difference, run, spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


def test_vmap_step_equals_per_client_sgd() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x, y = torch.randn(60, 6), torch.randint(0, 3, (60,))
    labels = y.clone()
    part = make_partition(torch.arange(60), labels, 4, "quantity", alpha=1.0)
    plan = plan_round(part, round_index=0, seed=3, fraction=1.0, stragglers=0.0, epochs=2,
                      batch_size=5)
    rows, mask = padded(plan, plan.clients)
    params = parameters_of(model)
    deltas, losses = VmapTrainer(model).train(params, x, y, rows, mask, lr=0.1, mu=0.05)
    scratch = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    for c, k in enumerate(plan.clients):
        reference, loss = train_client(scratch, params, x, y, plan.batches[k], 0.1, 0.05)
        for n in params:
            torch.testing.assert_close(deltas[n][c], reference[n], atol=1e-6, rtol=1e-5)
        assert float(losses[c]) == pytest.approx(loss, rel=1e-5)


def test_client_batches_cover_the_client_each_epoch() -> None:
    rows = torch.arange(10, 23)
    batches = client_batches(rows, epochs=2, batch_size=5, seed=0, round_index=1, client=4)
    assert [len(b) for b in batches] == [5, 5, 3, 5, 5, 3]
    assert torch.equal(torch.cat(batches[:3]).sort().values, rows)
    assert torch.equal(torch.cat(batches[3:]).sort().values, rows)
    full = client_batches(rows, epochs=1, batch_size=None, seed=0, round_index=1, client=4)
    assert len(full) == 1 and len(full[0]) == 13


def test_vmap_and_loop_give_the_same_global_model() -> None:
    method = {"name": "fedprox", "mu": 0.1}
    vmap = final_parameters(method=method, backend="vmap", partition="dirichlet", alpha=0.3)
    loop = final_parameters(method=method, backend="loop", partition="dirichlet", alpha=0.3)
    assert max_difference(vmap, loop) < 1e-4


def test_a_seed_reproduces_the_run_bit_for_bit() -> None:
    first = final_parameters(backend="vmap", stragglers=0.2)
    second = final_parameters(backend="vmap", stragglers=0.2)
    assert max_difference(first, second) == 0.0
    other = final_parameters(backend="vmap", stragglers=0.2, seed=1)
    assert max_difference(first, other) > 1e-3


def test_fedsgd_is_one_full_batch_gradient_step_per_round() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    part = make_partition(torch.arange(30), y, 3, "iid")
    plan = plan_round(part, round_index=0, seed=0, fraction=1.0, stragglers=0.0, epochs=1,
                      batch_size=None)
    assert all(len(plan.batches[k]) == 1 and len(plan.batches[k][0]) == 10 for k in plan.clients)
    params = parameters_of(model)
    delta, _ = train_client(torch.nn.Linear(4, 3), params, x, y, plan.batches[0], 0.5)
    loss = torch.nn.functional.cross_entropy(model(x[plan.batches[0][0]]), y[plan.batches[0][0]])
    grads = torch.autograd.grad(loss, list(model.parameters()))
    for (n, _), g in zip(model.named_parameters(), grads):
        torch.testing.assert_close(delta[n], -0.5 * g)


def test_fedavg_learns_digits_and_reports_rounds() -> None:
    result = run(method={"name": "fedavg", "lr": 0.3}, rounds=8, clients=20, fraction=0.5,
                 client_eval=True, local_epochs=2)
    assert result.status == "completed"
    rounds = result.phases
    assert [p["kind"] for p in rounds] == ["round"] * 8
    assert result.metrics["test/accuracy"] > 0.7
    last = rounds[-1]["metrics"]
    assert last["round/clients"] == 10
    n_params = 64 * 32 + 32 + 32 * 10 + 10
    assert last["round/bytes_sent"] == 10 * 4 * n_params
    assert last["round/bytes_received"] == 10 * 4 * n_params
    assert result.metrics["comm/bytes_sent"] == 8 * 10 * 4 * n_params
    # No held-out rows (client_test_fraction = 0): the per-client metrics say "train".
    assert 0 <= last["clients/train_accuracy_worst10"] <= last["clients/train_accuracy_mean"] <= 1
    assert "clients/accuracy_mean" not in last and last["clients/rows"] == "train"
    assert "clients/accuracy" in last  # the pooled accuracy over all clients' rows


def test_stragglers_drop_out_of_rounds() -> None:
    result = run(stragglers=0.5, rounds=4, clients=20, fraction=0.5)
    dropped = [p["metrics"]["round/dropped"] for p in result.phases]
    reporting = [p["metrics"]["round/clients"] for p in result.phases]
    assert sum(dropped) > 0
    assert [d + c for d, c in zip(dropped, reporting)] == [10] * 4
    assert [len(p["info"]["dropped"]) for p in result.phases] == dropped


class _FailOnClientRows:
    """A loss term that raises for batches holding a given row, as a broken client would."""

    def __init__(self, row: int = -1) -> None:
        self.row = row

    def __call__(self, batch):
        if bool((batch.indices == self.row).any()):
            raise RuntimeError("corrupt local data")
        return torch.zeros(())


class _FailingPlugin:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_losses(self):
        return [LossSpec("fail_on_row", _FailOnClientRows, "Raises on one row (tests).",
                         {"row": -1})]


def test_a_failing_client_is_reported_and_the_round_goes_on(tmp_path) -> None:
    from paralab.testing import isolated_registry, use_registry

    registry = isolated_registry(("federated_test_failing", _FailingPlugin()), discover=True)
    experiment = spec(clients=5, fraction=1.0, rounds=2, backend="vmap")
    bad_row = int(paralab.load_dataset("digits").splits["train"][0])
    experiment["losses"] = [{"name": "fail_on_row", "row": bad_row}]
    experiment["output"] = str(tmp_path)
    with use_registry(registry), pytest.warns(RuntimeWarning,
                                              match=r"client \d+ failed in round 0"):
        result = paralab.run(experiment)
    assert result.status == "completed"
    failures = result.metrics["federated/failures"]
    assert {f["round"] for f in failures} == {0, 1}
    assert len({f["client"] for f in failures}) == 1
    assert "corrupt local data" in failures[0]["error"]
    assert [p["metrics"]["round/clients"] for p in result.phases] == [4, 4]
    assert (tmp_path / "federated-test" / "federated_accuracy.png").is_file()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fraction": 0.0}, r"protocol\.fraction = 0\.0: must be > 0"),
        ({"fraction": 1.5}, r"protocol\.fraction = 1\.5: must be <= 1"),
        ({"partition": "dirichlet", "alpha": 0.0}, r"protocol\.alpha = 0\.0: must be > 0"),
        ({"backend": "gpu-farm"}, r"protocol\.backend = 'gpu-farm': expected one of 'vmap'"),
        ({"stragglers": 1.0}, r"protocol\.stragglers = 1\.0: must be < 1"),
        ({"rounds": 0}, r"protocol\.rounds = 0: must be >= 1"),
        ({"seed": 1.5}, r"protocol\.seed = 1\.5: expected int or None"),
        ({"partition": "pathological"}, r"protocol\.partition = 'pathological': expected one"),
        ({"target_accuracy": float("nan")}, r"protocol\.target_accuracy = nan: must be a finite"),
    ],
)
def test_bad_options_are_spec_errors_naming_the_option(options, message, tmp_path) -> None:
    # Declared constraints: checked before anything is built, and no run folder is made.
    with pytest.raises(paralab.SpecError, match=message):
        paralab.run(spec(**options, overrides={"output": str(tmp_path)}))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"clients": 5000}, "clients = 5000 is more than the 1437 training examples"),
        ({"partition": "shards", "classes_per_client": 11},
         "classes_per_client = 11 must be in 1..10"),
        ({"partition": "shards", "clients": 1000, "classes_per_client": 2},
         "clients \\* classes_per_client = 2000 shards but only 1437 training examples"),
        ({"eval_splits": ["test", "valid"]}, "eval_splits\\[1\\] = 'valid' is not a split"),
    ],
)
def test_partitions_the_data_cannot_hold_are_spec_errors(options, message, tmp_path) -> None:
    # Only the dataset knows its size and classes: checked by validate(run), before any folder.
    with pytest.raises(paralab.SpecError, match=message) as caught:
        paralab.run(spec(**options, overrides={"output": str(tmp_path)}))
    assert "protocol: protocol 'federated'" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_ray_backend_with_loss_terms_is_a_spec_error(tmp_path) -> None:
    experiment = spec(backend="ray", overrides={"output": str(tmp_path)})
    experiment["losses"] = [{"name": "fail_on_row", "row": -1}]
    from paralab.testing import isolated_registry, use_registry

    registry = isolated_registry(("federated_test_failing", _FailingPlugin()), discover=True)
    with use_registry(registry), pytest.raises(
            paralab.SpecError, match="backend = 'ray' cannot run the spec's loss terms"):
        paralab.run(experiment)
    assert list(tmp_path.iterdir()) == []
