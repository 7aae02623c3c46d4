"""pytest fixtures for plugin authors (registered through the ``pytest11`` entry point).

Imports nothing heavy at collection time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def paralab_registry() -> Iterator[Any]:
    """An isolated registry (no discovery; the host plugin and the tiny dataset), installed as
    the process registry for the test."""
    from paralab.testing.kit import TinyDataPlugin, isolated_registry, use_registry

    registry = isolated_registry(("paralab_tiny", TinyDataPlugin()))
    with use_registry(registry):
        yield registry


@pytest.fixture
def paralab_tiny() -> Any:
    """The tiny dataset of :func:`paralab.testing.tiny_dataset`."""
    from paralab.testing.kit import tiny_dataset

    return tiny_dataset()
