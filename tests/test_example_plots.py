"""Every bundled example, shortened, leaves the figures a person expects (issue 23.9).

Each example runs with its outer loop cut to a few phases (the plots' shape does not depend on
the length) and each figure is checked for what it must show: a curve over integer, named
phase ticks where the protocol has one, "no curve" where it evaluates once, experiences with
their classes, one fairness bar chart per evaluated split and the disparity panels.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import paralab
from paralab.plots import NO_CURVE, chosen_curves, curve_figure
from paralab.results import Result

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

SHORTER = {
    "supervised": {"epochs": 2},
    "continual": {"epochs": 1},
    "federated": {"rounds": 4, "eval_every": 2},
    "episodic": {"meta_iterations": 4, "eval_every": 2, "meta_batch": 2, "val_episodes": 8,
                 "eval_episodes": 16},
    "addition": {"epochs": 2},
    "hierarchical": {"epochs": 2},
}
"""The loop options each protocol's examples are cut to (a protocol absent here runs once);
those in :data:`IF_WRITTEN` only where the example sets them."""

IF_WRITTEN = {"eval_every", "meta_batch", "val_episodes", "eval_episodes"}

ONCE = {"audit", "estimator", "kernel"}
"""Protocols that evaluate once: their curve.png must say there is no curve."""

RUNS = sorted(path for path in EXAMPLES.glob("*.toml") if "study" not in tomllib.loads(
    path.read_text()))
"""Every example that is one run (``study_digits.toml`` is a study: tests/test_study_* check
its table and figures)."""


def _protocol(path: Path) -> tuple[str, dict]:
    protocol = tomllib.loads(path.read_text()).get("protocol", {})
    protocol = protocol if isinstance(protocol, dict) else {"name": protocol}
    return protocol.get("name", "supervised"), protocol


def _overrides(path: Path) -> list[str]:
    name, written = _protocol(path)
    changes = [f"protocol.{key}={value}" for key, value in SHORTER.get(name, {}).items()
               if key in written or key not in IF_WRITTEN]
    return changes + ["seed=0"]


def test_every_example_that_is_a_run_is_covered() -> None:
    names = {_protocol(path)[0] for path in RUNS}
    assert names <= set(SHORTER) | ONCE, "add the new protocol to SHORTER or ONCE"
    assert len(RUNS) >= 19


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.stem)
def test_example_figures(path: Path, tmp_path: Path, data_root: Path) -> None:
    protocol, _ = _protocol(path)
    result = paralab.run(path, overrides=[*_overrides(path), f"output={tmp_path}"])
    folder = Path(result.path)
    assert (folder / "curve.png").stat().st_size > 0
    saved = Result.load(folder)
    figure = curve_figure(saved)
    axes = figure.axes[0]
    ticks = [label.get_text() for label in axes.get_xticklabels()]
    names, why = chosen_curves(saved)
    if protocol in ONCE:
        assert axes.get_title().startswith(NO_CURVE) and not axes.get_lines()
    else:
        assert why in {"main", "other split"}, (why, names)
        assert ticks and all(t.strip() for t in ticks)
        assert all(tick == int(tick) for tick in axes.get_xticks())
        kind = {"supervised": "epoch", "federated": "round", "episodic": "meta-batch",
                "continual": "exp", "addition": "epoch", "hierarchical": "epoch"}[protocol]
        assert all(t.startswith(kind) for t in ticks), ticks
    if protocol == "continual":
        assert all("\n[" in t for t in ticks)  # each experience names its classes
    if protocol == "episodic":
        assert names == ["meta_val/accuracy"]
    summary = (folder / "summary.md").read_text()
    assert "## Settings" in summary and f"| protocol | (name) | `{protocol}` |" in summary
    auditors = [a["name"] for a in saved.spec["auditors"]]
    if "fairness" in auditors:
        splits = {point["split"] for point in _fairness_points(saved)}
        bars = sorted(name for key, name in saved.artifacts.items()
                      if key.startswith("fairness_bars"))
        assert len(bars) == len(splits), (bars, splits)  # one per split: none overwritten
        assert all((folder / name).stat().st_size > 0 for name in bars)
        assert (folder / "fairness_over_time.png").stat().st_size > 0


def _fairness_points(result: Result) -> list[dict]:
    """The fairness audits of every phase (one entry per evaluated split)."""
    points = []
    for phase in result.phases:
        for key, audit in phase["audits"].items():
            if key.startswith("fairness/"):
                points.append({"split": key.split("/", 1)[1], "audit": audit})
    return points
