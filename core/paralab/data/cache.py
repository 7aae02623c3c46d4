"""Load each dataset once per process, whoever asks for it."""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any

import torch

from paralab.data.shared import SharedDataset

_CACHE: dict[tuple[str, str, str], SharedDataset] = {}
_LOADING_WITH: ContextVar[Any] = ContextVar("paralab_loading_registry", default=None)
"""The registry of the load in progress, so a dataset built on another dataset (a derived
view) resolves it in the same registry, isolated or not."""


def _key(name: str, options: dict[str, Any], device: torch.device) -> tuple[str, str, str]:
    return name, json.dumps(options, sort_keys=True, default=str), str(device)


def load_dataset(
    name: str, *, device: str | torch.device = "cpu", registry: Any = None, **options: Any
) -> SharedDataset:
    """The dataset ``name`` built by its plugin's factory, cached per (name, options, device).

    Every plugin of a run, and every later run in the process, gets the same tensors.
    """
    device = torch.device(device)
    key = _key(name, options, device)
    if key not in _CACHE:
        cpu_key = _key(name, options, torch.device("cpu"))
        if cpu_key not in _CACHE:
            registry = registry or _LOADING_WITH.get()
            if registry is None:
                from paralab.host import get_registry

                registry = get_registry()
            spec = registry.component("dataset", name)
            token = _LOADING_WITH.set(registry)
            try:
                dataset = spec.load()(**options)
            finally:
                _LOADING_WITH.reset(token)
            if not isinstance(dataset, SharedDataset):
                raise TypeError(
                    f"dataset {name!r} of plugin {spec.provider}: factory returned "
                    f"{type(dataset).__name__}, expected paralab.data.SharedDataset"
                )
            _declare_sensitive(dataset, spec)
            _CACHE[cpu_key] = dataset
        _CACHE[key] = _CACHE[cpu_key].to(device)
    return _CACHE[key]


def _declare_sensitive(dataset: SharedDataset, spec: Any) -> None:
    """The sensitive features a ``DatasetSpec`` declares are the dataset's too (an auditor reads
    ``dataset.sensitive``); one the data lacks is the plugin's bug, named here."""
    declared = tuple(getattr(spec, "sensitive", ()) or ())
    missing = [name for name in declared if name not in dataset.features]
    if missing:
        raise TypeError(
            f"dataset {spec.name!r} of plugin {spec.provider}: its DatasetSpec declares "
            f"sensitive features {missing} that the loaded data does not have; features: "
            f"{sorted(dataset.features)}"
        )
    dataset.sensitive = tuple(dict.fromkeys((*dataset.sensitive, *declared)))


def clear_cache() -> None:
    """Forget every loaded dataset (tests use this to measure a cold load)."""
    _CACHE.clear()
