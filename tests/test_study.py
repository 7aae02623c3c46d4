"""Studies: the [study] table, the study folder, the table's numbers, resume, searches,
trackers around a study and the CLI functions, on the local executor."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

import paralab
from paralab import host
from paralab.spec import SpecError
from paralab.study import StudySpec, load_study, parse_seeds, run_study
from paralab.study.cli import run_as_study, sweep_main
from paralab.study.expand import grid_configurations, split_values, toml_value
from paralab.study.spec import study_from_dict
from paralab_registry import LoadSettings
from tests.host_support import on_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest

BASE = {
    "dataset": "iris",
    "model": {"name": "mlp", "hidden": [16]},
    "protocol": {"name": "supervised", "epochs": 3},
    "method": {"name": "sgd", "lr": 0.05},
    "device": "cpu",
    "save_model": False,
}


def study(tmp_path: Path, **table: Any) -> StudySpec:
    """A small iris study in ``tmp_path/out``."""
    table = {"name": "iris", "seeds": [0, 1, 2], "grid": {"method.lr": [0.01, 0.1]},
             "output": str(tmp_path / "out"), **table}
    base = table.pop("base", BASE)
    return study_from_dict({"study": {**table, "base": base}})


def result_json(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "result.json").read_text())


# ----------------------------------------------------------------------- the study table


def test_table_is_numpy_and_scipy_over_the_runs_result_json(tmp_path: Path) -> None:
    finished = run_study(study(tmp_path))
    folder = tmp_path / "out" / "iris"
    assert finished.folder == folder and finished.status == "completed"
    saved = json.loads((folder / "study.json").read_text())
    assert [c["label"] for c in saved["configurations"]] == ["lr=0.01", "lr=0.1"]
    assert len(saved["runs"]) == 6 and {r["status"] for r in saved["runs"]} == {"completed"}
    csv = {row["configuration"]: row for row in _read_csv(folder / "table.csv")}
    frame = finished.table()
    for label in ("lr=0.01", "lr=0.1"):
        runs = [result_json(folder / label / f"seed={seed}") for seed in (0, 1, 2)]
        assert [r["seed"] for r in runs] == [0, 1, 2]
        assert {r["study"]["configuration"] for r in runs} == {label}
        for metric in ("test/accuracy", "test/loss"):
            values = np.array([r["metrics"][metric] for r in runs])
            mean, std = values.mean(), values.std(ddof=1)
            half = stats.t.ppf(0.975, 2) * std / math.sqrt(3)
            row = frame.loc[label]
            assert row["n"] == 3
            assert row[f"{metric}.mean"] == pytest.approx(mean, rel=1e-12, abs=1e-15)
            assert row[f"{metric}.std"] == pytest.approx(std, rel=1e-12, abs=1e-15)
            assert row[f"{metric}.ci_low"] == pytest.approx(mean - half, rel=1e-12, abs=1e-15)
            assert row[f"{metric}.ci_high"] == pytest.approx(mean + half, rel=1e-12, abs=1e-15)
            assert float(csv[label][f"{metric}.mean"]) == pytest.approx(mean, rel=1e-12)
            assert float(csv[label][f"{metric}.ci_high"]) == pytest.approx(mean + half,
                                                                           rel=1e-12)
        assert frame.loc[label, "method.lr"] == float(label.split("=")[1])
    markdown = (folder / "table.md").read_text()
    accuracy = frame.loc["lr=0.1"]
    half = (accuracy["test/accuracy.ci_high"] - accuracy["test/accuracy.ci_low"]) / 2
    assert f"{accuracy['test/accuracy.mean']:.4f} ± {half:.4f}" in markdown
    history = finished.history()
    assert len(history) == 6 * 3 and set(history["configuration"]) == {"lr=0.01", "lr=0.1"}
    phase = result_json(folder / "lr=0.1" / "seed=2")["phases"][1]
    row = history[(history["configuration"] == "lr=0.1") & (history["seed"] == 2)].iloc[1]
    assert row["index"] == 1 and row["test/accuracy"] == phase["metrics"]["test/accuracy"]
    assert len(finished.history("lr=0.01")) == 9
    png = folder / "study.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_study_run_is_the_run_paralab_run_makes_of_that_configuration(tmp_path: Path) -> None:
    finished = run_study(study(tmp_path, seeds=[1], grid={"method.lr": [0.1]}))
    [run] = finished.runs
    single = paralab.run({**BASE, "output": None, "seed": 1}, overrides=["method.lr=0.1"])
    assert run.metrics == single.metrics
    assert run.result().phases[-1]["metrics"] == single.phases[-1]["metrics"]


def test_one_seed_has_no_interval_and_best_reads_the_table(tmp_path: Path) -> None:
    finished = run_study(study(tmp_path, seeds="4"))
    frame = finished.table()
    assert (frame["n"] == 1).all()
    assert frame["test/accuracy.std"].isna().all() and frame["test/accuracy.ci_low"].isna().all()
    best = finished.best("test/loss")  # a loss is minimized
    assert best.mean == frame["test/loss.mean"].min()
    assert best.configuration == frame["test/loss.mean"].idxmin()
    assert best.values == {"method.lr": float(best.configuration.split("=")[1])}
    assert finished.best("test/loss", direction="maximize").mean == frame["test/loss.mean"].max()
    text = repr(finished)
    assert "2 configuration(s) x 1 seed(s), 2/2 completed" in text
    assert f"{frame.loc[finished.best().configuration, 'test/accuracy.mean']:.4f}" in text
    assert "<table>" in finished._repr_html_() and "lr=0.01" in finished._repr_html_()
    with pytest.raises(KeyError, match="metrics: test/accuracy, test/loss"):
        finished.best("val/accuracy")


# ------------------------------------------------------------------------- bad input


def test_an_unknown_grid_path_is_a_spec_error_before_any_folder(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        run_study(study(tmp_path, grid={"method.lrr": [0.01, 0.1]}))
    assert any(p.startswith("study.grid['method.lrr']:") and "did you mean 'lr'" in p
               for p in caught.value.problems), caught.value.problems
    assert not (tmp_path / "out").exists()


def test_an_invalid_configuration_is_named_before_any_run(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        run_study(study(tmp_path, grid={"protocol.epochs": [2, 0]}))
    [problem] = caught.value.problems
    assert problem.startswith("configuration epochs=0: protocol.epochs = 0")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SpecError) as caught:
        run_study(study(tmp_path, base={**BASE, "dataset": "irsi"}))
    assert len(caught.value.problems) == 1 and "'irsi'" in caught.value.problems[0]
    assert "did you mean 'iris'" in caught.value.problems[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("table", "expected"), [
    ({"seed": [0, 1]}, "study.seed: unknown field (did you mean 'seeds'?)"),
    ({"seeds": "0-x"}, "study.seeds = '0-x': '0-x' is not a seed or a range"),
    ({"seeds": [1, 1]}, "study.seeds: seed 1 is listed twice"),
    ({"grid": {"method.lr": 0.1}}, "study.grid['method.lr'] = 0.1: a non-empty list"),
    ({"grid": {"method.lr": [0.1, 0.1]}}, "the value 0.1 is listed twice"),
    ({"executor": "proceses"}, "study.executor = 'proceses': one of local, processes, ray "
                               "(did you mean 'processes'?)"),
    ({"workers": 0}, "study.workers = 0: a positive integer"),
    ({"search": {"kind": "optuna", "trials": 2, "space": {"method.lr": {"low": 1, "high": 0}}}},
     "low (1) must be below high (0)"),
    ({"search": {"kind": "grid", "trials": 2, "space": {"method.lr": [0.1]}}},
     "study.search.kind = 'grid': one of random, optuna, ray_tune"),
    ({"search": {"kind": "random", "trials": 2, "spaces": {}}},
     "study.search.spaces: unknown field (did you mean 'space'?)"),
    ({"name": "a/b"}, "study.name = 'a/b': must be one folder name"),
])
def test_study_table_problems_name_the_field(tmp_path: Path, table: dict, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        study(tmp_path, **table)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_study_files_name_their_base_once(tmp_path: Path) -> None:
    spec_file = tmp_path / "base.toml"
    spec_file.write_text('dataset = "iris"\nmodel = "mlp"\n')
    (tmp_path / "by_file.toml").write_text('[study]\nspec = "base.toml"\nseeds = "0-2,5"\n')
    loaded = load_study(tmp_path / "by_file.toml")
    assert loaded.name == "by_file" and loaded.seeds == (0, 1, 2, 5)
    assert loaded.base == {"dataset": "iris", "model": "mlp", "name": "base"}
    (tmp_path / "top.toml").write_text('dataset = "iris"\n[study]\nseeds = 3\n')
    assert load_study(tmp_path / "top.toml").base == {"dataset": "iris"}
    (tmp_path / "both.toml").write_text('dataset = "iris"\n[study]\nspec = "base.toml"\n')
    with pytest.raises(SpecError, match="given 2 ways"):
        load_study(tmp_path / "both.toml")
    (tmp_path / "none.toml").write_text('[study]\nseeds = 3\n')
    with pytest.raises(SpecError, match="study.spec: name the base experiment"):
        load_study(tmp_path / "none.toml")
    (tmp_path / "missing.toml").write_text('[study]\nspec = "nope.toml"\n')
    with pytest.raises(SpecError, match="study.spec = 'nope.toml': no such spec file"):
        load_study(tmp_path / "missing.toml")


def test_grammar_of_seeds_grid_values_and_labels() -> None:
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4)
    assert parse_seeds("0-2, 7") == (0, 1, 2, 7)
    assert parse_seeds(3) == (3,)
    assert split_values("[64,64],[128], 0.5,{ name = \"adam\", lr = 0.1 }") == \
        ["[64,64]", "[128]", "0.5", '{ name = "adam", lr = 0.1 }']
    from paralab.overrides import parse_value

    for value in (0.01, 1e-05, 3, True, "adam", [256, 256], {"name": "adam", "lr": 0.001}):
        assert parse_value(toml_value(value)) == value
    labels = [c.label for c in grid_configurations(
        [("method.lr", [0.01, 0.1]), ("model.hidden", [[64], [256, 256]])])]
    assert labels == ["lr=0.01,hidden=64", "lr=0.01,hidden=256x256", "lr=0.1,hidden=64",
                      "lr=0.1,hidden=256x256"]
    clash = grid_configurations([("method.lr", [0.1]), ("middleware[0].lr", [0.2])])
    assert clash[0].label == "method.lr=0.1,middleware_0_.lr=0.2"
    assert clash[0].overrides == ["method.lr=0.1", "middleware[0].lr=0.2"]


# ----------------------------------------------------------------------------- resume


class Probe:
    """A plugin that counts the runs that start and fails the runs listed in ``fail``."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int]] = []
        self.fail: set[tuple[str, int]] = set()

    @paralab.hookimpl
    def paralab_before_experiment(self, run: Any) -> None:
        self.started.append((run.study["configuration"], run.spec.seed))

    @paralab.hookimpl
    def paralab_after_phase(self, run: Any, phase: Any) -> None:
        if (run.study["configuration"], run.spec.seed) in self.fail and phase.index == 1:
            raise RuntimeError("probe: this run fails in its second epoch")


