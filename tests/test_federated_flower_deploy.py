"""``backend = "flower"``: the spec's federation on Flower's Deployment Engine.

A real SuperLink and three real SuperNodes (``flower-superlink`` / ``flower-supernode``
processes, insecure, on free ports of 127.0.0.1) run paralab's ServerApp and ClientApps.

Tolerance of the parity test: the ClientApps run the simulator's local-training function on
the simulator's minibatches (drawn from the same seeded generators) from float32 parameters
that Flower's ArrayRecords carry bit for bit, with one torch thread as the reference run;
the server's aggregate and step are the simulator's code. So the global model is expected to
be the loop backend's exactly; the test allows 1e-6 on any parameter (float32 rounding, were
a reduction ever to differ) and asks the test accuracy to be equal.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import paralab
from tests.federated_helpers import max_difference, parameters_after, spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest

pytest.importorskip("flwr")

from paralab_federated.flower_deploy import LocalFederation  # noqa: E402

CLIENTS = 3
SHORT = {"clients": CLIENTS, "fraction": 1.0, "rounds": 2, "partition": "dirichlet",
         "alpha": 1.0, "batch_size": 32}
"""A short FedAvg: 3 clients, all sampled every round, non-IID rows."""


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    """A SuperLink and three SuperNodes (partition-id 0, 1, 2), killed (process groups) after
    the module even when a test fails or the start does."""
    local = LocalFederation(CLIENTS, tmp_path_factory.mktemp("flower"),
                            env={"OMP_NUM_THREADS": "1", "PARALAB_QUIET": "1"})
    try:
        local.start()
        yield local
    finally:
        local.stop()
    assert all(p.poll() is not None for p in local.processes.values())
    assert not [pid for pid in local.descendants if alive(pid)]  # SuperExecs, Apps


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited and waiting for its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def flower(federation: LocalFederation, **options: Any) -> dict[str, Any]:
    options = {**SHORT, "flower_timeout": 60.0, **options}
    return spec("fedavg", backend="flower", flower_superlink=federation.address,
                flower_insecure=True, **options)


@pytest.mark.slow
def test_fedavg_on_flower_gives_the_loop_backends_model(federation: LocalFederation) -> None:
    results: dict[str, paralab.Result] = {}

    def start(name: str, the_spec: dict[str, Any]) -> Any:
        return lambda: results.setdefault(name, paralab.run(the_spec))

    deployed = parameters_after(start("flower", flower(federation)))
    loop = parameters_after(start("loop", spec("fedavg", backend="loop", **SHORT)))
    ran, reference = results["flower"], results["loop"]
    assert ran.status == "completed"
    assert ran.metrics["federated/backend"] == "flower"
    assert ran.metrics["flower/run_id"]
    assert max_difference(deployed, loop) <= 1e-6
    assert ran.metrics["test/accuracy"] == reference.metrics["test/accuracy"]
    # Both rounds happened on the federation, with every client reporting.
    assert [p["metrics"]["round/clients"] for p in ran.phases] == [CLIENTS, CLIENTS]
    assert [p["metrics"]["test/accuracy"] for p in ran.phases] == \
        [p["metrics"]["test/accuracy"] for p in reference.phases]
    assert all("train/loss" in p["metrics"] for p in ran.phases)  # the ClientApps' losses


@pytest.mark.slow
def test_a_federation_without_the_specs_clients_fails_the_run(
        federation: LocalFederation) -> None:
    with pytest.raises(paralab.RunError) as failure:
        paralab.run(flower(federation, clients=2))  # three SuperNodes answer
    message = str(failure.value)
    assert failure.value.result.status == "failed"
    assert "ended finished:failed" in message
    assert "the spec has clients = 2" in message  # the ServerApp's error, and its log:
    assert "answered partition-id [0, 1, 2] with num-partitions [3]" in message
    assert "Flower log" in message


def test_an_unreachable_superlink_fails_the_run_with_flwrs_output() -> None:
    from paralab_federated.flower_deploy import free_port

    with pytest.raises(paralab.RunError) as failure:
        paralab.run(spec("fedavg", backend="flower", flower_insecure=True,
                         flower_superlink=f"127.0.0.1:{free_port()}", **SHORT))
    assert failure.value.result.status == "failed"
    assert "flwr run exited with status 1 before a run was started" in str(failure.value)
    assert "Connection to the SuperLink is unavailable" in str(failure.value)


@pytest.mark.parametrize(("change", "named"), [
    ({"middleware": ["secure_aggregation"]}, "middleware ['secure_aggregation']"),
    ({"middleware": [{"name": "dp", "clip": 1.0}]}, "middleware ['dp']"),
    ({"method": "scaffold"}, "method 'scaffold' has stateful clients"),
    ({"method": "ditto"}, "method 'ditto' keeps personal"),
    ({"protocol.client_eval": True}, "client_eval = true"),
    ({"protocol.flower_superlink": ""}, "needs flower_superlink"),
    ({"protocol.flower_root_certificates": "/no/such/ca.pem",
      "protocol.flower_insecure": False}, "is not a file"),
    ({"checkpoint_every": 1, "output": "TMP"}, "checkpoint_every = 1"),
])
def test_what_a_deployment_cannot_run_is_a_spec_error(change: dict[str, Any], named: str,
                                                      tmp_path: Any) -> None:
    the_spec = spec("fedavg", backend="flower", flower_superlink="127.0.0.1:9",
                    flower_insecure=True, **SHORT)
    for key, value in change.items():
        if key.startswith("protocol."):
            the_spec["protocol"][key.split(".", 1)[1]] = value
        else:
            the_spec[key] = str(tmp_path) if value == "TMP" else value
    with pytest.raises(paralab.SpecError, match="backend = 'flower'|flower") as error:
        paralab.run(the_spec)
    assert named in str(error.value)


def test_flower_options_without_the_flower_backend_are_a_spec_error() -> None:
    with pytest.raises(paralab.SpecError, match="flower_superlink"):
        paralab.run(spec("fedavg", backend="loop", flower_superlink="127.0.0.1:9", **SHORT))


@pytest.mark.parametrize("version", [None, (1, 41, 0)])
def test_without_flwr_142_the_spec_error_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch, version: tuple[int, ...] | None) -> None:
    from paralab_federated import flower_deploy

    monkeypatch.setattr(flower_deploy, "flwr_version", lambda: version)
    with pytest.raises(paralab.SpecError, match=r"pip install 'flwr>=1.42,<2'"):
        paralab.run(spec("fedavg", backend="flower", flower_superlink="127.0.0.1:9",
                         flower_insecure=True, **SHORT))
