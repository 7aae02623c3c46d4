"""docs/quantum.md: the python examples below its ``<!-- tested -->`` marker run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("qiskit")
pytest.importorskip("qiskit_qasm3_import")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOC = Path(__file__).resolve().parents[1] / "docs" / "quantum.md"


def _blocks() -> list[str]:
    text = DOC.read_text()
    marker = text.index("<!-- tested:")
    return re.findall(r"```python\n(.*?)```", text[marker:], flags=re.S)


def test_the_documented_examples_run(capsys):
    blocks = _blocks()
    assert blocks, "docs/quantum.md has no tested python block"
    import importlib.util

    has_runtime = importlib.util.find_spec("qiskit_ibm_runtime") is not None
    for number, block in enumerate(blocks):
        if "paralab_quantum.hardware" in block and not has_runtime:
            continue  # the fake backends need qiskit-ibm-runtime (an optional peer)
        exec(compile(block, f"docs/quantum.md tested block {number + 1}", "exec"), {})
    printed = capsys.readouterr().out
    assert "torch.Size([8, 2])" in printed  # two observables: two outputs per row
    assert "torch.Size([4, 4, 4])" in printed  # the density matrices