@pytest.fixture
def probed() -> tuple[Any, Probe]:
    registry = host.make_registry(LoadSettings()).load()
    probe = Probe()
    registry.pm.register(probe, name="study-probe")
    return registry, probe


def test_resume_skips_completed_runs_and_reruns_a_failed_one(tmp_path: Path,
                                                             probed: tuple[Any, Probe]) -> None:
    registry, probe = probed
    probe.fail = {("lr=0.1", 1)}
    first = run_study(study(tmp_path), registry=registry)
    assert len(probe.started) == 6
    assert first.status == "incomplete"
    statuses = {(r.configuration, r.seed): r.status for r in first.runs}
    assert statuses.pop(("lr=0.1", 1)) == "failed" and set(statuses.values()) == {"completed"}
    frame = first.table()
    assert frame.loc["lr=0.1", "n"] == 2 and frame.loc["lr=0.1", "failed"] == 1
    failed = result_json(first.folder / "lr=0.1" / "seed=1")
    assert failed["status"] == "failed" and len(failed["phases"]) == 1  # kept epoch 0
    stamps = {path: path.stat().st_mtime_ns for path in first.folder.rglob("result.json")}

    probe.fail, probe.started = set(), []
    second = run_study(study(tmp_path), registry=registry)
    assert probe.started == [("lr=0.1", 1)]  # only the failed run ran again
    assert second.status == "completed" and second.table().loc["lr=0.1", "n"] == 3
    for path, stamp in stamps.items():
        if "lr=0.1/seed=1" not in str(path):
            assert path.stat().st_mtime_ns == stamp, path  # completed runs untouched
    attempt = result_json(first.folder / "lr=0.1" / ".attempts" / "seed=1.1")
    assert attempt["status"] == "failed" and len(attempt["phases"]) == 1
    rerun = result_json(first.folder / "lr=0.1" / "seed=1")
    assert rerun["status"] == "completed" and len(rerun["phases"]) == 3

    probe.started = []
    third = run_study(study(tmp_path), registry=registry)
    assert probe.started == [] and third.table().equals(second.table())
    fresh = run_study(study(tmp_path, seeds=[0], grid={"method.lr": [0.1]}), registry=registry,
                      resume=False)
    assert fresh.folder.name == "iris-2" and probe.started == [("lr=0.1", 0)]


