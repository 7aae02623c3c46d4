"""The hook contract is fully documented, and docs/hooks.md is generated from it."""

from __future__ import annotations

import re

import pytest

from paralab import hookspecs
from paralab.docs_reference import GROUPS, render_hook_reference
from tests.host_support import REPOSITORY

HOOKS = hookspecs.describe_hooks()


def test_every_hook_has_the_prefix_and_a_group() -> None:
    grouped = {f"paralab_{suffix}" for suffixes in GROUPS.values() for suffix in suffixes}
    assert set(HOOKS) == grouped
    assert all(name.startswith("paralab_") for name in HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_docstring_is_complete(name: str) -> None:
    doc = HOOKS[name]["doc"]
    assert doc.startswith("Called") or doc.startswith("Return") or doc.startswith("Transform")
    for parameter in HOOKS[name]["parameters"]:
        assert re.search(rf":param {parameter}:", doc), f"{name}: parameter {parameter!r} undocumented"
    documented = set(re.findall(r":param (\w+):", doc))
    assert documented <= set(HOOKS[name]["parameters"]), f"{name} documents parameters it lacks"
    assert "Example::" in doc and "@hookimpl" in doc
    if HOOKS[name]["firstresult"]:
        assert "first result wins" in doc
    else:
        assert "Every implementation is called" in doc
    if not name.endswith(("experiment", "phase", "evaluation", "error")):
        assert ":return:" in doc


def test_docs_hook_reference_is_generated_from_the_specs() -> None:
    on_disk = (REPOSITORY / "docs" / "hooks.md").read_text(encoding="utf-8")
    assert on_disk == render_hook_reference(), (
        "docs/hooks.md is stale: run `python -m paralab.docs_reference > docs/hooks.md`"
    )


def test_components_reference_is_generated_from_the_declarations() -> None:
    from paralab.docs_reference import render_components
    from paralab.host import make_registry
    from paralab_registry import LoadSettings

    expected = render_components(make_registry(LoadSettings()).load())
    on_disk = (REPOSITORY / "docs" / "components.md").read_text(encoding="utf-8")
    assert on_disk == expected, (
        "docs/components.md is stale: run "
        "`python -m paralab.docs_reference components > docs/components.md`"
    )


def test_every_interface_member_is_documented() -> None:
    from paralab import interfaces

    for name, cls in interfaces.INTERFACES.items():
        assert cls.__doc__, name
        for member in cls.__abstractmethods__:
            assert getattr(cls, member).__doc__, f"{name}.{member} has no docstring"
