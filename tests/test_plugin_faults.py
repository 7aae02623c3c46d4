"""Fault injection, plugin side: planted faulty plugins must not take the host down.

Every fault in :data:`FAULTS` is a real distribution (``NAME-VERSION.dist-info`` plus its
module) on ``sys.path``. With all of them installed at once the host must stay up
(``paralab plugins``, ``paralab list``, a digits run), each failure must be attributed to the
plugin and distribution that planted it, every other plugin must keep all its components, and
in strict mode the error must blame the planted plugin, never a genuine one. The lead counts
"faults planted / host up / attributed" from :data:`FAULTS` and these tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from paralab import host
from paralab_registry import ACTIVE, FAILED, LoadSettings, PluginLoadError
from tests.host_support import REPOSITORY, make_distribution, on_path, paralab_cli

BUNDLED_VERSION = "0.1.0"


@dataclass(frozen=True)
class Fault:
    """One planted plugin: its distribution, entry point and module, and what the failure
    reason must say. ``record`` is the key ``paralab plugins`` lists it under."""

    fault: str
    distribution: str
    version: str
    entry_point: str
    module: str
    source: str
    reason: tuple[str, ...]
    record: str = ""

    @property
    def key(self) -> str:
        return self.record or self.entry_point


HEADER = "from paralab import AuditorSpec, MetricSpec, ModelSpec, hookimpl\nPARALAB_API = '1.0'\n"


def _models(spec: str) -> str:
    return HEADER + f"\n@hookimpl\ndef paralab_models():\n    return [{spec}]\n"


FAULTS: list[Fault] = [
    Fault("import error", "fault-import", "0.1.0", "fault_import", "fault_import",
          "import paralab_no_such_module_xyz\n", ("import failed", "paralab_no_such_module_xyz")),
    Fault("sys.exit(5) at import", "fault-exit-import", "0.2.0", "fault_exit_import",
          "fault_exit_import", "import sys\nsys.exit(5)\n", ("import failed", "SystemExit: 5")),
    Fault("sys.exit(5) in a contribution hook", "fault-exit-hook", "0.3.0", "fault_exit_hook",
          "fault_exit_hook",
          HEADER + "import sys\n\n@hookimpl\ndef paralab_models():\n    sys.exit(5)\n",
          ("paralab_models", "SystemExit: 5")),
    Fault("KeyboardInterrupt at import", "fault-interrupt", "0.4.0", "fault_interrupt",
          "fault_interrupt", "raise KeyboardInterrupt\n", ("import failed", "KeyboardInterrupt")),
    Fault("name=('t',)", "fault-name", "1.0.0", "fault_name", "fault_name",
          _models("ModelSpec(name=('t',), factory='paralab.models:linear')"),
          ("paralab_models", "record #0", "'name'")),
    Fault("options=[...]", "fault-options", "1.0.1", "fault_options", "fault_options",
          _models("ModelSpec(name='fault_opts', factory='paralab.models:linear', "
                  "options=['width', 8])"),
          ("paralab_models", "'fault_opts'", "'options'")),
    Fault("description=3", "fault-description", "1.0.2", "fault_description",
          "fault_description",
          _models("ModelSpec(name='fault_desc', factory='paralab.models:linear', "
                  "description=3)"),
          ("paralab_models", "'fault_desc'", "'description'")),
    Fault("factory=5", "fault-factory", "1.0.3", "fault_factory", "fault_factory",
          _models("ModelSpec(name='fault_fact', factory=5)"),
          ("paralab_models", "'fault_fact'", "'factory'")),
    Fault("impostor entry point paralab_fairness", "evil-fairness", "6.6.6", "paralab_fairness",
          "evil_fairness", _models("ModelSpec(name='evil_model', factory='paralab.models:linear')"),
          ("the plugin name 'paralab_fairness'", f"paralab {BUNDLED_VERSION}",
           "evil-fairness 6.6.6"), record="paralab_fairness@evil-fairness"),
    Fault("auditor named fairness", "fairness-thief", "2.0.0", "aaa_thief", "aaa_thief",
          HEADER + "\n@hookimpl\ndef paralab_auditors():\n    return [AuditorSpec("
          "name='fairness', factory='aaa_thief:x', description='mine now')]\n",
          ("auditor 'fairness'", f"paralab_fairness (paralab {BUNDLED_VERSION})",
           "aaa_thief (fairness-thief 2.0.0)")),
    Fault("third-party component clash (second in name order)", "zeta-metrics", "2.1.0",
          "zeta_metrics", "zeta_metrics",
          HEADER + "\n@hookimpl\ndef paralab_metrics():\n    return [MetricSpec("
          "name='shared_metric', factory='zeta_metrics:m', description='zeta')]\n",
          ("metric 'shared_metric'", "alpha_metrics (alpha-metrics 1.1.0)",
           "zeta_metrics (zeta-metrics 2.1.0)")),
    Fault("third-party plugin-name clash (second in distribution order)", "zz-dup", "3.0.0",
          "dup_plugin", "zz_dup", _models("ModelSpec(name='zz_model', "
                                          "factory='paralab.models:linear')"),
          ("the plugin name 'dup_plugin'", "aa-dup 1.0.0", "zz-dup 3.0.0"),
          record="dup_plugin@zz-dup"),
]
"""The planted faults, one distribution each."""

GOOD: list[tuple[str, str, str, str, str]] = [
    ("good-plugin", "1.2.0", "good", "good_plugin",
     _models("ModelSpec(name='good_model', factory='paralab.models:linear', "
             "description='ok')")),
    ("alpha-metrics", "1.1.0", "alpha_metrics", "alpha_metrics",
     HEADER + "\n@hookimpl\ndef paralab_metrics():\n    return [MetricSpec("
     "name='shared_metric', factory='alpha_metrics:m', description='alpha')]\n"),
    ("aa-dup", "1.0.0", "dup_plugin", "aa_dup",
     _models("ModelSpec(name='aa_model', factory='paralab.models:linear', description='aa')")),
]
"""Genuine third-party plugins beside the faults: each must stay active with its components."""

GOOD_COMPONENTS = {"good": ("model", "good_model"), "alpha_metrics": ("metric", "shared_metric"),
                   "dup_plugin": ("model", "aa_model")}


def plant(folder: Path, faults: list[Fault] = FAULTS, good: bool = True) -> Path:
    """Every fault (and the genuine plugins) as installed distributions in ``folder``."""
    for fault in faults:
        make_distribution(folder, fault.distribution, fault.version,
                          {fault.entry_point: fault.module}, {f"{fault.module}.py": fault.source})
    for distribution, version, entry_point, module, source in GOOD if good else ():
        make_distribution(folder, distribution, version, {entry_point: module},
                          {f"{module}.py": source})
    return folder


@pytest.fixture(scope="module")
def bundled() -> dict[str, dict[str, list[str]]]:
    """The bundled plugins' contributions with nothing planted."""
    registry = host.make_registry(LoadSettings()).load()
    return {record.name: record.contributions for record in registry.plugins()
            if record.distribution == "paralab"}


