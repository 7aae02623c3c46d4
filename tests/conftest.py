"""Shared fixtures. Real data files come from $PARALAB_DATA; tests that need them skip,
saying why, when it is unset (CI sets it to ../shared/data)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder of real data files ($PARALAB_DATA); skips the test when unavailable."""
    value = os.environ.get("PARALAB_DATA")
    if not value:
        pytest.skip("PARALAB_DATA is not set: point it at the real data folder (../shared/data)")
    root = Path(value)
    if not root.is_dir():
        pytest.skip(f"PARALAB_DATA={value} is not a folder")
    return root


@pytest.fixture(autouse=True, scope="session")
def _few_threads() -> None:
    """Two threads, the size of the CI machine; PARALAB_TEST_THREADS overrides it (use 1 on a
    machine shared with other jobs, where two threads mostly measure contention)."""
    import torch

    torch.set_num_threads(int(os.environ.get("PARALAB_TEST_THREADS", "2")))


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module of small models, restored after it: on a shared 2-core
    machine a second thread mostly waits (tiny matmuls ran 10x slower with two under load).
    A module asks for it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
