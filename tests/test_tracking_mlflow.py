"""The ``mlflow`` tracker against real MLflow tracking stores, read back through MLflow's own
client: a sqlite store (the default, and one in tmp_path), and an ``mlflow server`` process on
127.0.0.1. Values must equal ``result.json``'s exactly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import paralab
from paralab import SpecError
from tests.test_tracking import (
    EPOCHS,
    FaultyPlugin,
    expected_long,
    read_long,
    saved_phases,
    spec,
)

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402 - after the skip

from paralab.testing import isolated_registry  # noqa: E402
from paralab_tracking import mlflow_tracker  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

def store_uri(folder: Path) -> str:
    return f"sqlite:///{folder.resolve() / 'mlflow.db'}"


def only_run(client: MlflowClient, experiment: str) -> Any:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r}"
    (run,) = client.search_runs([found.experiment_id])
    return run


def assert_metrics_equal_result(client: MlflowClient, run_id: str, folder: str | Path) -> None:
    """Every phase metric's MLflow history is result.json's curve, step for step, exactly."""
    phases = saved_phases(folder)
    keys = {key for phase in phases for key in phase["metrics"]}
    assert keys == {"train/loss", "test/accuracy", "test/loss"}
    for key in keys:
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        assert history == [(p, phase["metrics"][key]) for p, phase in enumerate(phases)], key


def artifact_names(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    return {info.path for info in client.list_artifacts(run_id, path)}


# ------------------------------------------------------------------------ the default store


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> paralab.Result:
    """One run with all three trackers and the default store (``<output>/mlflow.db``)."""
    output = tmp_path_factory.mktemp("tracked")
    return paralab.run(spec(output, "csv", "tensorboard", "mlflow", name="iris-mlflow"),
                       overrides=["method.lr=0.2"])


@pytest.fixture(scope="module")
def shared_store(tracked: paralab.Result) -> str:
    """The store the module's first run created: creating a sqlite store runs MLflow's
    migrations (seconds), so the other tests reuse it, each in an experiment of its own."""
    return store_uri(Path(tracked.path).parent)


def test_the_default_store_is_sqlite_in_the_output_folder(tracked: paralab.Result) -> None:
    output = Path(tracked.path).parent
    assert (output / "mlflow.db").is_file()
    record = json.loads((Path(tracked.path) / "mlflow_run.json").read_text("utf-8"))
    assert record["tracking_uri"] == store_uri(output)
    client = MlflowClient(store_uri(output))
    run = only_run(client, "iris-mlflow")  # the experiment is named after the spec
    assert run.info.run_id == record["run_id"]
    assert run.info.status == "FINISHED"
    assert run.info.run_name == Path(tracked.path).name
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location == (output / "mlartifacts").as_uri()
    assert tracked.artifacts["mlflow_run"] == "mlflow_run.json"


def test_metrics_params_and_tags_read_back_through_mlflow(tracked: paralab.Result) -> None:
    client = MlflowClient(store_uri(Path(tracked.path).parent))
    run = only_run(client, "iris-mlflow")
    assert_metrics_equal_result(client, run.info.run_id, tracked.path)
    params = run.data.params
    assert params["method.lr"] == "0.2", "the spec after overrides"
    assert params["method.name"] == "sgd"
    assert params["protocol.epochs"] == str(EPOCHS)
    assert params["model.hidden"] == "[16]"
    assert params["metrics.0.name"] == "accuracy"
    assert params["trackers"] == "csv,tensorboard,mlflow"
    # Options the spec leaves at their defaults are parameters too, with the value used.
    assert "activation" not in tracked.spec["model"]
    assert params["model.activation"] == tracked.settings["model"]["activation"] == "relu"
    tags = run.data.tags
    assert tags["paralab.status"] == "completed"
    assert tags["paralab.seed"] == "0"
    assert tags["paralab.run_dir"] == str(Path(tracked.path).resolve())
    plugins = {r["name"]: r["version"] for r in tracked.plugins if r["status"] == "active"}
    assert {k.removeprefix("paralab.plugin."): v for k, v in tags.items()
            if k.startswith("paralab.plugin.")} == plugins
    assert tags["paralab.package.torch"] == tracked.packages["torch"]
    git = tracked.provenance.get("paralab_git")
    if git:  # run from a checkout
        assert tags["mlflow.source.git.commit"] == git["commit"]
        assert tags["paralab.git.dirty"] == str(git["dirty"]).lower()


def test_the_run_folder_is_logged_as_artifacts(tracked: paralab.Result) -> None:
    client = MlflowClient(store_uri(Path(tracked.path).parent))
    run_id = only_run(client, "iris-mlflow").info.run_id
    assert artifact_names(client, run_id) >= {
        "result.json", "summary.md", "curve.png", "model.safetensors", "metrics.csv",
        "metrics_long.csv", "mlflow_run.json", "tensorboard"}
    local = Path(client.download_artifacts(run_id, "result.json"))
    logged = json.loads(local.read_text("utf-8"))
    assert logged["status"] == "completed"
    assert logged["phases"] == saved_phases(tracked.path)
    (events,) = artifact_names(client, run_id, "tensorboard")
    assert Path(events).name.startswith("events.out.tfevents")
    copied = Path(client.download_artifacts(run_id, "metrics_long.csv"))
    assert read_long(copied) == read_long(Path(tracked.path) / "metrics_long.csv")


# ---------------------------------------------------------------------- several runs, failures


def test_two_runs_in_one_process_do_not_mix(tmp_path: Path, shared_store: str) -> None:
    uri = shared_store
    tracker = {"name": "mlflow", "tracking_uri": uri, "experiment": "shared"}
    first = paralab.run(spec(tmp_path / "runs", tracker, name="first", seed=1))
    bare = paralab.run(spec(tmp_path / "runs", name="bare"))
    second = paralab.run(spec(tmp_path / "runs", tracker, name="second", seed=2))
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("shared").experiment_id
    runs = {run.info.run_name: run for run in client.search_runs([experiment])}
    assert set(runs) == {"first", "second"}, "the bare run has no MLflow run"
    assert not (Path(bare.path) / "mlflow_run.json").exists()
    for result in (first, second):
        run = runs[Path(result.path).name]
        assert run.data.params["seed"] == str(result.seed)
        assert_metrics_equal_result(client, run.info.run_id, result.path)
    assert mlflow.active_run() is None, "no process-wide MLflow state is used"


def test_a_run_without_a_folder_is_tracked_too(shared_store: str) -> None:
    tracker = {"name": "mlflow", "tracking_uri": shared_store, "experiment": "no-folder"}
    result = paralab.run(spec(None, tracker))
    client = MlflowClient(shared_store)
    run = only_run(client, "no-folder")
    assert run.info.status == "FINISHED" and run.info.run_name == "iris-tracked"
    assert "paralab.run_dir" not in run.data.tags
    assert artifact_names(client, run.info.run_id) == {"result.json"}
    for key in ("train/loss", "test/accuracy"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert history == [(p, phase["metrics"][key]) for p, phase in enumerate(result.phases)]


def test_a_failed_run_is_a_failed_mlflow_run_with_its_finished_phases(
        tmp_path: Path, shared_store: str) -> None:
    registry = isolated_registry(("faulty_tracking", FaultyPlugin()), discover=True)
    uri = shared_store
    tracker = {"name": "mlflow", "tracking_uri": uri, "experiment": "failed"}
    with pytest.raises(paralab.RunError) as caught:
        paralab.run(spec(tmp_path / "runs", tracker, "csv", "faulty", epochs=5),
                    registry=registry)
    assert caught.value.plugin == "faulty_tracking"
    folder = Path(caught.value.result.path)
    client = MlflowClient(uri)
    run = only_run(client, "failed")
    assert run.info.status == "FAILED"
    assert run.data.tags["paralab.status"] == "failed"
    assert "OSError: the tracking disk is full (during epoch 2)" in run.data.tags["paralab.error"]
    assert len(saved_phases(folder)) == 2
    assert_metrics_equal_result(client, run.info.run_id, folder)
    logged = json.loads(Path(client.download_artifacts(run.info.run_id, "result.json"))
                        .read_text("utf-8"))
    assert logged["status"] == "failed" and logged["error"]["plugin"] == "faulty_tracking"


def test_an_interrupted_run_is_killed(tmp_path: Path, shared_store: str) -> None:
    registry = isolated_registry(("faulty_tracking", FaultyPlugin()), discover=True)
    tracker = {"name": "mlflow", "tracking_uri": shared_store, "experiment": "interrupted"}
    with pytest.raises(KeyboardInterrupt):
        paralab.run(spec(tmp_path / "runs", tracker,
                         {"name": "faulty", "at": 1, "interrupt": True}), registry=registry)
    run = only_run(MlflowClient(shared_store), "interrupted")
    assert run.info.status == "KILLED"
    assert run.data.tags["paralab.status"] == "interrupted"


def test_a_bad_tracking_uri_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        paralab.run(spec(tmp_path, {"name": "mlflow", "tracking_uri": "sqllite:///x.db"}))
    (problem,) = caught.value.problems
    assert problem.startswith("trackers[0]: tracker 'mlflow' (paralab_tracking): "
                              "tracking_uri = 'sqllite:///x.db'")
    assert "sqlite" in problem.split("sqllite", 2)[-1], "MLflow's list of valid schemes"
    assert not any(tmp_path.iterdir())


def test_a_tracking_uri_where_no_server_answers_is_a_spec_error(tmp_path: Path) -> None:
    address = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SpecError) as caught:
        paralab.run(spec(tmp_path, "csv", {"name": "mlflow", "tracking_uri": address}))
    (problem,) = caught.value.problems
    assert problem.startswith(f"trackers[1]: tracker 'mlflow' (paralab_tracking): "
                              f"tracking_uri = '{address}': no MLflow server answers there")
    assert not any(tmp_path.iterdir())


def test_a_tracker_that_fails_fails_the_run_naming_its_plugin(
        tmp_path: Path, shared_store: str) -> None:
    """A real fault of the plugin itself: the artifact store cannot be written (its folder is
    a file) when the run's files are uploaded at the end."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the artifacts would go", "utf-8")
    tracker = {"name": "mlflow", "tracking_uri": shared_store, "experiment": "unwritable",
               "artifact_location": (blocked / "artifacts").as_uri()}
    with pytest.raises(paralab.RunError) as caught:
        paralab.run(spec(tmp_path / "runs", "csv", tracker))
    error = caught.value
    assert error.plugin == "paralab_tracking"
    assert str(error).startswith("plugin paralab_tracking (paralab ")
    folder = Path(error.result.path)
    saved = json.loads((folder / "result.json").read_text("utf-8"))
    assert saved["status"] == "failed" and saved["error"]["plugin"] == "paralab_tracking"
    assert len(saved["phases"]) == EPOCHS, "every finished phase is kept"
    client = MlflowClient(shared_store)
    run = only_run(client, "unwritable")
    assert run.info.status == "FAILED" and run.data.tags["paralab.status"] == "failed"
    assert_metrics_equal_result(client, run.info.run_id, folder)


