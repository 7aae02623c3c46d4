"""``paralab init``: the starter spec runs, and the plugin skeleton, pip-installed into a fresh
virtual environment with its own entry point, passes ``check-plugin``, its own tests and a run
composed with two bundled plugins (federated training, a fairness audit)."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import paralab
from paralab.scaffold import write_plugin, write_spec
from tests.host_support import paralab_cli

COMPOSED = """\
name = "composed"
seed = 0
dataset = {{ name = "biased_synthetic", n = 600 }}
model = {{ name = "{prefix}_mlp", width = 8 }}
protocol = {{ name = "federated", clients = 6, fraction = 0.5, rounds = 3, local_epochs = 1 }}
method = {{ name = "fedavg", lr = 0.1 }}
metrics = ["accuracy", "{prefix}_error_rate"]
auditors = [{{ name = "fairness", bootstrap = 0 }}]
output = "runs"
"""


def test_starter_spec_is_valid_and_never_overwritten(tmp_path):
    path = write_spec(tmp_path / "first.toml")
    spec = tomllib.loads(path.read_text("utf-8"))
    assert spec["dataset"] == "digits" and spec["name"] == "first"
    resolved = paralab.ExperimentSpec.from_dict({**spec, "output": None})
    assert resolved.model.name == "mlp"
    with pytest.raises(FileExistsError, match="never overwrites"):
        write_spec(path)


def test_init_cli_writes_the_spec_and_refuses_bad_plugin_names(tmp_path):
    done = paralab_cli("init", str(tmp_path / "exp.toml"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "exp.toml").is_file() and "paralab run" in done.stdout
    bad = paralab_cli("init", "--plugin", "My-Plugin", str(tmp_path / "bad"))
    assert bad.returncode == 2
    assert "not a valid Python package name" in bad.stderr
    assert not (tmp_path / "bad").exists()


def _fresh_venv(folder: Path) -> Path:
    """A new virtual environment that sees this environment's packages (paralab, torch, pip,
    setuptools) through a ``.pth`` file, so nothing is downloaded, but installs into its own
    site-packages (pip installs into the interpreter that runs it)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True,
                   timeout=300)
    python = folder / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    ours = [path for path in site.getsitepackages() if Path(path).is_dir()]
    lines = [f"import site; site.addsitedir({path!r})" for path in ours]
    Path(own, "paralab_parent_env.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return python


@pytest.mark.slow
def test_plugin_skeleton_installs_and_passes_the_kit(tmp_path):
    folder = write_plugin("paralab_starter", tmp_path / "paralab-starter")
    python = _fresh_venv(tmp_path / "venv")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PARALAB_")}
    environment.update(PARALAB_QUIET="1", OMP_NUM_THREADS="1")

    def call(*args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(python), *args], capture_output=True, text=True, cwd=cwd,
                              env=environment, timeout=600, check=False)

    installed = call("-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                     str(folder))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # Found through its entry point in the fresh venv (and not in this one).
    listed = call("-m", "paralab", "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    starter = [p for p in json.loads(listed.stdout) if p["name"] == "paralab_starter"]
    assert starter and starter[0]["status"] == "active"
    assert starter[0]["distribution"] == "paralab-starter"

    checked = call("-m", "paralab", "check-plugin", "paralab_starter")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "FAIL" not in checked.stdout

    tests = call("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=folder)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout

    spec = tmp_path / "composed.toml"
    spec.write_text(COMPOSED.format(prefix="starter"), encoding="utf-8")
    ran = call("-m", "paralab", "run", str(spec), "-q")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    result = json.loads(next((tmp_path / "runs").glob("composed*/result.json")).read_text())
    assert result["status"] == "completed"
    metrics = result["metrics"]
    assert abs(metrics["test/accuracy"] + metrics["test/starter_error_rate"] - 1) < 1e-6
    assert any(key.startswith("fairness") for key in result["audits"])
    used = {plugin["name"] for plugin in result["plugins"]}
    assert {"paralab_starter", "paralab_federated", "paralab_fairness"} <= used
