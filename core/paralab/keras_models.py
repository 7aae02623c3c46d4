"""Keras 3 models in paralab: the ``keras`` model, built by the user's function on Keras's
torch backend.

PyTorch is paralab's engine. Keras 3 runs on it: with ``KERAS_BACKEND=torch`` a Keras layer
*is* a ``torch.nn.Module`` whose weights are torch parameters, so every protocol, method,
middleware and auditor works on a Keras model unchanged (federated averaging, DP clipping,
attributions...). This adapter only

* makes sure Keras is on the torch backend (it must be chosen before Keras is first imported:
  a Keras already imported on another backend is an error that says so),
* calls the user's builder ``module:function`` with the run's :class:`paralab.DatasetInfo`
  (and the ``options`` table), and checks that it returned a Keras model whose outputs have
  one column per class,
* passes ``training=`` to Keras from torch's ``train()`` / ``eval()`` state, which Keras's
  dropout and batch-norm layers read from the call rather than from the module.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import Any

import torch
from torch import nn

from paralab.data import DatasetInfo

BACKEND = "torch"


def _keras() -> Any:
    """Import Keras on the torch backend (or say why it cannot be)."""
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != BACKEND:
            raise ValueError(
                f"Keras is already imported with the {keras.backend.backend()!r} backend; paralab "
                f"trains Keras models on Keras's torch backend: set KERAS_BACKEND={BACKEND} "
                "before anything imports Keras"
            )
        return keras
    os.environ.setdefault("KERAS_BACKEND", BACKEND)
    if os.environ["KERAS_BACKEND"] != BACKEND:
        raise ValueError(
            f"KERAS_BACKEND is {os.environ['KERAS_BACKEND']!r}; paralab trains Keras models on "
            f"Keras's torch backend: set KERAS_BACKEND={BACKEND} (or leave it unset)"
        )
    import keras

    return keras


def _builder(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"builder {path!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"builder {path!r}: cannot import {module_name!r} ({error})") from error
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"builder {path!r}: module {module_name!r} has no {attribute!r}") from None


class KerasModel(nn.Module):
    """A Keras model as the torch module paralab trains: the Keras model is a submodule (its
    weights are this module's parameters), called with Keras's ``training`` flag.

    ``torch.func.functional_call`` (federated vmap clients, per-example DP gradients, MAML's
    inner loop, stacked seeds) substitutes a module's parameters for one call; Keras layers do
    not read those, they read their variables. So when the tensors registered for the Keras
    variables are not the variables' own (a functional call is in progress), the call runs in
    a ``keras.StatelessScope`` that maps every variable to the tensor torch passed: otherwise
    such a call would silently compute with the old weights and train nothing
    (tests/test_keras.py checks functional calls, vmap and federated averaging)."""

    def __init__(self, model: Any, rebuild: Any = None) -> None:
        super().__init__()
        self.keras_model = model
        self._rebuild = rebuild
        """A function returning a fresh Keras model of the same architecture (the builder
        with its arguments): what ``copy.deepcopy`` uses."""
        # Every Keras variable again as a parameter of this module, under a name that does
        # not change: Keras's own names come from variable paths, which a deepcopy (the
        # federated clients' scratch models) renames. named_parameters() lists these first.
        self._slots: list[tuple[Any, str]] = []
        for position, variable in enumerate(model.variables):
            if not isinstance(variable.value, nn.Parameter):  # pragma: no cover - not torch
                continue
            # Position and the variable's own name ("kernel", "bias"): the layer part of a
            # Keras path is made unique per process ("dense_3"), so a rebuilt copy differs.
            name = f"w{position}_" + "".join(c if c.isalnum() else "_" for c in variable.name)
            self.register_parameter(name, variable.value)
            self._slots.append((variable, name))

    def __deepcopy__(self, memo: dict[int, Any]) -> KerasModel:
        """A copy with its own weights. ``copy.deepcopy`` of a Keras model rebuilds its graph
        with new variables that the copied module does not own (measured: a scratch copy's
        training never reached its outputs), so the copy is built again by the builder and
        given this model's values."""
        if self._rebuild is None:
            raise TypeError("this KerasModel has no builder to copy itself with")
        twin = KerasModel(self._rebuild(), self._rebuild)
        ours, theirs = dict(self.named_parameters()), dict(twin.named_parameters())
        if list(ours) != list(theirs) or any(
                ours[name].shape != theirs[name].shape for name in ours):
            raise TypeError("the builder did not rebuild the same architecture")
        with torch.no_grad():
            for name, tensor in ours.items():
                theirs[name].copy_(tensor)
        twin.train(self.training)
        memo[id(self)] = twin
        return twin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        current = [(variable, self._parameters[name]) for variable, name in self._slots]
        if all(tensor is variable.value for variable, tensor in current):
            return self.keras_model(x, training=self.training)
        keras = _keras()
        with keras.StatelessScope(state_mapping=current):
            return self.keras_model(x, training=self.training)


def keras_model(info: DatasetInfo, builder: str = "", options: dict[str, Any] = {}  # noqa: B006
                ) -> nn.Module:
    """The ``keras`` model: ``builder(info, **options)`` returns a ``keras.Model``.

    >>> # my_models.py
    >>> # def small(info, width=32):
    >>> #     import keras
    >>> #     return keras.Sequential([keras.Input((info.n_features,)),
    >>> #                              keras.layers.Dense(width, activation="relu"),
    >>> #                              keras.layers.Dense(info.n_classes)])
    >>> # spec: model = { name = "keras", builder = "my_models:small", options = { width = 64 } }
    """
    keras = _keras()
    function = _builder(builder)
    arguments = dict(options)  # never mutated: the default {} is safe
    model = function(info, **arguments)
    if not isinstance(model, keras.Model):
        raise ValueError(f"builder {builder!r} returned {type(model).__name__}, not a keras.Model")
    if not isinstance(model, nn.Module):  # pragma: no cover - a non-torch backend slipped in
        raise ValueError("the Keras model is not a torch module: Keras is not on its torch backend")
    wrapped = KerasModel(model, functools.partial(function, info, **arguments))
    with torch.no_grad():
        wrapped.eval()
        outputs = wrapped(torch.zeros((1, *info.input_shape)))
    if outputs.ndim != 2 or outputs.shape[1] != info.n_classes:
        raise ValueError(
            f"builder {builder!r}: the model's outputs have shape {tuple(outputs.shape)} for one "
            f"example; paralab needs (1, {info.n_classes}): one logit per class of the dataset"
        )
    wrapped.train()
    return wrapped


def example_mlp(info: DatasetInfo, width: int = 32) -> Any:
    """A small Keras MLP: the conformance kit's example builder, and a template for yours."""
    keras = _keras()
    return keras.Sequential([
        keras.Input((info.n_features,)),
        keras.layers.Flatten(),
        keras.layers.Dense(width, activation="relu"),
        keras.layers.Dense(info.n_classes),
    ])
