"""Helpers for the few-shot tests: an isolated registry with the plugin, small specs."""

from __future__ import annotations

from typing import Any

import paralab_fewshot
from paralab.testing.kit import TinyDataPlugin, isolated_registry


def fewshot_registry(*extra: tuple[str, object]) -> Any:
    """The host's plugin, paralab_fewshot and the tiny dataset, discovery blocked."""
    return isolated_registry(
        ("paralab_fewshot", paralab_fewshot), ("paralab_tiny", TinyDataPlugin()), *extra
    )


def digits_spec(method: str | dict[str, Any], **protocol: Any) -> dict[str, Any]:
    """3-way episodes on digits (4 meta-train, 3 meta-val, 3 meta-test classes), an MLP."""
    options = {
        "name": "episodic",
        "ways": 3,
        "shots": 1,
        "queries": 5,
        "meta_batch": 8,
        "meta_iterations": 20,
        "eval_every": 10,
        "val_episodes": 20,
        "eval_episodes": 100,
        "class_split": [0.4, 0.3, 0.3],
    }
    options.update(protocol)
    return {
        "name": "fewshot-test",
        "dataset": "digits",
        "device": "cpu",
        "output": None,
        "model": {"name": "mlp", "hidden": [64]},
        "protocol": options,
        "method": method,
    }
