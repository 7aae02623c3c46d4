"""Discovery, failure isolation, selection switches and contribution indexing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paralab import host
from paralab_registry import (
    ACTIVE,
    DISABLED,
    FAILED,
    INCOMPATIBLE,
    LoadSettings,
    PluginLoadError,
    UnknownComponentError,
    UnknownPluginError,
    api_compatible,
)
from tests.host_support import make_distribution, on_path, paralab_cli

BUNDLED = {
    "paralab_continual",
    "paralab_explain",
    "paralab_fairness",
    "paralab_federated",
    "paralab_fewshot",
    "paralab_neurosymbolic",
    "paralab_quantum",
    "paralab_tracking",
}

GOOD = '''
from paralab import ModelSpec, hookimpl
PARALAB_API = "1.0"

@hookimpl
def paralab_models():
    return [ModelSpec(name="good_model", factory="paralab.models:linear", description="ok")]
'''


def plugins_folder(tmp_path: Path) -> Path:
    """Five third-party plugins: one good, one that raises on import, one for an old API,
    one with a misspelled hook, one whose model name clashes with the good one."""
    make_distribution(tmp_path, "good-plugin", "1.2.0", {"good": "good_plugin"},
                      {"good_plugin.py": GOOD})
    make_distribution(tmp_path, "broken-plugin", "0.1.0", {"broken": "broken_plugin"},
                      {"broken_plugin.py": "raise RuntimeError('boom at import')\n"})
    make_distribution(tmp_path, "old-plugin", "0.0.1", {"old": "old_plugin"},
                      {"old_plugin.py": "PARALAB_API = '0.9'\n"})
    make_distribution(
        tmp_path, "typo-plugin", "0.3.0", {"typo": "typo_plugin"},
        {"typo_plugin.py": "from paralab import hookimpl\nPARALAB_API = '1.0'\n\n"
                           "@hookimpl\ndef paralab_befor_phase(run, phase):\n    pass\n"},
    )
    make_distribution(
        tmp_path, "zz-clash", "2.0.0", {"zz_clash": "zz_clash"},
        {"zz_clash.py": GOOD},
    )
    return tmp_path


def registry_for(folder: Path, **settings: object) -> object:
    return host.make_registry(LoadSettings(**settings)).load()


def test_bundled_plugins_are_found_through_entry_points() -> None:
    registry = host.make_registry(LoadSettings()).load()
    records = {record.name: record for record in registry.plugins()}
    assert set(records) >= BUNDLED
    assert all(records[name].status == ACTIVE for name in BUNDLED)
    assert all(records[name].distribution == "paralab" for name in BUNDLED)
    names = [record.name for record in registry.plugins()]
    assert names == sorted(names), "entry points load in name order"


def test_failures_are_recorded_and_the_rest_keeps_working(tmp_path: Path) -> None:
    with on_path(plugins_folder(tmp_path)):
        registry = registry_for(tmp_path)
        records = {record.name: record for record in registry.plugins()}
        assert records["good"].status == ACTIVE
        assert records["good"].version == "1.2.0"
        assert records["good"].contributions == {"model": ["good_model"]}
        assert records["broken"].status == FAILED
        assert "boom at import" in records["broken"].reason
        assert records["old"].status == INCOMPATIBLE
        assert "0.9" in records["old"].reason and "1.0" in records["old"].reason
        assert records["typo"].status == FAILED
        assert "paralab_befor_phase" in records["typo"].reason
        assert "did you mean 'paralab_before_phase'" in records["typo"].reason
        assert records["zz_clash"].status == FAILED
        assert "good (good-plugin 1.2.0)" in records["zz_clash"].reason
        assert "zz_clash (zz-clash 2.0.0)" in records["zz_clash"].reason
        assert registry.component("model", "good_model").provider == "good"
        assert not registry.pm.has_plugin("typo")


def test_strict_mode_makes_a_failure_fatal(tmp_path: Path) -> None:
    with on_path(plugins_folder(tmp_path)), pytest.raises(PluginLoadError, match="broken"):
        registry_for(tmp_path, strict=True)


def test_cli_lists_failed_plugin_with_reason_and_strict_exits(tmp_path: Path) -> None:
    folder = plugins_folder(tmp_path)
    listed = paralab_cli("plugins", "--json", path=folder)
    assert listed.returncode == 0, listed.stderr
    records = {item["name"]: item for item in json.loads(listed.stdout)}
    assert records["broken"]["status"] == "failed"
    assert "boom at import" in records["broken"]["reason"]
    assert all(records[name]["status"] == "active" for name in BUNDLED)
    for item in records.values():
        assert {"name", "version", "status", "reason", "contributions"} <= set(item)
    strict = paralab_cli("--strict-plugins", "plugins", path=folder)
    assert strict.returncode == 3
    assert "broken" in strict.stderr


def test_safe_mode_imports_no_plugin(tmp_path: Path) -> None:
    folder = plugins_folder(tmp_path)
    listed = paralab_cli("plugins", "--json", path=folder, env={"PARALAB_NO_PLUGINS": "1"})
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    only_good = paralab_cli("--no-plugins", "-p", "good", "plugins", "--json", path=folder)
    assert [item["name"] for item in json.loads(only_good.stdout)] == ["good"]


def test_load_only_selected_plugins_and_block_one(tmp_path: Path) -> None:
    with on_path(plugins_folder(tmp_path)):
        registry = registry_for(tmp_path, only=("good", "paralab_quantum"))
        records = {record.name: record for record in registry.plugins()}
        assert records["good"].status == ACTIVE
        assert records["broken"].status == DISABLED
        assert "PARALAB_LOAD_PLUGINS" in records["broken"].reason
        blocked = registry_for(tmp_path, block=("good",))
        assert blocked.plugin("good").status == DISABLED
        # with good blocked there is no clash: zz_clash now provides the model
        assert blocked.component("model", "good_model").provider == "zz_clash"
        assert blocked.plugin("zz_clash").status == ACTIVE


def test_an_unknown_plugin_name_is_an_error(tmp_path: Path) -> None:
    with on_path(plugins_folder(tmp_path)):
        with pytest.raises(UnknownPluginError, match="did you mean 'good'"):
            registry_for(tmp_path, block=("godo",))
        with pytest.raises(UnknownPluginError, match="unknown plugin 'nope'"):
            registry_for(tmp_path, only=("nope",))
    result = paralab_cli("-p", "no:paralab_quantm", "plugins")
    assert result.returncode == 3
    assert "did you mean 'paralab_quantum'" in result.stderr


def test_listing_plugins_imports_no_heavy_library() -> None:
    code = (
        "import sys, io, contextlib; from paralab.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()): main(['plugins'])\n"
        "heavy = ['torch', 'pennylane', 'qiskit', 'avalanche', 'fairlearn', 'learn2learn',"
        " 'numpy', 'sklearn']\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    import subprocess
    import sys

    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True)
    assert completed.stdout.strip() == "[]"


def test_api_compatibility_rule() -> None:
    assert api_compatible("1.0", "1.0") is None
    assert api_compatible("1.0", "1.3") is None
    assert "1.4" in api_compatible("1.4", "1.3")
    assert api_compatible("2.0", "1.0") is not None
    assert "declares no PARALAB_API" in api_compatible(None, "1.0")
    assert "MAJOR.MINOR" in api_compatible("one", "1.0")


def test_unknown_component_message_names_providers_and_suggests() -> None:
    registry = host.make_registry(LoadSettings(), entry_points=lambda: []).load()
    with pytest.raises(UnknownComponentError) as error:
        registry.component("method", "sdg")
    message = str(error.value)
    assert "did you mean 'sgd'" in message
    assert "sgd (paralab)" in message and "adam (paralab)" in message


def test_record_fields_are_checked_by_their_annotations() -> None:
    """Lists where tuples of str are declared are normalised; an Option inside ``options`` is
    checked field by field; bools, names and factories by their own rules."""
    from paralab import MethodSpec, ModelSpec, Option
    from paralab_registry.validation import RecordError, checked_record

    spec = MethodSpec(name="m", factory="pkg.mod:make", protocols=["supervised"])
    assert checked_record(spec, kind="method", hook="paralab_methods", index=0) == {
        "protocols": ("supervised",)}
    bad = [
        (MethodSpec(name="m", factory="pkg:make", protocols="supervised"), "'protocols'"),
        (MethodSpec(name="m", factory="pkg:make", applies_losses="yes"), "'applies_losses'"),
        (ModelSpec(name="a b", factory="pkg:make"), "'name'"),
        (ModelSpec(name="", factory="pkg:make"), "'name'"),
        (ModelSpec(name="m", factory="no_colon"), "'factory'"),
        (ModelSpec(name="m", factory="pkg:make", options={1: 2}), "'options'"),
        (ModelSpec(name="m", factory="pkg:make", options={"w": Option(1, help=3)}),
         "Option.help"),
        (ModelSpec(name="m", factory="pkg:make", example=[("epochs", 1)]), "'example'"),
    ]
    for record, field in bad:
        with pytest.raises(RecordError, match=field) as error:
            checked_record(record, kind=record.kind, hook="paralab_x", index=2)
        assert "paralab_x record #2" in str(error.value)
    with pytest.raises(RecordError, match="must yield model specs"):
        checked_record(spec, kind="model", hook="paralab_models", index=0)


def test_a_plugin_is_found_by_its_distribution_name(tmp_path: Path) -> None:
    with on_path(plugins_folder(tmp_path)):
        registry = registry_for(tmp_path)
        assert registry.plugin("good-plugin").name == "good"
        assert registry.plugin("Good_Plugin").name == "good"
        with pytest.raises(UnknownPluginError):
            registry.plugin("no-such-distribution")


def test_a_bundled_name_is_kept_even_when_the_bundled_plugin_failed(tmp_path: Path) -> None:
    """The bundled distribution's entry points are claimed first, so a third-party plugin
    cannot take the name even of a bundled plugin that failed or comes later by name."""
    make_distribution(tmp_path, "aaa-hijack", "9.0.0", {"paralab_quantum": "aaa_hijack"},
                      {"aaa_hijack.py": GOOD})
    with on_path(tmp_path):
        registry = registry_for(tmp_path)
        assert registry.plugin("paralab_quantum").distribution == "paralab"
        refused = registry.plugin("paralab_quantum@aaa-hijack")
        assert refused.status == FAILED
        assert "aaa-hijack 9.0.0" in refused.reason and "paralab 0.1.0" in refused.reason
        assert "good_model" not in registry.components["model"]
        names = [record.name for record in registry.plugins()]
        assert names.index("paralab_quantum") < names.index("paralab_quantum@aaa-hijack")


def test_p_loads_an_undotted_module_and_names_a_missing_one(tmp_path: Path) -> None:
    (tmp_path / "loose_plugin.py").write_text(GOOD, encoding="utf-8")
    with on_path(tmp_path):
        registry = host.make_registry(LoadSettings(include=("loose_plugin",))).load()
        assert registry.records["loose_plugin"].status == ACTIVE
        with pytest.raises(UnknownPluginError, match="no importable module of that name"):
            host.make_registry(LoadSettings(include=("loose_plugn",))).load()