def test_a_resumed_run_continues_its_mlflow_run(tmp_path: Path, shared_store: str) -> None:
    """Fail after two checkpointed epochs, resume: one MLflow run, FINISHED, whose history is
    the resumed run's result.json step for step; the CSV has each phase once."""
    registry = isolated_registry(("faulty_tracking", FaultyPlugin()), discover=True)
    uri = shared_store
    tracker = {"name": "mlflow", "tracking_uri": uri, "experiment": "resumed"}
    with pytest.raises(paralab.RunError) as caught:
        paralab.run(spec(tmp_path / "runs", tracker, "csv", {"name": "faulty", "once": True},
                         epochs=4, checkpoint_every=1), registry=registry)
    folder = Path(caught.value.result.path)
    first_id = json.loads((folder / "mlflow_run.json").read_text("utf-8"))["run_id"]
    assert only_run(MlflowClient(uri), "resumed").info.status == "FAILED"
    result = paralab.resume(folder, registry=registry)
    assert result.status == "completed" and len(result.phases) == 4
    client = MlflowClient(uri)
    run = only_run(client, "resumed")
    assert run.info.run_id == first_id
    assert run.info.status == "FINISHED" and run.data.tags["paralab.status"] == "completed"
    assert_metrics_equal_result(client, run.info.run_id, folder)
    assert read_long(folder / "metrics_long.csv") == expected_long(saved_phases(folder))


