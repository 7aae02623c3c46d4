"""Declared run-time requirements: a component whose library is not installed is reported by
``paralab plugins`` with the install hint, and a spec naming it is refused before anything
runs (it used to load as "active" and fail mid-run with a bare ModuleNotFoundError)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import paralab
from paralab import host
from paralab.spec import SpecError
from paralab_registry import LoadSettings

ABSENT = "paralab_test_library_that_is_not_installed"


def _accuracy(mode: str = "plain"):  # noqa: ANN202, ARG001 - a metric factory
    return lambda predictions, dataset: float(predictions.correct.mean())


class _NeedsALibrary:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_metrics(self) -> list[paralab.MetricSpec]:
        return [
            paralab.MetricSpec("needs_absent", _accuracy, "needs a library that is absent",
                               requires=(ABSENT,), install="pip install absent-library"),
            paralab.MetricSpec("absent_when_fancy", _accuracy, "needs it for one mode only",
                               {"mode": paralab.one_of("plain", ("plain", "fancy"))},
                               requires_when={"mode": {"fancy": (ABSENT,)}},
                               install="pip install absent-library"),
        ]


@pytest.fixture
def registry():
    registry = host.make_registry(LoadSettings()).load()
    registry.add("needs_a_library", _NeedsALibrary())
    return registry


def test_the_plugin_is_listed_as_missing_with_the_install_hint(registry) -> None:
    record = registry.plugin("needs_a_library")
    assert record.status == "missing"
    assert record.missing == [
        f"missing {ABSENT} (metric absent_when_fancy with mode = 'fancy'): pip install "
        "absent-library",
        f"missing {ABSENT} (metric needs_absent): pip install absent-library",
    ]
    assert record.to_dict()["missing"] == record.missing
    described = registry.component("metric", "needs_absent").describe()
    assert described["missing"] == [ABSENT] and described["install"] == "pip install absent-library"


def test_a_spec_naming_it_is_refused_before_any_folder(registry, tmp_path: Path) -> None:
    spec = {"dataset": "iris", "model": "mlp", "output": str(tmp_path),
            "protocol": {"name": "supervised", "epochs": 1}, "metrics": ["needs_absent"]}
    with pytest.raises(SpecError, match=(
            rf"metrics\[0\]\.name = 'needs_absent': metric 'needs_absent' of plugin "
            rf"needs_a_library needs {ABSENT}, which is not installed; pip install "
            r"absent-library")):
        paralab.run(spec, registry=registry)
    assert list(tmp_path.iterdir()) == []
    # Only the option value that needs the library is refused.
    plain = {**spec, "output": None, "metrics": [{"name": "absent_when_fancy", "mode": "plain"}]}
    assert paralab.run(plain, registry=registry).status == "completed"
    with pytest.raises(SpecError, match=rf"absent_when_fancy.*needs {ABSENT}"):
        paralab.run({**plain, "metrics": [{"name": "absent_when_fancy", "mode": "fancy"}]},
                    registry=registry)


def test_every_bundled_requirement_names_an_installed_module() -> None:
    """The declarations name real modules: in this environment (every extra installed) none
    is missing, so a typo in a declaration fails here."""
    registry = paralab.get_registry()
    declared = 0
    for kind, specs in registry.components.items():
        for spec in specs.values():
            if spec.requires or spec.requires_when:
                declared += 1
                assert spec.missing_modules() == [], (kind, spec.name)
                assert spec.install.startswith("pip install"), (kind, spec.name)
    assert declared >= 8
    assert all(r.status == "active" for r in registry.plugins()), [
        (r.name, r.reason) for r in registry.plugins() if r.status != "active"]


def test_plugins_json_carries_the_missing_lines(registry, capsys) -> None:
    from paralab.cli import main

    assert main(["plugins", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    rows = listed if isinstance(listed, list) else listed.get("plugins", listed)
    assert all("missing" in row for row in rows)
    hooks = {row["name"]: row["hooks"] for row in rows}
    assert hooks["paralab_tracking"] == ["paralab_trackers"]  # its trackers hook in per run
    assert "paralab_process_update" not in hooks["paralab_fairness"]
    assert "paralab_middleware" in hooks["paralab_federated"]
    assert "paralab_auditors" in hooks["paralab_explain"]
