"""scripts/gpu_check.py runs only where there is a GPU (never in CI): keep its example list
and spec building true here, so that a renamed example or option is caught before a GPU
session spends its device time finding out."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from paralab.host import get_registry
from paralab.spec import ExperimentSpec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_listed_example_exists_and_validates(gpu_check) -> None:
    assert len(gpu_check.EXAMPLES) >= 8
    for example, metric, _, overrides in gpu_check.EXAMPLES:
        assert (ROOT / "examples" / example).is_file(), example
        assert metric.endswith("accuracy"), metric
        built = gpu_check._spec(example, overrides, "cuda")
        assert built["device"] == "cuda" and built["output"] is None
        for section, options in overrides.items():  # overrides reach the spec's section
            for key, value in options.items():
                assert built[section][key] == value
        ExperimentSpec.from_dict(built).validate(get_registry())


def test_merge_keeps_unnamed_options(gpu_check) -> None:
    merged = gpu_check._merge({"protocol": {"name": "p", "epochs": 5, "batch_size": 8}},
                              {"protocol": {"epochs": 1}})
    assert merged == {"protocol": {"name": "p", "epochs": 1, "batch_size": 8}}


def test_metric_lookup_falls_back_to_the_metric_name(gpu_check) -> None:
    assert gpu_check._metric({"test/accuracy": 0.5}, "test/accuracy") == 0.5
    assert gpu_check._metric({"accuracy": 0.25}, "test/accuracy") == 0.25
    assert gpu_check._metric({"loss": 1.0}, "test/accuracy") is None


def test_the_seed_check_runs_and_compares_on_the_cpu(gpu_check, monkeypatch) -> None:
    monkeypatch.setattr(gpu_check, "GPU", "cpu")  # as --dry-run does
    out = gpu_check.check_seeds((1, 8))
    assert out["stacked_8"] == 8 and out["accuracies_equal_8"] is True
    assert out["cost_8_seeds_over_1"] > 0
