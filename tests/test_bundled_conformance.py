"""Every bundled plugin passes the same conformance suite that plugin authors run."""

from __future__ import annotations

import pytest

from paralab import host
from paralab.testing import check_plugin
from tests.test_registry import BUNDLED


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_plugin_conforms(name: str) -> None:
    report = check_plugin(name, registry=host.make_registry().load())
    assert report.passed, report.render()
    checks = {check.name: check.status for check in report.checks}
    assert checks["imports nothing heavy at import time"] == "pass"
    assert sum(status == "pass" for status in checks.values()) >= 3


def test_the_host_plugin_conforms() -> None:
    report = check_plugin("paralab", registry=host.make_registry().load())
    assert report.passed, report.render()
