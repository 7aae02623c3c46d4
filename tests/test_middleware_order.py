"""The middleware order rule, as docs/lifecycle.md states it with a worked example: the first
middleware listed is the outermost wrapper, so after ``update = yield`` it transforms last.
``[norm_clip, noise]`` adds the noise and then clips the noisy update; ``[noise, norm_clip]``
clips first and adds the noise to the clipped update."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import paralab
from paralab import host
from paralab_registry import LoadSettings

SEEN: list[tuple[str, float]] = []


class NormClip(paralab.Middleware):
    """Scale each client update to L2 norm at most ``bound``."""

    def __init__(self, bound: float = 0.01) -> None:
        self.bound = bound

    @paralab.hookimpl(wrapper=True)
    def paralab_process_update(self, run: Any, update: Any) -> Any:
        update = yield
        norm = float(torch.sqrt(sum((v.double() ** 2).sum() for v in update.delta.values())))
        scale = min(1.0, self.bound / max(norm, 1e-12))
        SEEN.append(("norm_clip", norm))
        return update.replace(delta={k: v * scale for k, v in update.delta.items()})


class Shift(paralab.Middleware):
    """Add ``amount`` to every coordinate (a stand-in for noise that is easy to see)."""

    def __init__(self, amount: float = 1.0) -> None:
        self.amount = amount

    @paralab.hookimpl(wrapper=True)
    def paralab_process_update(self, run: Any, update: Any) -> Any:
        update = yield
        norm = float(torch.sqrt(sum((v.double() ** 2).sum() for v in update.delta.values())))
        SEEN.append(("shift", norm))
        return update.replace(delta={k: v + self.amount for k, v in update.delta.items()})


class _Plugin:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_middleware(self) -> list[paralab.MiddlewareSpec]:
        return [paralab.MiddlewareSpec("norm_clip", NormClip, "clip", {"bound": 0.01}),
                paralab.MiddlewareSpec("shift", Shift, "shift", {"amount": 1.0})]


@pytest.fixture
def registry():
    registry = host.make_registry(LoadSettings()).load()
    registry.add("order_under_test", _Plugin())
    return registry


def run(registry: Any, middleware: list[str]) -> list[tuple[str, float]]:
    SEEN.clear()
    paralab.run({"dataset": "iris", "model": {"name": "mlp", "hidden": [4]}, "output": None,
                 "protocol": {"name": "federated", "clients": 3, "fraction": 1.0, "rounds": 1,
                              "backend": "loop"},
                 "method": {"name": "fedavg", "lr": 0.1}, "middleware": middleware},
                registry=registry)
    return list(SEEN)


def test_the_first_listed_middleware_transforms_last(registry) -> None:
    seen = run(registry, ["norm_clip", "shift"])
    # Per client update: shift acted first (it saw the raw update), then norm_clip saw the
    # shifted one, whose norm is at least that of a vector of ones (sqrt of the parameters).
    names = [name for name, _ in seen]
    assert names[:2] == ["shift", "norm_clip"] and len(names) == 6
    parameters = 4 * 4 + 4 + 4 * 3 + 3
    assert seen[1][1] > 0.9 * parameters ** 0.5  # norm_clip clipped the shifted update
    reverse = run(registry, ["shift", "norm_clip"])
    assert [name for name, _ in reverse][:2] == ["norm_clip", "shift"]
    assert reverse[0][1] < 5.0  # it clipped the raw update, before the shift
