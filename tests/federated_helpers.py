"""Shared helpers of the federated tests: small specs on the embedded digits data."""

from __future__ import annotations

from typing import Any

import torch

import paralab


def spec(method: Any = "fedavg", middleware: Any = (), dataset: str = "digits",
         overrides: dict[str, Any] | None = None, **protocol: Any) -> dict[str, Any]:
    """A small federated spec; ``overrides`` replaces top-level fields (model, seed ...)."""
    name = method if isinstance(method, str) else method.get("name")
    # FedSGD takes one full-batch step: a batch_size would do nothing (a spec error).
    batch = {} if name == "fedsgd" else {"batch_size": 16}
    options = {"clients": 20, "fraction": 0.25, "rounds": 3, **batch,
               "client_eval": False, **protocol}
    return {
        "name": "federated-test",
        "dataset": dataset,
        "model": {"name": "mlp", "hidden": [32]},
        "protocol": {"name": "federated", **options},
        "method": method,
        "middleware": list(middleware),
        "output": None,
        "device": "cpu",
        "seed": 0,
        **(overrides or {}),
    }


def run(method: Any = "fedavg", middleware: Any = (), **protocol: Any) -> paralab.Result:
    return paralab.run(spec(method, middleware, **protocol))


def final_parameters(**kwargs: Any) -> dict[str, torch.Tensor]:
    """Run and return the global model's parameters (the run's model, after the last round)."""
    return parameters_after(lambda: run(**kwargs))


def parameters_after(start: Any) -> dict[str, torch.Tensor]:
    """Call ``start()`` (a run) and return its model's parameters at the end of the run."""
    captured: dict[str, torch.Tensor] = {}

    class Capture:
        @paralab.hookimpl
        def paralab_after_experiment(self, run: Any, result: Any) -> None:
            captured.update({n: p.detach().clone() for n, p in run.model.named_parameters()})

    registry = paralab.get_registry()
    name = f"capture-{id(Capture)}"
    registry.pm.register(Capture(), name=name)
    try:
        start()
    finally:
        registry.pm.unregister(name=name)
    return captured


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[n] - b[n]).abs().max()) for n in a)
