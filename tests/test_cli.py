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
    assert "Iris is easy" in text and " 0.95 " in text and "reproduced" in text
    listed = paralab_cli("reproduce", "--papers-dir", str(papers))
    assert "fisher1936" in listed.stdout and "Iris is easy" in listed.stdout
    try:
        reproduce("fisher1963", papers_dir=str(papers))
    except PaperError as error:
        assert "did you mean 'fisher1936'" in str(error)
    else:
        raise AssertionError("an unknown paper must be an error")


QUICK_PAPER = """
[paper]
title = "A paper with a quick setting"
script = "reproduce.py"

[[claims]]
metric = "score"
paper = 0.99
check = "at_least"
tolerance = 0.01

[[quick]]
metric = "score"
expected = 0.5
check = "at_least"
tolerance = 0.05
"""

QUICK_SCRIPT = """
import os

def reproduce(quick):
    return {"score": float(os.environ["QUICK_SCORE"]) if quick else 0.995}
"""


def write_quick_paper(folder: Path) -> str:
    """``folder/papers/quickly``: a paper whose script's quick score comes from $QUICK_SCORE."""
    paper = folder / "papers" / "quickly"
    paper.mkdir(parents=True)
    (paper / "paper.toml").write_text(QUICK_PAPER, encoding="utf-8")
    (paper / "reproduce.py").write_text(QUICK_SCRIPT, encoding="utf-8")
    return str(folder / "papers")


def test_quick_mode_is_judged_against_its_own_expectations(tmp_path: Path, monkeypatch) -> None:
    papers = write_quick_paper(tmp_path)
    assert reproduce("quickly", papers_dir=papers).passed  # full: 0.995 >= 0.99 - 0.01
    monkeypatch.setenv("QUICK_SCORE", "0.47")  # far below the paper, as expected of quick
    quick = reproduce("quickly", papers_dir=papers, quick=True)
    assert quick.passed and quick.rows[0].paper == 0.5
    assert "quick setting as expected" in quick.render() and "0.99" not in quick.render()
    monkeypatch.setenv("QUICK_SCORE", "0.40")  # a regression of the quick setting itself
    regressed = reproduce("quickly", papers_dir=papers, quick=True)
    assert not regressed.passed and "NOT as expected" in regressed.render()


def test_recorded_runs_make_the_papers_table(tmp_path: Path, monkeypatch) -> None:
    from paralab.papers import TABLE_BEGIN, TABLE_END, record, table, update_readme

    papers = write_quick_paper(tmp_path)
    (tmp_path / "papers" / "README.md").write_text("# papers\n\nintro kept\n", encoding="utf-8")
    assert "| `quickly` | `score` (at_least ±0.01) | 0.99 | - | no record |" in table(papers)
    full = reproduce("quickly", papers_dir=papers)
    path = record(full, papers)
    assert json.loads(path.read_text())["rows"][0]["ours"] == 0.995
    monkeypatch.setenv("QUICK_SCORE", "0.40")
    record(reproduce("quickly", papers_dir=papers, quick=True), papers)
    readme = update_readme(papers).read_text()
    assert readme.startswith("# papers\n\nintro kept\n") and TABLE_BEGIN in readme
    row = next(line for line in readme.splitlines() if line.startswith("| `quickly`"))
    assert "| 0.99 | 0.995 | reproduced |" in row and "NOT as expected" in row
    assert update_readme(papers).read_text() == readme  # regenerating replaces, not appends
    assert readme.count(TABLE_END) == 1


def test_orderings_can_demand_a_margin_over_the_baseline(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "papers" / "margin"
    folder.mkdir(parents=True)
    (folder / "paper.toml").write_text(
        '[paper]\ntitle = "m"\nscript = "reproduce.py"\n'
        '[[orderings]]\nmetrics = ["method", "baseline"]\nmargin = 0.1\n', encoding="utf-8")
    (folder / "reproduce.py").write_text(
        "import os\ndef reproduce(quick):\n"
        "    return {'method': float(os.environ['METHOD']), 'baseline': 0.5}\n", encoding="utf-8")
    papers = str(tmp_path / "papers")
    monkeypatch.setenv("METHOD", "0.65")
    assert reproduce("margin", papers_dir=papers).passed
    monkeypatch.setenv("METHOD", "0.55")  # above the baseline, but not by the margin: a near no-op
    report = reproduce("margin", papers_dir=papers)
    assert not report.passed and "by at least 0.1" in report.render()
    # The generated table shows the missed ordering and the paper's verdict, not only the
    # claims (which all passed here: a paper must not look reproduced when it is not).
    from paralab.papers import record, table

    record(report, papers)
    rows = [line for line in table(papers).splitlines() if "margin" in line or "ordering" in line]
    assert "**NOT reproduced**" in rows[0]
    assert any("ordering `method >= baseline by 0.1`" in r and "**missed**" in r for r in rows)


def test_the_papers_readme_holds_the_table_of_the_recorded_runs() -> None:
    from paralab.papers import find_papers_dir, table

    readme = (find_papers_dir() / "README.md").read_text(encoding="utf-8")
    assert table() in readme, "run `python -m paralab.papers` to regenerate papers/README.md"