def test_a_run_folder_of_the_same_name_is_passed_over(tmp_path: Path) -> None:
    paralab.run({**BASE, "name": "iris", "output": str(tmp_path / "out")})  # runs "iris"
    first = run_study(study(tmp_path, seeds=[0], grid={"method.lr": [0.1]}))
    assert first.folder.name == "iris-2"
    assert (tmp_path / "out" / "iris" / "result.json").is_file()
    again = run_study(study(tmp_path, seeds=[0], grid={"method.lr": [0.1]}))
    assert again.folder == first.folder and again.counts() == {"completed": 1}


def test_resume_refuses_runs_of_another_spec(tmp_path: Path) -> None:
    run_study(study(tmp_path, seeds=[0], grid={"method.lr": [0.1]}))
    changed = study(tmp_path, seeds=[0], grid={"method.lr": [0.1]},
                    base={**BASE, "protocol": {"name": "supervised", "epochs": 2}})
    with pytest.raises(SpecError, match=r"lr=0.1/seed=0: holds a completed run of another spec "
                                        r"\(protocol: "):
        run_study(changed)


# ---------------------------------------------------------------------------- searches


SPACE = {"method.lr": {"low": 0.001, "high": 0.5, "log": True}, "model.hidden": [[8], [32]]}


@pytest.mark.parametrize("kind", ["random", "optuna"])
def test_searches_run_their_trials_within_the_space(tmp_path: Path, kind: str,
                                                    probed: tuple[Any, Probe]) -> None:
    registry, probe = probed
    spec = study(tmp_path, grid={}, seeds=[0, 1], name=kind,
                 search={"kind": kind, "trials": 3, "objective": "test/accuracy", "seed": 3,
                         "space": SPACE})
    finished = run_study(spec, registry=registry)
    frame = finished.table()
    assert list(frame.index) == ["trial-000", "trial-001", "trial-002"]
    assert (frame["n"] == 2).all() and len(probe.started) == 6
    assert frame["method.lr"].between(0.001, 0.5).all()
    assert {tuple(h) for h in frame["model.hidden"]} <= {(8,), (32,)}
    for label, row in frame.iterrows():  # each trial ran what it drew
        run = result_json(finished.folder / label / "seed=0")
        assert run["spec"]["method"]["lr"] == row["method.lr"]
        assert run["spec"]["model"]["hidden"] == row["model.hidden"]
    probe.started = []
    again = run_study(spec, registry=registry)  # all trials done: nothing runs again
    assert probe.started == [] and again.table().equals(frame)
    if kind == "random":  # drawn from the seeded generator: the same trials every time
        other = run_study(spec.with_changes(name="random-again"), registry=registry)
        assert other.table()["method.lr"].tolist() == frame["method.lr"].tolist()


