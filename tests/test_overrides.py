"""Overrides (``--set PATH=VALUE``, ``paralab.run(spec, overrides=...)``) and ``--dry-run``."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

import paralab
from paralab import cli
from paralab.overrides import apply_overrides, parse_override, parse_value
from paralab.spec import ExperimentSpec, SpecError

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits_mlp.toml"


@pytest.mark.parametrize(
    ("text", "value"),
    [("0.01", 0.01), ("3", 3), ("true", True), ("[256, 128]", [256, 128]), ('"cpu"', "cpu"),
     ("adam", "adam"), ("cuda:1", "cuda:1"), ("{ name = 'adam', lr = 0.1 }", {"name": "adam", "lr": 0.1}),
     ("1e-3", 0.001), ("", "")],
)
def test_values_are_toml_and_bare_words_are_strings(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_paths_parse_fields_options_and_indices() -> None:
    assert parse_override("method.lr=0.1") == (["method", "lr"], 0.1)
    assert parse_override("middleware[0].noise_multiplier=1.5") == (
        ["middleware", 0, "noise_multiplier"], 1.5)
    assert parse_override(" seed = 4") == (["seed"], 4)


def test_overrides_turn_names_into_tables_and_keep_the_rest() -> None:
    data = {"dataset": "digits", "model": {"name": "mlp", "hidden": [64]}, "metrics": ["accuracy"]}
    out = apply_overrides(data, ["model.hidden=[8, 8]", "method.lr=0.5", "metrics[0]=loss",
                                 "protocol.epochs=2", "seed=9"])
    assert out == {"dataset": "digits", "model": {"name": "mlp", "hidden": [8, 8]},
                   "method": {"name": "sgd", "lr": 0.5}, "metrics": ["loss"],
                   "protocol": {"name": "supervised", "epochs": 2}, "seed": 9}
    assert data["model"]["hidden"] == [64], "the input is not changed"


@pytest.mark.parametrize(
    ("override", "message"),
    [("methd.lr=0.1", "did you mean 'method'"),
     ("method.lrr=0.1", "did you mean 'lr'"),
     ("metrics[5]=loss", "has 2 element(s)"),
     ("metrics.name=loss", "metrics is a list"),
     ("seed.x=1", "seed is a single value"),
     ("lr 0.1", "PATH=VALUE"),
     ("method..lr=1", "not a field name")],
)
def test_bad_overrides_are_spec_errors_naming_the_override(override: str, message: str) -> None:
    registry = paralab.get_registry()
    with pytest.raises(SpecError) as caught:
        ExperimentSpec.load(DIGITS, [override], registry)
    text = str(caught.value)
    assert message in text and repr(override) in text, text
    assert str(DIGITS) in text, "the spec file is named"


def test_an_override_of_a_bad_value_is_rejected_by_the_declared_option() -> None:
    with pytest.raises(SpecError, match=r"method\.lr = -1.*must be > 0"):
        paralab.run(DIGITS, overrides=["method.lr=-1"])


def test_run_with_overrides_equals_the_edited_spec(tmp_path: Path) -> None:
    base = {"dataset": "iris", "model": "mlp", "output": None,
            "protocol": {"name": "supervised", "epochs": 2}}
    by_override = paralab.run(base, overrides=["method.lr=0.2", "seed=5", "model.hidden=[16]"])
    edited = paralab.run({**base, "method": {"name": "sgd", "lr": 0.2}, "seed": 5,
                          "model": {"name": "mlp", "hidden": [16]}})
    assert by_override.metrics == edited.metrics
    assert by_override.spec == edited.spec
    assert by_override.spec["method"] == {"name": "sgd", "lr": 0.2}


def test_dry_run_prints_the_resolved_spec_and_runs_nothing(tmp_path: Path, capsys) -> None:
    code = cli.main(["run", str(DIGITS), "--set", "method.lr=0.01", "--set", "protocol.epochs=3",
                     "--output", str(tmp_path / "runs"), "--dry-run"])
    assert code == 0
    out = capsys.readouterr().out
    resolved = ExperimentSpec.from_dict(tomllib.loads(out))
    assert resolved.method.options["lr"] == 0.01
    assert resolved.protocol.options["epochs"] == 3
    assert resolved.output == str(tmp_path / "runs")
    assert resolved == ExperimentSpec.load(DIGITS, ["method.lr=0.01", "protocol.epochs=3",
                                                    f"output={json.dumps(str(tmp_path / 'runs'))}"])
    assert not (tmp_path / "runs").exists(), "a dry run writes nothing"


def test_dry_run_reports_a_bad_override_with_exit_2(capsys) -> None:
    assert cli.main(["run", str(DIGITS), "--set", "protocol.epoch=3", "--dry-run"]) == 2
    assert "did you mean 'epochs'" in capsys.readouterr().err


def test_to_toml_round_trips_every_example_spec() -> None:
    for path in sorted((ROOT / "examples").glob("*.toml")):
        data = tomllib.loads(path.read_text("utf-8"))
        if "study" in data:
            continue
        spec = ExperimentSpec.from_toml(path)
        assert ExperimentSpec.from_dict(tomllib.loads(spec.to_toml())) == spec, path
