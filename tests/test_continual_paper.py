"""papers/three_scenarios: its claims name what the script produces, its specs are valid, and
one epoch on real split MNIST already shows the table's Class-IL shape (the whole quick
reproduction takes minutes here, so the pieces are tested)."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

import paralab
from paralab import get_registry

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest

FOLDER = Path(__file__).resolve().parents[1] / "papers" / "three_scenarios"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("three_scenarios", FOLDER / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_claims_and_orderings_name_metrics_the_script_reports(script):
    config = tomllib.loads((FOLDER / "paper.toml").read_text("utf-8"))
    produced = {f"{m}/{s}" for m in script.METHODS for s in script.SCENARIOS}
    claimed = {claim["metric"] for claim in config["claims"]}
    ordered = {m for ordering in config["orderings"] for m in ordering["metrics"]}
    assert claimed <= produced and ordered <= produced
    # Every regulariser's Class-IL collapse and replay's survival are checked, not just shown.
    checks = {claim["metric"]: claim["check"] for claim in config["claims"]}
    for method in ("ewc", "online_ewc", "si"):
        assert checks[f"{method}/class_il"] == "at_most"
    assert checks["replay/class_il"] == "at_least"


def test_every_spec_of_the_table_is_valid(script):
    registry = get_registry()
    for name in script.METHODS:
        for scenario_name, scenario in script.SCENARIOS.items():
            method = script.method_for(name, scenario_name)
            paralab.ExperimentSpec.from_dict(script.spec(method, scenario, 1, 0)).validate(registry)


def test_the_regularisers_run_at_the_authors_strengths(script):
    """SI's c and EWC's lambda (halved for paralab's penalty) per scenario, from the authors'
    params/param_values.py: at c = 1 / lambda = 1000 for every scenario, SI did nothing."""
    assert [script.method_for("si", s)["si_lambda"] for s in script.SCENARIOS] == [
        10.0, 50000.0, 5000.0]
    assert [script.method_for("ewc", s)["ewc_lambda"] for s in script.SCENARIOS] == [
        5e4, 5e9, 5e8]
    assert script.method_for("online_ewc", "class_il")["ewc_lambda"] == 5e8
    assert script.method_for("ewc", "task_il")["fisher_batch_size"] == 1
    assert "si_lambda" not in script.method_for("none", "task_il")


def test_class_il_shape_on_split_mnist(script, data_root):
    """One epoch per experience: EWC collapses to about a fifth, replay does not."""
    class_il = script.SCENARIOS["class_il"]

    def run(method: str) -> dict:
        spec = script.spec(script.method_for(method, "class_il"), class_il, 1, 0)
        spec["model"]["hidden"] = [100]  # smaller than the paper's 400-400, to stay fast
        return paralab.run(spec).metrics

    ewc, replay = run("ewc"), run("replay")
    assert ewc["average_accuracy"] < 0.3
    assert replay["average_accuracy"] > ewc["average_accuracy"] + 0.3
