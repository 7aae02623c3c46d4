"""The federated examples validate, the rounds-to-target stop works, the paper's table
machinery computes speed-ups, and a run on the real MNIST file learns."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import paralab
from paralab.host import get_registry
from tests.federated_helpers import max_difference, run

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("federated_*.toml")),
                         ids=lambda p: p.stem)
def test_examples_are_valid_specs(path: Path) -> None:
    spec = paralab.ExperimentSpec.from_toml(path)
    registry = get_registry()
    missing = [ref.name for _, kind, ref in spec.components()
               if ref.name not in registry.components.get(kind, {})]
    if missing:
        pytest.skip(f"{path.name} needs components not installed here: {missing}")
    spec.validate(registry)
    assert spec.protocol.name == "federated"


def test_target_accuracy_stops_the_run_at_the_first_round_reaching_it() -> None:
    result = run(method={"name": "fedavg", "lr": 0.3}, rounds=30, clients=10, fraction=0.5,
                 target_accuracy=0.5, local_epochs=1)
    reached = result.metrics["federated/rounds_to_target"]
    accuracies = [p["metrics"]["test/accuracy"] for p in result.phases]
    assert 1 < len(result.phases) == reached < 30
    assert accuracies[-1] >= 0.5 and all(a < 0.5 for a in accuracies[:-1])


def _paper_module():
    path = ROOT / "papers" / "mcmahan2017_fedavg" / "reproduce.py"
    spec = importlib.util.spec_from_file_location("federated_paper_reproduce", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_paper_table_reports_rounds_and_speedups_with_the_claimed_names() -> None:
    import tomllib

    module = _paper_module()
    module.CLIENTS = 20
    ours = module.table("digits", ["iid"], [(5, 10)], {"iid": 0.6}, max_rounds=60)
    sgd, avg = ours["iid/fedsgd_rounds"], ours["iid/fedavg_E5_B10_rounds"]
    assert ours["iid/fedavg_E5_B10_speedup"] == pytest.approx(sgd / avg)
    assert avg < sgd  # local epochs save rounds, the table's point
    config = tomllib.loads((ROOT / "papers/mcmahan2017_fedavg/paper.toml").read_text())
    claimed = {claim["metric"] for claim in config["claims"]}
    full_keys = {f"{d}/fedsgd_rounds" for d in ("iid", "noniid")} | {
        f"{d}/fedavg_E{e}_B{b}_{what}" for d in ("iid", "noniid")
        for e, b in module.FEDAVG_SETTINGS for what in ("rounds", "speedup")}
    assert claimed <= full_keys


@pytest.mark.data
def test_fedavg_learns_the_real_mnist_file(data_root) -> None:
    result = paralab.run({
        "dataset": {"name": "mnist", "root": str(data_root / "mnist")},
        "model": {"name": "mlp", "hidden": [64]},
        "protocol": {"name": "federated", "clients": 50, "fraction": 0.2, "rounds": 3,
                     "partition": "iid", "client_eval": True, "client_test_fraction": 0.2},
        "method": {"name": "fedavg", "lr": 0.1},
        "output": None,
        "device": "cpu",
    })
    assert result.metrics["test/accuracy"] > 0.6
    assert result.metrics["clients/accuracy_worst10"] < result.metrics["clients/accuracy_mean"]
    assert result.phases[-1]["metrics"]["round/clients"] == 10


def test_fairness_auditor_groups_the_clients_evaluation_by_client() -> None:
    registry = get_registry()
    if "fairness" not in registry.components.get("auditor", {}):
        pytest.skip("the fairness plugin's auditor is not installed")
    result = paralab.run({
        "dataset": "biased_synthetic",
        "model": {"name": "mlp", "hidden": [16]},
        "protocol": {"name": "federated", "clients": 8, "fraction": 0.5, "rounds": 2},
        "method": "fedavg",
        "auditors": [{"name": "fairness", "intersectional": False, "bootstrap": 0}],
        "output": None,
        "device": "cpu",
    })
    audits = result.phases[-1]["audits"]
    assert "client" not in audits["fairness/test"]  # the test split belongs to no client
    by_client = audits["fairness/clients"]["client"]
    counts = dict(zip(by_client["groups"], by_client["metrics"]["count"]))
    sizes = [counts.get(f"client {k}", 0) for k in range(8)]
    assert sum(sizes) == sum(audits["fairness/clients"]["group"]["metrics"]["count"])
    assert all(size > 0 for size in sizes)


def test_federated_quantum_classifier_vectorizes_like_the_loop() -> None:
    if "vqc" not in get_registry().components.get("model", {}):
        pytest.skip("the quantum plugin's vqc model is not installed")
    from tests.federated_helpers import final_parameters

    quantum = {"model": {"name": "vqc", "n_qubits": 4, "embedding": "amplitude", "layers": 1}}
    options = {"clients": 6, "fraction": 0.5, "rounds": 2, "batch_size": 8, "dataset": "iris"}
    vmap = final_parameters(backend="vmap", overrides=quantum, **options)
    loop = final_parameters(backend="loop", overrides=quantum, **options)
    assert max_difference(vmap, loop) < 1e-5
    assert max_difference(vmap, final_parameters(backend="vmap", **options, overrides={
        **quantum, "seed": 1})) > 1e-4
