"""Executors give one table: the same study on ``local``, ``processes`` (spawned workers) and
``ray`` (a multi-node Ray cluster simulated on this machine) has identical per-run metrics
and therefore an identical table; a Ray Tune search on that cluster runs what it draws."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import paralab
from paralab.study import StudySpec, run_study
from paralab.study.executors import Task, balanced
from paralab.study.spec import study_from_dict

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the workers use one thread too

BASE = {
    "dataset": "iris",
    "model": {"name": "mlp", "hidden": [16]},
    "protocol": {"name": "supervised", "epochs": 2},
    "method": {"name": "sgd", "lr": 0.05},
    "device": "cpu",
}


def study(output: Path, name: str, **table: Any) -> StudySpec:
    table = {"name": name, "seeds": [0, 1], "grid": {"method.lr": [0.02, 0.2]},
             "output": str(output), **table}
    return study_from_dict({"study": {**table, "base": BASE}})


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> paralab.Study:
    import torch

    torch.set_num_threads(1)  # what every worker uses: the same arithmetic, the same bits
    return run_study(study(tmp_path_factory.mktemp("local"), "local"))


def metrics_by_run(finished: paralab.Study) -> dict[tuple[str, int], dict[str, Any]]:
    return {(run.configuration, run.seed): run.metrics for run in finished.runs}


def test_seed_groups_are_split_only_to_feed_idle_workers() -> None:
    task = Task("a", {"output": "x"}, (0, 1, 2, 3, 4))
    assert [t.seeds for t in balanced([task], 1)] == [(0, 1, 2, 3, 4)]
    assert [t.seeds for t in balanced([task], 2)] == [(0, 1, 2), (3, 4)]
    assert [t.seeds for t in balanced([task, Task("b", {}, (0,))], 3)] == \
        [(0, 1, 2), (3, 4), (0,)]
    assert sum(len(t.seeds) for t in balanced([task], 9)) == 5


@pytest.mark.slow
def test_processes_give_the_local_table(tmp_path: Path, local: paralab.Study) -> None:
    finished = run_study(study(tmp_path, "processes", executor="processes", workers=2))
    assert finished.status == "completed"
    assert metrics_by_run(finished) == metrics_by_run(local)
    assert finished.table().equals(local.table())
    run = json.loads((finished.folder / "lr=0.2" / "seed=1" / "result.json").read_text())
    assert run["spec"]["output"] == str(finished.folder / "lr=0.2")
    assert run["study"]["configuration"] == "lr=0.2"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A Ray cluster on this machine: a head and one more node, one CPU each. (On this
    machine's own address: ``ray.init(address="127.0.0.1:PORT")`` connects to the machine's
    address instead, so nodes bound to 127.0.0.1 could not be reached.)"""
    cluster_utils = pytest.importorskip("ray.cluster_utils")
    import ray

    if ray.is_initialized():
        ray.shutdown()
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_cluster_gives_the_local_table(tmp_path: Path, local: paralab.Study,
                                           cluster: Any) -> None:
    import ray

    finished = run_study(study(tmp_path, "ray", executor="ray", ray_address=cluster.address))
    assert not ray.is_initialized()  # the executor connected, and disconnected after
    assert finished.status == "completed"
    assert metrics_by_run(finished) == metrics_by_run(local)
    assert finished.table().equals(local.table())
    assert len({run.worker for run in finished.runs}) == 2  # both nodes ran runs
    for run in finished.runs:  # written by the driver: the whole folder, in the study
        folder = Path(run.path)
        assert folder.parent.parent == finished.folder
        assert {"result.json", "summary.md", "curve.png", "model.safetensors"} <= \
            {file.name for file in folder.iterdir()}
        saved = json.loads((folder / "result.json").read_text())
        assert saved["spec"]["output"] == str(folder.parent)
    model = paralab.load_model(finished.folder / "lr=0.2" / "seed=0")
    assert sum(p.numel() for p in model.parameters()) == 4 * 16 + 16 + 16 * 3 + 3


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_tune_search_runs_what_it_draws(tmp_path: Path, cluster: Any) -> None:
    space = {"method.lr": {"low": 0.01, "high": 0.3, "log": True}, "model.hidden": [[8], [16]]}
    spec = study(tmp_path, "tune", grid={}, seeds=[0], ray_address=cluster.address,
                 executor="ray",
                 search={"kind": "ray_tune", "trials": 2, "objective": "test/accuracy",
                         "space": space})
    finished = run_study(spec)
    frame = finished.table()
    assert list(frame.index) == ["trial-000", "trial-001"] and (frame["n"] == 1).all()
    assert frame["method.lr"].between(0.01, 0.3).all()
    for label, row in frame.iterrows():  # each trial's run is the run of what it drew
        single = paralab.run({**BASE, "output": None, "seed": 0},
                             overrides=[f"method.lr={row['method.lr']!r}",
                                        f"model.hidden={row['model.hidden']}"])
        assert row["test/accuracy.mean"] == single.metrics["test/accuracy"], label
