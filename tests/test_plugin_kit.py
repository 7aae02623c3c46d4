"""The plugin-author story: a third-party package found by its entry point, checked, used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import paralab
from paralab import host
from paralab.testing import check_plugin, isolated_registry
from paralab.testing.conformance import light_import
from tests.host_support import hello_distribution, make_distribution, on_path, paralab_cli


def test_example_plugin_is_discovered_listed_and_used(tmp_path: Path) -> None:
    folder = hello_distribution(tmp_path)
    listed = paralab_cli("plugins", "--json", path=folder)
    hello = next(item for item in json.loads(listed.stdout) if item["name"] == "paralab_hello")
    assert hello["status"] == "active" and hello["version"] == "0.2.0"
    assert hello["distribution"] == "paralab-hello"
    assert hello["contributions"] == {"metric": ["top2_accuracy"], "model": ["bottleneck"],
                                         "protocol": ["early_stopping"],
                                         "method": ["smoothed_sgd"]}
    components = paralab_cli("list", "model", path=folder)
    assert "bottleneck" in components.stdout and "paralab_hello" in components.stdout
    spec = tmp_path / "hello.toml"
    spec.write_text(
        'dataset = "iris"\nmodel = { name = "bottleneck", width = 12 }\n'
        'protocol = { name = "supervised", epochs = 20 }\n'
        f'metrics = ["accuracy", "top2_accuracy"]\noutput = "{tmp_path / "runs"}"\n',
        encoding="utf-8",
    )
    ran = paralab_cli("run", str(spec), path=folder)
    assert ran.returncode == 0, ran.stderr
    result = json.loads((tmp_path / "runs" / "hello" / "result.json").read_text())
    assert result["metrics"]["test/top2_accuracy"] >= result["metrics"]["test/accuracy"] > 0.6
    provider = {p["name"]: p for p in result["plugins"]}["paralab_hello"]
    assert provider["version"] == "0.2.0"


def test_example_plugin_passes_the_conformance_suite(tmp_path: Path) -> None:
    with on_path(hello_distribution(tmp_path)):
        registry = host.make_registry().load()
        report = check_plugin("paralab_hello", registry=registry)
    assert report.passed, report.render()
    names = [check.name for check in report.checks]
    assert "imports nothing heavy at import time" in names
    assert "metric 'top2_accuracy' builds and runs a tiny step" in names
    assert "protocol 'early_stopping' builds and runs a tiny step" in names
    assert "method 'smoothed_sgd' builds and runs a tiny step" in names


def test_conformance_catches_heavy_imports_and_broken_components(tmp_path: Path) -> None:
    source = (
        "import torch\nfrom paralab import ModelSpec, hookimpl\nPARALAB_API = '1.0'\n\n"
        "@hookimpl\ndef paralab_models():\n"
        "    return [ModelSpec(name='wrong_shape', factory='heavy_plugin:make',"
        " description='returns the wrong number of logits')]\n\n"
        "def make(info):\n    return torch.nn.Linear(info.n_features, 3)\n"
    )
    make_distribution(tmp_path, "heavy-plugin", "0.1.0", {"heavy": "heavy_plugin"},
                      {"heavy_plugin.py": source})
    with on_path(tmp_path):
        registry = host.make_registry().load()
        report = check_plugin("heavy", registry=registry)
    failures = {check.name: check.detail for check in report.failures()}
    assert "import heavy_plugin` imports torch" in failures["imports nothing heavy at import time"]
    assert "expected (8, 10)" in failures["model 'wrong_shape' builds and runs a tiny step"]
    assert not report.passed


def test_check_plugin_cli_on_a_bundled_plugin() -> None:
    result = paralab_cli("check-plugin", "paralab_quantum", "--json")
    report = json.loads(result.stdout)
    assert report["plugin"] == "paralab_quantum"
    assert report["passed"] and result.returncode == 0, result.stdout
    assert any(c["name"] == "model 'vqc' builds and runs a tiny step" and c["status"] == "pass"
               for c in report["checks"])
    unknown = paralab_cli("check-plugin", "paralab_quantun")
    assert unknown.returncode == 3 and "did you mean 'paralab_quantum'" in unknown.stderr


def test_light_import_measures_in_a_fresh_interpreter() -> None:
    assert light_import("paralab_registry") == []
    assert "torch" in light_import("paralab.runner")


def test_pytest_fixtures(paralab_registry, paralab_tiny) -> None:
    assert paralab.get_registry() is paralab_registry
    assert paralab_registry.plugins() and paralab_tiny.sensitive == ("group",)
    result = paralab.run({"dataset": "paralab_tiny", "model": "linear", "output": None,
                          "protocol": {"name": "supervised", "epochs": 2}})
    assert result.status == "completed"


def test_isolated_registry_blocks_discovery() -> None:
    registry = isolated_registry()
    assert registry.plugins() == []
    assert registry.plugins(include_builtin=True)[0].name == "paralab"
    with pytest.raises(ValueError, match="already registered"):
        registry.add("paralab", object())


def test_example_plugin_protocol_and_method_are_written_against_the_interfaces(tmp_path: Path):
    import paralab

    with on_path(hello_distribution(tmp_path)):
        registry = host.make_registry().load()
        spec = {"dataset": "iris", "model": "mlp", "output": None,
                "protocol": {"name": "early_stopping", "max_epochs": 40, "patience": 2},
                "method": {"name": "smoothed_sgd", "lr": 0.1, "smoothing": 0.2}}
        result = paralab.run(spec, registry=registry)
        assert result.status == "completed"
        assert 3 <= len(result.phases) <= 40
        assert result.metrics["test/accuracy"] > 0.6
        if len(result.phases) < 40:
            assert result.metrics["stopped_after"] == len(result.phases)
        with pytest.raises(paralab.SpecError, match="protocol.patience = 0: must be >= 1"):
            paralab.run({**spec, "protocol": {"name": "early_stopping", "patience": 0}},
                        registry=registry)
        with pytest.raises(paralab.SpecError, match="method.smoothing = nan: must be a finite"):
            paralab.run({**spec, "method": {"name": "smoothed_sgd", "smoothing": float("nan")}},
                        registry=registry)
