"""Runs that cannot be lost or crashed (issue 14): a folder of their own, names that stay
inside ``output``, spec-shape errors as SpecErrors, interrupts recorded, a plugin's sys.exit
contained, a quiet broken pipe, a relative PARALAB_DATA."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import paralab
from paralab import RunError, SpecError, hookimpl
from paralab.results import ResultWriter
from paralab.testing import TINY, TinyDataPlugin, isolated_registry
from tests.host_support import REPOSITORY, paralab_cli


def tiny(**changes):
    spec = {"dataset": "iris", "model": {"name": "mlp", "hidden": [16]},
            "protocol": {"name": "supervised", "epochs": 2}, "output": None, "device": "cpu"}
    spec.update(changes)
    return spec


# ------------------------------------------------------------------------------ run folders


def test_a_run_claims_its_folder_exclusively(tmp_path):
    first, second = ResultWriter(tmp_path, "same"), ResultWriter(tmp_path, "same")
    (tmp_path / "same-2").mkdir()  # someone else's folder, even without a result.json
    assert first.claim() == tmp_path / "same"
    assert second.claim() == tmp_path / "same-3"


def _spec_file(folder: Path, epochs: int) -> Path:
    spec = folder / "race.toml"
    spec.write_text(
        'dataset = "digits"\nmodel = { name = "mlp", hidden = [32] }\n'
        f'protocol = {{ name = "supervised", epochs = {epochs} }}\n'
        f'output = "{folder / "runs"}"\ndevice = "cpu"\n', encoding="utf-8")
    return spec


def test_two_processes_running_one_spec_keep_both_results(tmp_path):
    spec = _spec_file(tmp_path, epochs=2)
    command = [sys.executable, "-m", "paralab", "run", str(spec)]
    environment = dict(os.environ, PARALAB_QUIET="1")
    processes = [subprocess.Popen(command, env=environment, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert folders == ["race", "race-2"]
    for folder in folders:
        data = json.loads((tmp_path / "runs" / folder / "result.json").read_text())
        assert data["status"] == "completed" and len(data["phases"]) == 2


@pytest.mark.parametrize("name", ["../x", "/abs/path", "zz/../b", "a\\b", "..", "a\x00b",
                                  "n" * 201])
def test_a_name_that_would_leave_output_is_a_spec_error(tmp_path, name):
    with pytest.raises(SpecError, match="name = "):
        paralab.run(tiny(name=name, output=str(tmp_path / "runs")))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "x").exists()


def test_an_output_that_is_a_file_is_a_spec_error_before_training(tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("not a folder")
    with pytest.raises(SpecError, match="results.txt is a file, not a folder"):
        paralab.run(tiny(output=str(target / "runs")))
    with pytest.raises(SpecError, match="results.txt is a file, not a folder"):
        paralab.run(tiny(output=str(target)))


# ------------------------------------------------------------------------ spec-shape errors


@pytest.mark.parametrize(("changes", "start"), [
    ({"name": 1}, "name = 1: expected str"),
    ({"output": 1}, "output = 1: expected str or None"),
    ({"metrics": 1}, "metrics: expected a list of components"),
    ({"auditors": 2.5}, "auditors: expected a list of components"),
    ({"losses": True}, "losses: expected a list of components"),
    ({"middleware": 3}, "middleware: expected a list of components"),
    ({"seed": 2**63}, "seed = 9223372036854775808: must be in [0, 2**63)"),
    ({"seed": -1}, "seed = -1: must be in [0, 2**63)"),
])
def test_spec_shapes_are_spec_errors(changes, start):
    with pytest.raises(SpecError) as caught:
        paralab.run(tiny(**changes))
    assert any(p.startswith(start) for p in caught.value.problems), caught.value.problems


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_is_a_spec_error():
    with pytest.raises(SpecError, match="device = 'cuda': .*CUDA is not available"):
        paralab.run(tiny(device="cuda"))


def _spec_error_from_cli(path: Path, message: str) -> None:
    result = paralab_cli("run", str(path))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_unreadable_spec_files_are_spec_errors(tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 3000 + "]" * 3000 + "\n")
    _spec_error_from_cli(deep, "invalid experiment spec")
    latin = tmp_path / "latin.toml"
    latin.write_bytes('name = "caf\xe9"\ndataset = "iris"\n'.encode("latin-1"))
    _spec_error_from_cli(latin, "not UTF-8 text")
    _spec_error_from_cli(tmp_path, "is not a regular file")
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    _spec_error_from_cli(fifo, "is not a regular file")


# ------------------------------------------------------------------------------- interrupts


def _wait_for_phases(result_file: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result_file.exists():
            try:
                if json.loads(result_file.read_text())["phases"]:
                    return
            except (json.JSONDecodeError, KeyError):
                pass  # written atomically, but read between the rename and the next write
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("the run finished no phase in time")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_run_marks_it_interrupted_and_keeps_its_phases(tmp_path, signum, code):
    spec = _spec_file(tmp_path, epochs=100000)
    process = subprocess.Popen([sys.executable, "-m", "paralab", "run", str(spec)],
                               env=dict(os.environ, PARALAB_QUIET="1"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    folder = tmp_path / "runs" / "race"
    try:
        _wait_for_phases(folder / "result.json", process)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, stderr
    assert f"interrupted ({signal.Signals(signum).name})" in stderr
    data = json.loads((folder / "result.json").read_text())
    assert data["status"] == "interrupted"
    assert data["error"]["type"] == ("KeyboardInterrupt" if signum == signal.SIGINT else "SIGTERM")
    assert data["phases"], "the finished phases are kept"
    assert (folder / "summary.md").exists() and "interrupted" in (folder / "summary.md").read_text()


class Exits:
    PARALAB_API = "1.0"

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    @hookimpl
    def paralab_after_phase(self, run, phase):
        if phase.index == 1:
            sys.exit(3)

    @hookimpl
    def paralab_on_error(self, run, error, phase):
        self.errors.append(error)


def test_a_plugin_calling_sys_exit_fails_the_run_not_the_process(tmp_path):
    plugin = Exits()
    registry = isolated_registry(("paralab_tiny", TinyDataPlugin()), ("exits", plugin))
    with pytest.raises(RunError, match="plugin exits .*SystemExit") as caught:
        paralab.run(tiny(dataset=TINY, protocol={"name": "supervised", "epochs": 3},
                         output=str(tmp_path)), registry=registry)
    result = caught.value.result
    assert result.status == "failed" and result.error["plugin"] == "exits"
    assert [phase["index"] for phase in result.phases] == [0]
    assert len(plugin.errors) == 1 and isinstance(plugin.errors[0], SystemExit)
    assert (Path(result.path) / "summary.md").exists()


# ---------------------------------------------------------------------------- the command line


def test_a_closed_pipe_is_quiet():
    command = f"{sys.executable} -m paralab list | head -1"
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONUNBUFFERED="0"))
    assert done.stdout.count("\n") == 1
    assert "BrokenPipe" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_relative_data_root_survives_a_change_of_directory(tmp_path, data_root):
    relative = os.path.relpath(data_root, REPOSITORY)
    code = ("import os, paralab; os.chdir('/'); "
            "print(len(paralab.load_dataset('mnist')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, PARALAB_DATA=relative))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "10000"