def _assert_attributed(records: dict[str, dict], fault: Fault) -> None:
    record = records[fault.key]
    assert record["status"] == FAILED, (fault.fault, record)
    assert record["distribution"] == fault.distribution, fault.fault
    assert record["version"] == fault.version, fault.fault
    for text in fault.reason:
        assert text in record["reason"], (fault.fault, text, record["reason"])


def test_every_fault_fails_only_its_plugin(tmp_path: Path, bundled: dict) -> None:
    with on_path(plant(tmp_path)):
        registry = host.make_registry(LoadSettings()).load()
    records = {record.name: record.to_dict() for record in registry.plugins()}
    for fault in FAULTS:
        _assert_attributed(records, fault)
    for name, contributions in bundled.items():
        assert records[name]["status"] == ACTIVE, records[name]
        assert records[name]["contributions"] == contributions, name
    for name, (kind, component) in GOOD_COMPONENTS.items():
        assert records[name]["status"] == ACTIVE, records[name]
        assert registry.component(kind, component).provider == name
    assert registry.component("auditor", "fairness").provider == "paralab_fairness"
    assert "evil_model" not in registry.components["model"]
    assert {clash.newcomer.distribution for clash in registry.clashes} == {
        "evil-fairness", "fairness-thief", "zeta-metrics", "zz-dup"}


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.fault for fault in FAULTS])
def test_strict_mode_blames_the_planted_plugin(tmp_path: Path, fault: Fault) -> None:
    with on_path(plant(tmp_path, [fault])), pytest.raises(PluginLoadError) as error:
        host.make_registry(LoadSettings(strict=True)).load()
    assert error.value.record is not None
    assert error.value.record.distribution == fault.distribution
    assert str(error.value).startswith(f"plugin {fault.key} ({fault.distribution} "), error.value


def test_impostor_first_on_path_in_any_order(tmp_path: Path, bundled: dict) -> None:
    """Even when the impostor sorts first by module (the old rule) the bundled one wins."""
    impostor = next(fault for fault in FAULTS if fault.distribution == "evil-fairness")
    for module in ("aaa_evil", "zzz_evil"):
        folder = tmp_path / module
        make_distribution(folder, impostor.distribution, impostor.version,
                          {impostor.entry_point: module}, {f"{module}.py": impostor.source})
        with on_path(folder):
            registry = host.make_registry(LoadSettings()).load()
        assert registry.plugin("paralab_fairness").distribution == "paralab"
        assert registry.plugin("paralab_fairness").contributions == bundled["paralab_fairness"]
        assert registry.plugin("evil-fairness").status == FAILED


