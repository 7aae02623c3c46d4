"""``paralab.compare``: runs and studies side by side, with the studies' own numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import paralab
from paralab.comparison import compare, compare_main
from paralab.study import run_study
from paralab.study.spec import study_from_dict

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE = {
    "dataset": "iris",
    "model": {"name": "mlp", "hidden": [16]},
    "protocol": {"name": "supervised", "epochs": 3},
    "method": {"name": "sgd", "lr": 0.05},
    "device": "cpu",
    "save_model": False,
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare")
    run = paralab.run({**BASE, "name": "single", "output": str(root)})
    finished = run_study(study_from_dict({"study": {
        "name": "sweep", "seeds": [0, 1, 2], "grid": {"method.lr": [0.02, 0.2]},
        "output": str(root), "base": BASE}}))
    return {"run": Path(run.path), "study": finished.folder}


def test_the_table_holds_each_runs_value_and_each_configurations_interval(
        folders: dict[str, Path]) -> None:
    comparison = compare(folders["run"], folders["study"])
    rows = comparison.rows()
    assert [(r["source"], r["kind"], r["configuration"], r["n"]) for r in rows] == [
        ("single", "run", "", 1), ("sweep", "study", "lr=0.02", 3),
        ("sweep", "study", "lr=0.2", 3)]
    assert comparison.metrics == ["test/accuracy", "test/loss"]
    run = json.loads((folders["run"] / "result.json").read_text())
    assert rows[0]["test/accuracy.mean"] == run["metrics"]["test/accuracy"]
    assert math.isnan(rows[0]["test/accuracy.ci_low"])
    study = paralab.Study.load(folders["study"]).table()
    for row in rows[1:]:
        for column in ("test/accuracy.mean", "test/accuracy.std", "test/accuracy.ci_low",
                       "test/loss.ci_high"):
            assert row[column] == study.loc[row["configuration"], column]
    frame = comparison.table()
    assert list(frame["configuration"]) == ["", "lr=0.02", "lr=0.2"]
    markdown = comparison.to_markdown()
    best = study.loc["lr=0.2"]
    half = (best["test/accuracy.ci_high"] - best["test/accuracy.ci_low"]) / 2
    assert f"| sweep | lr=0.2 | 3 | {best['test/accuracy.mean']:.4f} ± {half:.4f}" in markdown
    assert f"| single | - | 1 | {run['metrics']['test/accuracy']:.4f} |" in markdown
    # The public name is the same function.
    assert paralab.compare(folders["run"], folders["study"]).rows() == rows
    only = compare(folders["study"] / "study.json", metrics=["test/loss"])
    assert only.metrics == ["test/loss"] and "test/accuracy.mean" not in only.rows()[0]


def test_the_plot_overlays_every_curve(folders: dict[str, Path], tmp_path: Path) -> None:
    from PIL import Image

    path = compare(folders["run"], folders["study"]).plot(tmp_path / "overlay.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (700, 400)


def test_compare_main_prints_writes_and_rejects(folders: dict[str, Path], tmp_path: Path,
                                                capsys: Any) -> None:
    assert compare_main([str(folders["run"]), str(folders["study"])], str(tmp_path / "out"),
                        None, True) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [s["kind"] for s in printed["sources"]] == ["run", "study"]
    assert printed["rows"][0]["test/accuracy.std"] is None  # one run: no spread, not NaN
    assert {f.name for f in (tmp_path / "out").iterdir()} == \
        {"comparison.md", "comparison.csv", "comparison.png"}
    assert (tmp_path / "out" / "comparison.md").read_text() == \
        compare(folders["run"], folders["study"]).to_markdown()
    assert compare_main([str(folders["study"])], str(tmp_path / "plots" / "one.png"), None,
                        False) == 0  # `paralab compare ... --plot FILE.png`
    assert (tmp_path / "plots" / "one.png").read_bytes()[:4] == b"\x89PNG"
    assert capsys.readouterr().out.startswith("| source | configuration | n | test/accuracy |")
    assert compare_main([str(tmp_path / "nothing")], None, None, False) == 2
    assert "no such run or study folder" in capsys.readouterr().err
    assert compare_main([str(folders["run"])], None, ["val/acc"], False) == 2
    assert "metrics: test/accuracy, test/loss" in capsys.readouterr().err
