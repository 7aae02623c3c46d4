"""The two paper reproductions in quick mode (embedded digits, seconds): the scripts run, the
claims are read, and the quick numbers are what this setting reaches."""

from __future__ import annotations

import pytest

from paralab.papers import reproduce

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


def test_deepproblog_single_digit_quick() -> None:
    report = reproduce("manhaeve2018_deepproblog", quick=True)
    rows = {row.metric: row for row in report.rows}
    assert rows["N1/sum_accuracy"].paper == pytest.approx(0.972)
    assert rows["N1/sum_accuracy"].ours >= 0.8
    assert rows["N1/digit_accuracy"].ours >= 0.85
    assert "MNIST test split only" in report.data_note


def test_multi_digit_quick_runs_two_digit_numbers() -> None:
    report = reproduce("mnist_addition_n4", quick=True)
    papers = sorted(row.paper for row in report.rows if row.metric == "N4/sum_accuracy")
    assert papers == [0.923, 0.926, 0.927]
    assert report.ours["N2/sum_accuracy"] >= 0.5
    assert report.ours["N2/digit_accuracy"] >= 0.8
    assert not report.passed  # quick mode has no N = 4 numbers: the check says so
