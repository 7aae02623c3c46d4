"""papers/buzzega2020_der: its claims name what the script produces, its specs are valid and
carry the authors' settings, and one seed on real split MNIST shows DER++ far above SGD."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

import paralab
from paralab import get_registry

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest

FOLDER = Path(__file__).resolve().parents[1] / "papers" / "buzzega2020_der"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("buzzega2020_der", FOLDER / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_claims_orderings_and_quick_name_metrics_the_script_reports(script):
    config = tomllib.loads((FOLDER / "paper.toml").read_text("utf-8"))
    produced = {f"{m}/{s}" for m in script.METHODS for s in script.SCENARIOS}
    named = ({c["metric"] for c in config["claims"]} | {q["metric"] for q in config["quick"]}
             | {m for o in config["orderings"] for m in o["metrics"]})
    assert named <= produced
    # Every replay method at both buffers is judged against the paper in both scenarios.
    checks = {c["metric"]: c["check"] for c in config["claims"]}
    for method in ("er", "der", "derpp"):
        for size in (200, 500):
            assert checks[f"{method}_{size}/class_il"] == "within"
            assert checks[f"{method}_{size}/task_il"] == "within"
    # Against SGD in the same run, also in quick mode: a no-op replay fails.
    quick = [o["metrics"] for o in config["orderings"] if o.get("quick")]
    assert ["derpp_200/class_il", "sgd/class_il"] in quick


def test_specs_are_valid_and_carry_the_authors_settings(script):
    registry = get_registry()
    for method in script.METHODS.values():
        for scenario in script.SCENARIOS.values():
            paralab.ExperimentSpec.from_dict(script.spec(method, scenario, 0)).validate(registry)
    derpp = script.spec(script.METHODS["derpp_200"], script.SCENARIOS["task_il"], 0)
    assert derpp["method"] == {"name": "der", "buffer_size": 200, "alpha": 0.2, "beta": 1.0,
                               "lr": 0.03, "memory_batch_size": 128, "heads": "shared"}
    assert derpp["protocol"]["batch_size"] == 10 and derpp["protocol"]["epochs"] == 1
    assert derpp["model"] == {"name": "mlp", "hidden": [100, 100]}
    assert script.METHODS["der_500"]["beta"] == 0.0  # DER, not DER++


def test_derpp_far_above_sgd_on_split_mnist(script, data_root):
    class_il = script.SCENARIOS["class_il"]
    sgd = paralab.run(script.spec(script.METHODS["sgd"], class_il, 0)).metrics
    derpp = paralab.run(script.spec(script.METHODS["derpp_200"], class_il, 0)).metrics
    assert sgd["average_accuracy"] < 0.3
    assert derpp["average_accuracy"] > sgd["average_accuracy"] + 0.4