def test_host_commands_stay_up_with_every_fault_planted(tmp_path: Path, bundled: dict) -> None:
    folder = plant(tmp_path / "site")
    listed = paralab_cli("plugins", "--json", path=folder)
    assert listed.returncode == 0, listed.stderr
    records = {item["name"]: item for item in json.loads(listed.stdout)}
    for fault in FAULTS:
        _assert_attributed(records, fault)
    assert all(records[name]["contributions"] == bundled[name] for name in bundled)
    text = paralab_cli("plugins", path=folder)
    assert text.returncode == 0 and "paralab_fairness@evil-fairness" in text.stdout, text.stderr
    assert "Traceback" not in text.stderr
    for args in (("list",), ("list", "--json")):
        shown = paralab_cli(*args, path=folder)
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
        assert "good_model" in shown.stdout and "fairness" in shown.stdout
    spec = tmp_path / "digits.toml"
    spec.write_text(
        'name = "faults"\nseed = 0\ndevice = "cpu"\n'
        f'output = "{(tmp_path / "runs").as_posix()}"\ndataset = "digits"\n'
        'model = { name = "mlp", hidden = [16] }\n'
        'protocol = { name = "supervised", epochs = 1, batch_size = 64 }\n'
        'method = { name = "sgd", lr = 0.05 }\nmetrics = ["accuracy"]\n', encoding="utf-8")
    ran = paralab_cli("run", str(spec), path=folder)
    assert ran.returncode == 0, ran.stderr
    assert "completed" in ran.stdout and "accuracy" in ran.stdout
    # Each plugin that failed to load is named before the run (its components are missing).
    failed = {fault.key for fault in FAULTS}
    warned = {line.split()[3] for line in ran.stderr.splitlines()
              if line.startswith("paralab: warning: plugin ")}
    assert warned == failed, (warned, failed)
    typo = spec.read_text("utf-8").replace('"mlp"', '"mpl"')
    (tmp_path / "typo.toml").write_text(typo, encoding="utf-8")
    mistyped = paralab_cli("run", str(tmp_path / "typo.toml"), path=folder)
    assert mistyped.returncode == 2, mistyped.stderr
    assert "did you mean 'mlp'" in mistyped.stderr and "Traceback" not in mistyped.stderr


def test_strict_cli_blames_the_impostor_and_check_plugin_reports_the_clash(
    tmp_path: Path,
) -> None:
    impostors = [fault for fault in FAULTS if fault.distribution in ("evil-fairness",
                                                                    "fairness-thief")]
    folder = plant(tmp_path, impostors, good=False)
    strict = paralab_cli("--strict-plugins", "plugins", path=folder)
    assert strict.returncode == 3
    assert "fairness-thief 2.0.0" in strict.stderr.split("failed:")[0]
    assert "plugin paralab_fairness (paralab" not in strict.stderr
    for name in ("evil-fairness", "paralab_fairness@evil-fairness", "aaa_thief"):
        checked = paralab_cli("check-plugin", name, path=folder)
        assert checked.returncode == 1, (name, checked.stdout, checked.stderr)
        assert "FAIL keeps its names" in checked.stdout, checked.stdout
        assert "paralab_fairness (paralab " in checked.stdout


def test_check_plugin_names_who_tried_to_take_a_bundled_name(tmp_path: Path) -> None:
    from paralab.testing.conformance import _no_clash

    impostor = next(fault for fault in FAULTS if fault.distribution == "evil-fairness")
    with on_path(plant(tmp_path, [impostor], good=False)):
        registry = host.make_registry(LoadSettings()).load()
    detail = _no_clash(registry.plugin("paralab_fairness"), registry)
    assert "evil-fairness 6.6.6" in detail
    with pytest.raises(RuntimeError, match="belongs to paralab_fairness"):
        _no_clash(registry.plugin("evil-fairness"), registry)


def test_a_real_ctrl_c_still_stops_the_command(tmp_path: Path) -> None:
    """SIGINT while a (slow, innocent) plugin imports is the user's: exit 130."""
    marker = tmp_path / "importing"
    source = (f"import pathlib, time\npathlib.Path({str(marker)!r}).write_text('x')\n"
              "time.sleep(60)\nPARALAB_API = '1.0'\n")
    folder = make_distribution(tmp_path / "site", "slow-plugin", "0.1.0",
                               {"slow_plugin": "slow_plugin"}, {"slow_plugin.py": source})
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PARALAB_")}
    environment.update(PARALAB_QUIET="1", PYTHONPATH=str(folder))
    process = subprocess.Popen([sys.executable, "-m", "paralab", "plugins"], cwd=REPOSITORY,
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), process.communicate(timeout=5)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr


def test_keyboard_interrupt_outside_plugin_code_is_the_users(tmp_path: Path) -> None:
    """A KeyboardInterrupt raised by a SIGINT during a contribution hook propagates."""
    source = (HEADER + "import os, signal, time\n\n@hookimpl\ndef paralab_models():\n"
              "    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(5)\n    return []\n")
    folder = make_distribution(tmp_path, "kill-plugin", "0.1.0", {"kill_plugin": "kill_plugin"},
                               {"kill_plugin.py": source})
    with on_path(folder), pytest.raises(KeyboardInterrupt):
        host.make_registry(LoadSettings()).load()