# ---------------------------------------------------------------------------- trackers


TRACKER_PLUGIN = textwrap.dedent('''
    import paralab
    PARALAB_API = "1.0"
    EVENTS = []

    class StudyTracker:
        def __init__(self, tag="t"):
            self.tag = tag

        def before_study(self, info):
            EVENTS.append(("before_study", info.name, len(info.seeds)))
            info.extra["parent"] = "parent-" + self.tag

        def after_study(self, info):
            EVENTS.append(("after_study", info.status, info.main_metric, info.table))

        @paralab.hookimpl
        def paralab_after_experiment(self, run, result):
            EVENTS.append(("run", run.study["configuration"], run.study["seed"],
                           run.study["extra"]["parent"], run.study["values"]))

    @paralab.hookimpl
    def paralab_trackers():
        return [paralab.TrackerSpec(name="study_probe", factory="study_probe_pkg.tracker:StudyTracker",
                                    options={"tag": paralab.Option("t", type=str)})]
''')


def test_trackers_see_the_study_around_its_runs(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    (plugin / "study_probe_pkg").mkdir(parents=True)
    (plugin / "study_probe_pkg" / "__init__.py").write_text("")
    (plugin / "study_probe_pkg" / "tracker.py").write_text(TRACKER_PLUGIN)
    with on_path(plugin):  # a module path (with a dot) loads as a plugin: `-p pkg.module`
        registry = host.make_registry(LoadSettings(include=("study_probe_pkg.tracker",))).load()
        from study_probe_pkg import tracker as study_tracker_probe

        base = {**BASE, "trackers": [{"name": "study_probe", "tag": "x"}]}
        finished = run_study(study(tmp_path, seeds=[0, 1], base=base), registry=registry)
        events = list(study_tracker_probe.EVENTS)
    assert events[0] == ("before_study", "iris", 2)
    runs = [event[1:] for event in events[1:-1]]
    assert runs == [("lr=0.01", 0, "parent-x", {"method.lr": 0.01}),
                    ("lr=0.01", 1, "parent-x", {"method.lr": 0.01}),
                    ("lr=0.1", 0, "parent-x", {"method.lr": 0.1}),
                    ("lr=0.1", 1, "parent-x", {"method.lr": 0.1})]
    name, status, metric, table = events[-1]
    assert (name, status, metric) == ("after_study", "completed", "test/accuracy")
    assert table == finished.rows()
    saved = result_json(finished.folder / "lr=0.1" / "seed=1")["study"]
    assert saved["name"] == "iris" and saved["seed"] == 1 and saved["extra"] == {"parent": "parent-x"}
    assert [c["label"] for c in saved["configurations"]] == ["lr=0.01", "lr=0.1"]


# -------------------------------------------------------------------------------- CLI


def test_run_as_study_prints_progress_and_the_table(tmp_path: Path, capsys: Any,
                                                    monkeypatch: Any) -> None:
    monkeypatch.delenv("PARALAB_QUIET", raising=False)  # -q would silence the progress lines
    spec_file = tmp_path / "iris_mlp.toml"
    spec_file.write_text('dataset = "iris"\nmodel = { name = "mlp", hidden = [16] }\n'
                         'device = "cpu"\nsave_model = false\n')
    code = run_as_study(str(spec_file), seeds="0-1", grid=["method.lr=0.01,0.1"],
                        overrides=["protocol.epochs=2", 'output="elsewhere"'],
                        output=str(tmp_path / "out"))
    captured = capsys.readouterr()
    assert code == 0
    progress = captured.err.splitlines()
    assert [line.split()[0] for line in progress[:-1]] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert progress[0].startswith("[1/4] lr=0.01/seed=0 completed test/accuracy=")
    assert progress[-1].startswith("paralab: study iris_mlp: 4/4 runs completed")  # no more
    finished = paralab.Study.load(tmp_path / "out" / "iris_mlp")
    assert captured.out == (finished.folder / "table.md").read_text()
    assert "| lr=0.1 | 0.1 | 2 |" in captured.out
    assert result_json(finished.folder / "lr=0.1" / "seed=1")["spec"]["protocol"]["epochs"] == 2

    code = run_as_study(str(spec_file), seeds="0-1", grid=["method.lrr=0.01,0.1"],
                        output=str(tmp_path / "bad"))
    assert code == 2 and "did you mean 'lr'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    # --output given as an override (`paralab run --output X` is `--set output=X`)
    monkeypatch.setenv("PARALAB_QUIET", "1")
    code = run_as_study(str(spec_file), seeds="3", grid=[],
                        overrides=["protocol.epochs=1", f'output="{tmp_path / "via-set"}"'])
    assert code == 0 and capsys.readouterr().err.count("\n") == 1  # -q: only the summary
    assert paralab.Study.load(tmp_path / "via-set" / "iris_mlp").counts() == {"completed": 1}


def test_sweep_main_runs_a_study_file_and_resumes(tmp_path: Path, capsys: Any,
                                                  monkeypatch: Any) -> None:
    monkeypatch.delenv("PARALAB_QUIET", raising=False)
    (tmp_path / "base.toml").write_text('dataset = "iris"\nmodel = { name = "mlp", hidden = [8] }\n'
                                        'protocol = { name = "supervised", epochs = 2 }\n'
                                        'device = "cpu"\n')
    (tmp_path / "sweep.toml").write_text(
        '[study]\nspec = "base.toml"\nseeds = [0]\ngrid = { "method.momentum" = [0.0, 0.9] }\n')
    assert sweep_main(str(tmp_path / "sweep.toml"), output=str(tmp_path / "out"),
                      overrides=["method.lr=0.2"]) == 0
    first = capsys.readouterr()
    assert "| momentum=0.9 | 0.9 | 1 |" in first.out
    assert len([line for line in first.err.splitlines() if line.startswith("[")]) == 2
    run = result_json(tmp_path / "out" / "sweep" / "momentum=0.9" / "seed=0")
    assert run["spec"]["method"] == {"name": "sgd", "lr": 0.2, "momentum": 0.9}
    assert sweep_main(str(tmp_path / "sweep.toml"), output=str(tmp_path / "out"),
                      overrides=["method.lr=0.2"]) == 0
    second = capsys.readouterr()
    assert "2 run(s) completed before, kept; 0 to run" in second.err
    assert second.out == first.out
    (tmp_path / "typo.toml").write_text('[study]\nspec = "base.toml"\nseedz = [0]\n')
    assert sweep_main(str(tmp_path / "typo.toml")) == 2
    assert "study.seedz: unknown field (did you mean 'seeds'?)" in capsys.readouterr().err


def _read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open() as stream:
        return list(csv.DictReader(stream))
