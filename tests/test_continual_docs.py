"""docs/continual.md: every Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "continual.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


def test_the_doc_has_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_python_example_runs(number, capsys):
    exec(compile(BLOCKS[number], f"docs/continual.md block {number + 1}", "exec"), {})
