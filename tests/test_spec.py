"""Experiment specs: parsing, and validation errors that name the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from paralab import ComponentRef, ExperimentSpec, SpecError
from paralab.testing import TinyDataPlugin, isolated_registry
from tests.host_support import paralab_cli


@pytest.fixture(scope="module")
def registry():
    return isolated_registry(("paralab_tiny", TinyDataPlugin()))


def test_components_are_names_or_tables() -> None:
    spec = ExperimentSpec(
        dataset="digits",
        model={"name": "mlp", "hidden": [8]},
        metrics="accuracy",
    )
    assert spec.model == ComponentRef("mlp", {"hidden": [8]})
    assert spec.metrics == (ComponentRef("accuracy"),)
    assert ExperimentSpec.from_dict(spec.to_dict()) == spec


def test_misspelled_method_names_field_and_suggestion(registry) -> None:
    spec = ExperimentSpec(dataset="digits", model="mlp", method="sdg")
    with pytest.raises(SpecError) as error:
        spec.validate(registry)
    (problem,) = error.value.problems
    assert problem.startswith("method.name = 'sdg'")
    assert "did you mean 'sgd'" in problem
    assert "sgd (paralab)" in problem


def test_all_problems_are_reported_at_once(registry) -> None:
    spec = ExperimentSpec(
        dataset={"name": "digits", "test_fractoin": 0.3},
        model={"name": "mlp", "hidden": "wide"},
        protocol={"name": "supervised", "epochs": 2.5},
        metrics=["accuracy", "acuracy"],
    )
    with pytest.raises(SpecError) as error:
        spec.validate(registry)
    text = str(error.value)
    assert "dataset.test_fractoin" in text and "did you mean 'test_fraction'" in text
    assert "model.hidden = 'wide': expected list" in text
    assert "protocol.epochs = 2.5: expected int" in text
    assert "metrics[1].name = 'acuracy'" in text and "did you mean 'accuracy'" in text
    assert len(error.value.problems) == 4


def test_method_must_support_the_protocol(registry) -> None:
    from paralab import MethodSpec, ProtocolSpec, hookimpl

    class Other:
        PARALAB_API = "1.0"

        @hookimpl
        def paralab_protocols(self):
            return [ProtocolSpec("rounds", "paralab.protocols.supervised:Supervised", "x"),
                    ProtocolSpec("steps", "paralab.protocols.supervised:Supervised", "x",
                                 accepts=("gradient",))]

        @hookimpl
        def paralab_methods(self):
            return [MethodSpec("fedthing", "paralab.methods:SGD", "x", protocols=("rounds",))]

    local = isolated_registry(("other", Other()))
    spec = ExperimentSpec(dataset="digits", model="mlp", protocol="supervised", method="fedthing")
    with pytest.raises(SpecError, match="supports protocols \\['rounds'\\], not 'supervised'"):
        spec.validate(local)
    # a protocol accepting the gradient family takes the host's sgd and adam
    ExperimentSpec(dataset="digits", model="mlp", protocol="steps", method="adam").validate(local)
    with pytest.raises(SpecError, match="methods for 'rounds': fedthing \\(other\\)"):
        ExperimentSpec(dataset="digits", model="mlp", protocol="rounds", method="sgd").validate(local)


def test_unknown_fields_and_bad_settings() -> None:
    with pytest.raises(SpecError) as error:
        ExperimentSpec.from_dict({"dataset": "digits", "model": "mlp", "epochs": 3, "sed": 1})
    text = str(error.value)
    assert "epochs: unknown field" in text
    assert "sed: unknown field (did you mean 'seed'?)" in text
    with pytest.raises(SpecError, match="device: expected 'auto'"):
        ExperimentSpec(dataset="digits", model="mlp", device="gpu")
    with pytest.raises(SpecError, match="dataset: required field is missing"):
        ExperimentSpec.from_dict({"model": "mlp"})


def test_toml_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("dataset = \n", encoding="utf-8")
    with pytest.raises(SpecError, match="bad.toml"):
        ExperimentSpec.from_toml(bad)
    good = tmp_path / "mine.toml"
    good.write_text('dataset = "iris"\nmodel = "mlp"\n', encoding="utf-8")
    assert ExperimentSpec.from_toml(good).name == "mine"


def test_cli_rejects_a_misspelled_method_before_training(tmp_path: Path) -> None:
    spec = tmp_path / "typo.toml"
    spec.write_text(
        f'dataset = "digits"\nmodel = "mlp"\nmethod = "adma"\noutput = "{tmp_path / "runs"}"\n',
        encoding="utf-8",
    )
    result = paralab_cli("run", str(spec))
    assert result.returncode == 2
    assert "method.name = 'adma'" in result.stderr
    assert "did you mean 'adam'" in result.stderr
    assert not (tmp_path / "runs").exists(), "nothing may run before the spec is valid"


def test_model_may_be_omitted_only_where_the_protocol_uses_none(registry) -> None:
    from paralab import MethodSpec, ProtocolSpec, hookimpl

    class KernelOnly:
        PARALAB_API = "1.0"

        @hookimpl
        def paralab_protocols(self):
            return [ProtocolSpec("kernel_only", "paralab.protocols.supervised:Supervised",
                                 "Trains no torch model.", uses_model=False)]

        @hookimpl
        def paralab_methods(self):
            return [MethodSpec("svm_only", "paralab.methods:SGD", "x", protocols=("kernel_only",))]

    local = isolated_registry(("kernel_only", KernelOnly()))
    ExperimentSpec(dataset="digits", protocol="kernel_only", method="svm_only").validate(local)
    with pytest.raises(SpecError, match="model: required by protocol 'supervised'"):
        ExperimentSpec(dataset="digits").validate(local)
    assert ExperimentSpec.from_dict({"dataset": "digits"}).to_dict()["model"] is None


def test_option_values_outside_their_declaration_are_spec_errors(tmp_path: Path, registry) -> None:
    import paralab

    spec = {"dataset": "digits", "model": "mlp", "output": str(tmp_path),
            "protocol": {"name": "supervised", "epochs": 0},
            "metrics": ["accuracy", {"name": "grouped_accuracy"}]}
    with pytest.raises(SpecError) as caught:
        paralab.run(spec, registry=registry)
    problems = caught.value.problems
    assert any(p.startswith("protocol.epochs = 0: must be >= 1") for p in problems), problems
    assert any(p.startswith("metrics[1].feature: metric 'grouped_accuracy'") and "needs this option"
               in p for p in problems), problems
    assert not any(tmp_path.iterdir()), "a rejected spec writes no run folder"
