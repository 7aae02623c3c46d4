"""The command line: --version, list, reproduce."""

from __future__ import annotations

import json
from pathlib import Path

from paralab.papers import PaperError, reproduce
from tests.host_support import paralab_cli

PAPER = """
[paper]
title = "Iris is easy"
citation = "Fisher, 1936"
data = "scikit-learn's bundled copy"

[experiment]
dataset = "iris"
model = "mlp"
output = "{output}"
protocol = {{ name = "supervised", epochs = 30 }}

[[claims]]
metric = "test/accuracy"
paper = 0.95
tolerance = 0.1
check = "at_least"

[[claims]]
metric = "test/loss"
paper = 0.0
check = "report"
"""


def write_paper(folder: Path) -> Path:
    (folder / "papers" / "fisher1936").mkdir(parents=True)
    text = PAPER.format(output=folder / "runs")
    (folder / "papers" / "fisher1936" / "paper.toml").write_text(text, encoding="utf-8")
    return folder / "papers"


def test_version_lists_plugins() -> None:
    result = paralab_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("paralab 0.1.0 (hook API 1.0)")
    assert "paralab_fairness 0.1.0" in result.stdout


def test_list_kind_as_json() -> None:
    result = paralab_cli("list", "method", "--json")
    methods = {item["name"]: item for item in json.loads(result.stdout)["method"]}
    assert methods["sgd"]["provider"] == "paralab"
    assert methods["sgd"]["protocols"] == ["supervised"]
    assert methods["sgd"]["options"]["lr"] == 0.05


def test_reproduce_prints_ours_beside_the_paper(tmp_path: Path) -> None:
    papers = write_paper(tmp_path)
    report = reproduce("fisher1936", papers_dir=str(papers))
    assert report.passed
    assert report.rows[0].ours == report.ours["test/accuracy"] >= 0.85
    text = report.render()
    assert "Iris is easy" in text and "0.950" in text and "reproduced" in text
    listed = paralab_cli("reproduce", "--papers-dir", str(papers))
    assert "fisher1936" in listed.stdout and "Iris is easy" in listed.stdout
    try:
        reproduce("fisher1963", papers_dir=str(papers))
    except PaperError as error:
        assert "did you mean 'fisher1936'" in str(error)
    else:
        raise AssertionError("an unknown paper must be an error")
