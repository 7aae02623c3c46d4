"""docs/internals.md: every public name has an entry with a docstring, the generated part is
current, and every Python example in it runs."""

from __future__ import annotations

import re

import pytest

import paralab
from paralab.docs_reference import (
    INTERNALS_BEGIN,
    INTERNALS_END,
    public_names,
    render_internals_reference,
)
from tests.host_support import REPOSITORY

DOC = REPOSITORY / "docs" / "internals.md"


def test_generated_reference_is_current():
    text = DOC.read_text("utf-8")
    generated = INTERNALS_BEGIN + text.split(INTERNALS_BEGIN, 1)[1].split(INTERNALS_END, 1)[0]
    assert generated + INTERNALS_END + "\n" == render_internals_reference(), (
        "docs/internals.md is stale: run `python -m paralab.docs_reference internals`")


@pytest.mark.parametrize("name", public_names())
def test_every_public_name_has_an_entry_with_a_docstring(name):
    text = DOC.read_text("utf-8")
    entry = re.search(rf"^### `{re.escape(name)}` \((class|function|constant)\)\n(.*?)(?=^### |\Z)",
                      text, re.S | re.M)
    assert entry, f"docs/internals.md has no entry for paralab.{name}"
    assert "(no docstring)" not in entry.group(2), f"paralab.{name} has no docstring"


def test_public_names_are_what_paralab_exports():
    assert set(public_names()) == set(paralab.__all__)
    assert all(hasattr(paralab, name) for name in paralab.__all__)


def test_the_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), re.S)
    assert len(blocks) >= 4
    namespace: dict[str, object] = {}
    for number, block in enumerate(blocks):
        exec(compile(block, f"docs/internals.md block {number + 1}", "exec"), namespace)
