"""What a wheel ships and what a type checker sees: py.typed in every package, the lazy public
names visible to mypy, the license and classifiers, the reproductions as package data."""

from __future__ import annotations

import ast
import tomllib

import paralab
from tests.host_support import REPOSITORY

PYPROJECT = tomllib.loads((REPOSITORY / "pyproject.toml").read_text("utf-8"))


def test_every_shipped_package_is_typed():
    packages = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert len(packages) == 10
    missing = [package for package in packages if not (REPOSITORY / package / "py.typed").is_file()]
    assert not missing, f"no py.typed in {missing}"


def test_type_checkers_see_every_lazy_name():
    """``paralab.__getattr__`` loads names on first use, which mypy cannot follow: the
    ``if TYPE_CHECKING:`` block must import each of them from the module ``_LAZY`` names."""
    tree = ast.parse((REPOSITORY / "core" / "paralab" / "__init__.py").read_text("utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and getattr(node.test, "id", "") == "TYPE_CHECKING")
    imported = {alias.name: statement.module for statement in block.body
                for alias in statement.names}
    assert imported == paralab._LAZY


def test_license_and_classifiers():
    project = PYPROJECT["project"]
    assert (REPOSITORY / "LICENSE").read_text("utf-8").startswith("MIT License")
    assert project["requires-python"] == ">=3.11"
    assert "Programming Language :: Python :: 3.11" in project["classifiers"]
    assert "License :: OSI Approved :: MIT License" in project["classifiers"]


def test_papers_and_examples_are_package_data():
    force = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert force == {"papers": "paralab/_papers", "examples": "paralab/_examples"}
    from paralab import papers

    assert papers.PACKAGED_PAPERS.parent == REPOSITORY / "core" / "paralab"
    assert papers.PACKAGED_PAPERS.name == "_papers"
