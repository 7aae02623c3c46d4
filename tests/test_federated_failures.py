"""Failures are never reported as success: a raising middleware fails the run naming it, a
round in which too many (or all) clients failed fails the run naming the round and the first
client's error, a lone failing client is skipped with a warning, and ``max_client_failures``
accepts only a share in [0, 1]."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import paralab
from paralab.components import LossSpec, MiddlewareSpec
from paralab.testing import isolated_registry, use_registry
from tests.federated_helpers import spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest

PLUGIN = "federated_test_faults"


class Boom(paralab.Middleware):
    """Middleware whose ``paralab_process_update`` raises from round ``from_round`` on."""

    def __init__(self, from_round: int = 0) -> None:
        self.from_round = from_round

    @paralab.hookimpl(wrapper=True)
    def paralab_process_update(self, run: Any, update: paralab.Update) -> Any:
        update = yield
        if update.info.get("round", 0) >= self.from_round:
            raise ValueError("boom: the update cannot be processed")
        return update


class Passthrough(paralab.Middleware):
    """Middleware of the same plugin module that only passes updates on (an outer wrapper)."""

    @paralab.hookimpl(wrapper=True)
    def paralab_process_update(self, run: Any, update: paralab.Update) -> Any:
        return (yield)


class FailClients:
    """A loss term that raises on the rows of the given clients from ``from_round`` on, as a
    client with corrupt local data would."""

    def __init__(self, clients: list[int] | None = None, from_round: int = 0) -> None:
        self.clients, self.from_round = list(clients or []), from_round

    def __call__(self, batch: paralab.Batch) -> torch.Tensor:
        run = batch.run
        if run.current_phase.index >= self.from_round:
            partition = run.state["paralab_federated"]["partition"]
            for k in self.clients:
                if bool(torch.isin(batch.indices.cpu(), partition.client(k).cpu()).any()):
                    raise RuntimeError(f"corrupt local data of client {k}")
        return torch.zeros(())


class FaultsPlugin:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_middleware(self) -> list[MiddlewareSpec]:
        return [
            MiddlewareSpec("boom", Boom, "Raises on every update (tests).", {"from_round": 0},
                           hooks=("paralab_process_update",)),
            MiddlewareSpec("passthrough", Passthrough, "Passes updates on (tests).", {},
                           hooks=("paralab_process_update",)),
        ]

    @paralab.hookimpl
    def paralab_losses(self) -> list[LossSpec]:
        return [LossSpec("fail_clients", FailClients, "Raises on clients' rows (tests).",
                         {"clients": [], "from_round": 0})]


@pytest.fixture
def registry() -> Any:
    registry = isolated_registry((PLUGIN, FaultsPlugin()), discover=True)
    with use_registry(registry):
        yield registry


def failing_spec(tmp_path: Path, *, failing: list[int], from_round: int = 0,
                 **protocol: Any) -> dict[str, Any]:
    """Every client of a round trains (``fraction = 1``); ``failing`` clients raise."""
    options = {"clients": 4, "fraction": 1.0, "rounds": 3, "backend": "loop", **protocol}
    experiment = spec(overrides={"output": str(tmp_path)}, **options)
    experiment["losses"] = [{"name": "fail_clients", "clients": failing,
                             "from_round": from_round}]
    return experiment


def saved(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "federated-test" / "result.json").read_text())


def client_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "federated: client" in str(w.message)]


# ------------------------------------------------------------------------------ middleware


@pytest.mark.usefixtures("registry")
def test_a_raising_middleware_fails_the_run_at_once_naming_it(tmp_path: Path) -> None:
    experiment = spec(clients=6, fraction=1.0, rounds=3, overrides={"output": str(tmp_path)},
                      middleware=[{"name": "boom", "from_round": 1}])
    with warnings.catch_warnings(record=True) as caught, \
            pytest.raises(paralab.RunError) as failure:
        warnings.simplefilter("always")
        paralab.run(experiment)
    message = str(failure.value)
    assert "middleware 'boom'" in message and f"plugin {PLUGIN}" in message
    assert "boom: the update cannot be processed" in message
    assert "(during round 1)" in message
    assert failure.value.plugin == PLUGIN
    # Not a client failure: no client is reported skipped, no round "completes" without them.
    assert client_warnings(caught) == []
    result = failure.value.result
    assert result.status == "failed"
    assert result.error["stage"] == "middleware" and result.error["component"] == "boom"
    assert result.error["type"] == "ValueError"
    assert "update of client" in result.error["traceback"]
    on_disk = saved(tmp_path)
    assert on_disk["status"] == "failed"
    assert [p["index"] for p in on_disk["phases"]] == [0]  # the finished round is kept
    assert on_disk["phases"][0]["metrics"]["round/clients"] == 6


@pytest.mark.usefixtures("registry")
def test_the_inner_raising_middleware_is_named_not_its_neighbour(tmp_path: Path) -> None:
    # Both come from one module, so only the frame that raised tells them apart.
    experiment = spec(clients=4, fraction=1.0, rounds=2, overrides={"output": str(tmp_path)},
                      middleware=["passthrough", "boom", "dp"])
    with pytest.raises(paralab.RunError, match=r"middleware 'boom'.*\(during round 0\)") as failure:
        paralab.run(experiment)
    assert failure.value.result.error["component"] == "boom"
    assert saved(tmp_path)["phases"] == []


def test_a_middleware_that_cannot_act_fails_the_run_naming_it(tmp_path: Path) -> None:
    # DP listed after secure aggregation would see masked updates: before, every client was
    # dropped as "failed" and the run completed with the untrained model.
    from paralab_federated.secure_aggregation import SecureAggregation

    class ActsInner(SecureAggregation):
        """Secure aggregation registered as an inner wrapper, so DP sees masked updates."""

        @paralab.hookimpl(wrapper=True)
        def paralab_process_update(self, run: Any, update: paralab.Update) -> Any:
            return (yield from SecureAggregation.paralab_process_update(self, run, update))

    class InnerPlugin:
        PARALAB_API = "1.0"

        @paralab.hookimpl
        def paralab_middleware(self) -> list[MiddlewareSpec]:
            return [MiddlewareSpec("inner_secure", ActsInner, "Masks as the inner wrapper.", {},
                                   hooks=("paralab_process_update",))]

    registry = isolated_registry(("federated_test_inner", InnerPlugin()), discover=True)
    experiment = spec(clients=4, fraction=1.0, rounds=2, overrides={"output": str(tmp_path)},
                      middleware=["dp", "inner_secure"])
    with pytest.raises(paralab.RunError, match="already masked by secure aggregation") as failure:
        paralab.run(experiment, registry=registry)
    assert failure.value.result.error["component"] == "dp"
    assert failure.value.plugin == "paralab_federated"
    assert "middleware 'dp'" in str(failure.value)


# --------------------------------------------------------------------------------- clients


@pytest.mark.usefixtures("registry")
def test_a_round_in_which_every_client_failed_fails_the_run(tmp_path: Path) -> None:
    experiment = failing_spec(tmp_path, failing=[0, 1, 2, 3], from_round=1,
                              max_client_failures=1.0)
    with pytest.warns(RuntimeWarning, match=r"client \d failed in round 1"), \
            pytest.raises(paralab.RunError) as failure:
        paralab.run(experiment)
    message = str(failure.value)
    assert "round 1: all 4 clients failed" in message
    assert "the first, client 0:" in message and "corrupt local data of client 0" in message
    assert "loss 'fail_clients'" in message and f"plugin {PLUGIN}" in message
    assert failure.value.plugin == PLUGIN
    result = failure.value.result
    assert result.error["stage"] == "loss" and result.error["component"] == "fail_clients"
    assert result.error["type"] == "ClientFailures"
    assert "corrupt local data" in result.error["traceback"]
    on_disk = saved(tmp_path)
    assert on_disk["status"] == "failed"
    assert [p["index"] for p in on_disk["phases"]] == [0]
    failures = on_disk["metrics"]["federated/failures"]
    assert sorted(f["client"] for f in failures) == [0, 1, 2, 3]
    assert {f["round"] for f in failures} == {1}


@pytest.mark.usefixtures("registry")
def test_the_vmap_backend_fails_the_run_as_the_loop_does(tmp_path: Path) -> None:
    # vmap falls back to the loop for loss terms; a plain vmap run with a failing model is
    # covered by the same check (every client failed).
    experiment = failing_spec(tmp_path, failing=[0, 1, 2, 3], backend="vmap")
    with pytest.warns(RuntimeWarning), pytest.raises(paralab.RunError,
                                                     match=r"round 0: all 4 clients failed"):
        paralab.run(experiment)
    assert saved(tmp_path)["phases"] == []


@pytest.mark.usefixtures("registry")
def test_more_than_the_allowed_share_failing_fails_the_run(tmp_path: Path) -> None:
    experiment = failing_spec(tmp_path, failing=[1, 2, 3])  # 3 of 4 > 0.5 (the default)
    with pytest.warns(RuntimeWarning), pytest.raises(paralab.RunError) as failure:
        paralab.run(experiment)
    assert ("round 0: 3 of 4 clients failed, more than max_client_failures = 0.5 allows; "
            "the first, client 1:") in str(failure.value)
    assert failure.value.result.status == "failed"


@pytest.mark.usefixtures("registry")
@pytest.mark.parametrize(("failing", "allowed"), [([1, 2], 0.5), ([1, 2, 3], 0.75)])
def test_up_to_the_allowed_share_the_rounds_go_on(tmp_path: Path, failing: list[int],
                                                  allowed: float) -> None:
    experiment = failing_spec(tmp_path, failing=failing, rounds=2, max_client_failures=allowed)
    with pytest.warns(RuntimeWarning, match=r"client \d failed in round 0 and was skipped"):
        result = paralab.run(experiment)
    assert result.status == "completed"
    assert [p["metrics"]["round/clients"] for p in result.phases] == [4 - len(failing)] * 2
    assert [p["metrics"]["round/failed"] for p in result.phases] == [len(failing)] * 2


@pytest.mark.usefixtures("registry")
def test_one_failing_client_out_of_many_is_skipped_with_a_warning(tmp_path: Path) -> None:
    experiment = failing_spec(tmp_path, failing=[3], clients=10, rounds=2)
    with pytest.warns(RuntimeWarning, match=r"client 3 failed in round 0 and was skipped"):
        result = paralab.run(experiment)
    assert result.status == "completed"
    assert [p["metrics"]["round/clients"] for p in result.phases] == [9, 9]
    assert [p["metrics"]["round/failed_clients"] for p in result.phases] == [
        {"3": "paralab.context.ComponentFailure: loss 'fail_clients': RuntimeError: "
              "corrupt local data of client 3"}] * 2
    assert saved(tmp_path)["status"] == "completed"


@pytest.mark.usefixtures("registry")
def test_max_client_failures_zero_fails_on_the_first_failure(tmp_path: Path) -> None:
    experiment = failing_spec(tmp_path, failing=[2], max_client_failures=0.0)
    with pytest.warns(RuntimeWarning), pytest.raises(
            paralab.RunError, match=r"round 0: 1 of 4 clients failed, more than "
                                    r"max_client_failures = 0 allows"):
        paralab.run(experiment)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-0.1, r"protocol\.max_client_failures = -0\.1: must be >= 0"),
        (1.5, r"protocol\.max_client_failures = 1\.5: must be <= 1"),
        (float("nan"), r"protocol\.max_client_failures = nan: must be a finite"),
        ("half", r"protocol\.max_client_failures = 'half': expected number"),
        (None, r"protocol\.max_client_failures = None: expected number"),
        (True, r"protocol\.max_client_failures = True: expected number"),
    ],
)
def test_bad_max_client_failures_are_spec_errors(value: Any, message: str,
                                                 tmp_path: Path) -> None:
    with pytest.raises(paralab.SpecError, match=message):
        paralab.run(spec(max_client_failures=value, overrides={"output": str(tmp_path)}))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------- CLI

_BROKEN_MIDDLEWARE = '''
from paralab import MiddlewareSpec, hookimpl

PARALAB_API = "1.0"


class Broken:
    @hookimpl(wrapper=True)
    def paralab_process_update(self, run, update):
        update = yield
        raise KeyError("no such key in the update")


@hookimpl
def paralab_middleware():
    return [MiddlewareSpec("broken", "broken_middleware:Broken", "Raises on every update.", {},
                           hooks=("paralab_process_update",))]
'''


def test_paralab_run_exits_1_when_an_installed_plugins_middleware_raises(tmp_path: Path) -> None:
    # Before: every client was dropped as "failed" and `paralab run` exited 0 ("completed").
    from tests.host_support import make_distribution, paralab_cli

    site = make_distribution(tmp_path / "site", "paralab-broken-middleware", "0.3.0",
                             {"broken_middleware": "broken_middleware"},
                             {"broken_middleware.py": _BROKEN_MIDDLEWARE})
    runs = tmp_path / "runs"
    experiment = tmp_path / "broken.toml"
    experiment.write_text(
        'name = "broken"\ndataset = "digits"\nmodel = { name = "mlp", hidden = [16] }\n'
        'protocol = { name = "federated", clients = 4, fraction = 1.0, rounds = 2 }\n'
        f'method = "fedavg"\nmiddleware = ["broken"]\ndevice = "cpu"\noutput = "{runs}"\n',
        encoding="utf-8")
    completed = paralab_cli("run", str(experiment), path=site)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "plugin broken_middleware" in completed.stderr
    assert "middleware 'broken'" in completed.stderr
    assert "no such key in the update" in completed.stderr
    on_disk = json.loads((runs / "broken" / "result.json").read_text())
    assert on_disk["status"] == "failed"
    assert on_disk["error"]["plugin"] == "broken_middleware"
    assert on_disk["error"]["component"] == "broken"
