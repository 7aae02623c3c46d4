"""papers/havlicek2019_quantum_kernel reproduces in quick mode (about 7 s of CPU)."""

from __future__ import annotations

import pytest

from paralab.papers import reproduce

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


def test_havlicek_quantum_kernel_reproduces_quick():
    report = reproduce("havlicek2019_quantum_kernel", quick=True)
    assert report.passed, report.render()
    assert report.ours["ad_hoc/qsvc_test_accuracy"] == 1.0
    assert report.ours["ad_hoc/rbf_svc_test_accuracy"] <= 0.8  # clearly worse, as in the paper
    assert report.ours["iris/vqc_test_accuracy"] >= 0.9