# ------------------------------------------------------------------------------ studies


def study_table(tmp_path: Path, *trackers: Any, **changes: Any) -> dict[str, Any]:
    """A study of 2 learning rates x 2 seeds of the iris spec, its base listing ``trackers``."""
    base = {key: value for key, value in spec(None, *trackers).items() if key != "output"}
    return {"study": {"name": "lr-study", "seeds": [0, 1], "grid": {"method.lr": [0.05, 0.2]},
                      "output": str(tmp_path / "out"), "base": {**base, "save_model": False},
                      **changes}}


def test_a_study_is_a_parent_run_with_its_runs_as_children(
        tmp_path: Path, shared_store: str) -> None:
    table = study_table(tmp_path, "csv", {"name": "mlflow", "tracking_uri": shared_store})
    finished = paralab.run_study(table)
    assert finished.status == "completed"
    folder = Path(finished.folder)
    parent_id = json.loads((folder / mlflow_tracker.STUDY_FILE).read_text("utf-8"))["run_id"]
    client = MlflowClient(shared_store)
    experiment = client.get_experiment_by_name("lr-study").experiment_id  # the study's name
    runs = {run.info.run_id: run for run in client.search_runs([experiment])}
    assert len(runs) == 1 + 4
    parent = runs[parent_id]
    assert parent.info.status == "FINISHED" and parent.info.run_name == "lr-study"
    assert parent.data.tags["paralab.role"] == "study"
    assert parent.data.tags["paralab.status"] == "completed"
    assert parent.data.params["study.seeds"] == "[0, 1]"
    assert parent.data.tags["paralab.study.configurations"] == "2"
    assert json.loads(parent.data.tags["paralab.study.configuration.1"]) == {
        "lr=0.2": {"method.lr": 0.2}}
    assert {"table.csv", "table.md", "study.json", "study.png"} <= artifact_names(
        client, parent_id)
    logged = Path(client.download_artifacts(parent_id, "table.csv", str(tmp_path)))
    assert logged.read_text("utf-8") == (folder / "table.csv").read_text("utf-8")

    children = client.search_runs([experiment],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(children) == 4
    assert len(finished.runs) == 4
    for study_run in finished.runs:
        record = json.loads((Path(study_run.path) / "mlflow_run.json").read_text("utf-8"))
        child = runs[record["run_id"]]
        assert child.data.tags["mlflow.parentRunId"] == parent_id
        assert child.data.tags["paralab.study.configuration"] == study_run.configuration
        assert child.info.run_name == f"{study_run.configuration} {Path(study_run.path).name}"
        assert child.data.tags["paralab.study.seed"] == str(study_run.seed)
        assert child.data.params["seed"] == str(study_run.seed)
        assert child.data.params["method.lr"] == study_run.configuration.removeprefix("lr=")
        assert_metrics_equal_result(client, child.info.run_id, study_run.path)

    again = paralab.run_study(table)  # every run completed: kept, and the parent reused
    assert again.status == "completed"
    assert json.loads((folder / mlflow_tracker.STUDY_FILE).read_text("utf-8"))[
        "run_id"] == parent_id
    assert len(client.search_runs([experiment])) == 1 + 4
    assert client.get_run(parent_id).info.status == "FINISHED"


@pytest.mark.slow
def test_a_study_defaults_to_a_store_in_its_folder(tmp_path: Path) -> None:
    finished = paralab.run_study(study_table(tmp_path, "mlflow", seeds=[0],
                                             grid={"method.lr": [0.1]}))
    uri = store_uri(Path(finished.folder))
    client = MlflowClient(uri)
    (run,) = finished.runs
    record = json.loads((Path(run.path) / "mlflow_run.json").read_text("utf-8"))
    assert record["tracking_uri"] == uri, "the runs use their parent's store"
    child = client.get_run(record["run_id"])
    parent = client.get_run(child.data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FINISHED" and parent.info.run_name == "lr-study"
    assert_metrics_equal_result(client, child.info.run_id, run.path)


@pytest.mark.slow
def test_a_study_on_worker_processes_tracks_every_run(tmp_path: Path, shared_store: str) -> None:
    """Two worker processes write to one sqlite store at once."""
    table = study_table(tmp_path, {"name": "mlflow", "tracking_uri": shared_store,
                                   "experiment": "processes"},
                        executor="processes", workers=2)
    finished = paralab.run_study(table)
    assert finished.status == "completed"
    client = MlflowClient(shared_store)
    experiment = client.get_experiment_by_name("processes").experiment_id
    parent_id = json.loads((Path(finished.folder) / mlflow_tracker.STUDY_FILE)
                           .read_text("utf-8"))["run_id"]
    children = client.search_runs([experiment],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(c.data.tags["paralab.study.seed"] for c in children) == ["0", "0", "1", "1"]
    for study_run in finished.runs:
        run_id = json.loads((Path(study_run.path) / "mlflow_run.json").read_text("utf-8"))[
            "run_id"]
        assert client.get_run(run_id).info.status == "FINISHED"
        assert_metrics_equal_result(client, run_id, study_run.path)


# --------------------------------------------------------------------- a real MLflow server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 (its own sqlite store and proxied artifacts), killed with
    its workers at teardown."""
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", store_uri(tmp_path / "server"),
         "--artifacts-destination", str(tmp_path / "server" / "artifacts"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("mlflow server did not start:\n"
                            + (tmp_path / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.mark.slow
def test_a_run_tracked_on_a_real_mlflow_server(tmp_path: Path, mlflow_server: str) -> None:
    tracker = {"name": "mlflow", "tracking_uri": mlflow_server, "experiment": "served"}
    result = paralab.run(spec(tmp_path / "runs", "csv", tracker))
    client = MlflowClient(mlflow_server)
    run = only_run(client, "served")
    assert run.info.status == "FINISHED"
    assert run.data.params["method.lr"] == "0.1"
    assert run.data.tags["paralab.plugin.paralab_tracking"]
    assert_metrics_equal_result(client, run.info.run_id, result.path)
    assert artifact_names(client, run.info.run_id) >= {"result.json", "metrics_long.csv",
                                                       "model.safetensors"}
    copied = Path(client.download_artifacts(run.info.run_id, "metrics_long.csv", str(tmp_path)))
    assert read_long(copied) == read_long(Path(result.path) / "metrics_long.csv")
