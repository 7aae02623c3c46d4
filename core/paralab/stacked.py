"""K copies of one network as one batched network: the seed axis of :func:`paralab.run_seeds`.

Why not ``torch.func.vmap(functional_call(...))``: measured on this project's 2-core CPU, vmap
of the digits MLP costs 1.7-2.3x the batched-weights form below per step (its per-operation
dispatch is what small models pay for), and the batched form is what makes K seeds cheaper than
K runs. So each supported layer has a stacked form written out:

* ``Linear``: weights stored ``(K, in, out)``, one ``baddbmm`` over inputs
  ``(K, batch, in)``;
* ``Conv2d``: the K seeds' filters as groups of one grouped convolution over images laid out
  ``(batch, K * channels, height, width)``; pooling and batch norm act per channel, so they
  act per seed unchanged (batch norm with per-seed statistics and running buffers);
* elementwise activations, ``Flatten``, :class:`paralab.AsImage`: the same function, the
  layout converted where needed;
* any module with a method ``stacked_layer(k, tensors, path)``: the extension point for a
  plugin's own layers. ``k`` is the number of seeds, ``tensors`` the stacked parameters and
  buffers by their dotted name in the seed's model (the layer's own are
  ``f"{path}.{name}"``, ``(K, *shape)`` each, parameters the leaves the optimizer updates),
  ``path`` the layer's dotted name. It returns ``apply(x, layout) -> (x, layout)``, the
  layer's step on the stacked activations: ``layout`` is :data:`ROWS` (``(K, batch,
  *features)``) or :data:`CHANNELS` (``(batch, K * channels, height, width)``, seed-major
  channels); seed ``k``'s slice of the result must be what the module computes on seed
  ``k``'s slice. It may raise :class:`Unstackable` (then the seeds run one after another,
  with its reason). The method is consulted before the built-in forms, so a module that has
  it is stacked by it; no torch module has one, so built-in layers are unchanged. (The
  stacked model's train/eval flag is not passed: a layer whose forward depends on it should
  raise :class:`Unstackable`.)

A model made of anything else (a custom module, dropout that draws from the global random
number generator, an LSTM) is :class:`Unstackable`, with the reason; its seeds run one after
another.

:meth:`StackedModel.bind` makes each seed's own ``nn.Module`` read its parameters and buffers
as views of the stacked tensors, so the runs' evaluation, metrics, auditors and hooks see each
seed's current weights without a copy; :meth:`StackedModel.unbind` gives every seed its own
tensors back (before its model is saved).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paralab.models import AsImage


class Unstackable(ValueError):
    """This model (or configuration) has no stacked form; ``str()`` says why."""


ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.Tanh, nn.GELU, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU,
    nn.SiLU, nn.Mish, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Identity,
    nn.Tanhshrink, nn.Softsign,
)
"""Stateless modules that act on each value alone: the same call on any layout."""

PER_CHANNEL: tuple[type[nn.Module], ...] = (
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
)
"""Stateless image modules that act on each channel alone: per seed in the grouped layout."""

ROWS = "rows"
"""Layout ``(K, batch, *features)``."""
CHANNELS = "channels"
"""Layout ``(batch, K * channels, height, width)``."""
STACKED_ROWS, STACKED_CHANNELS = ROWS, CHANNELS
"""The layouts as ``paralab`` exports them, for plugins' ``stacked_layer`` steps."""


@dataclass
class _Layer:
    """One step of the stacked forward: ``apply(x, layout) -> (x, layout)``."""

    kind: str
    module: nn.Module
    apply: Callable[[torch.Tensor, str], tuple[torch.Tensor, str]]


def _leaves(module: nn.Module, path: str = "") -> Iterator[tuple[str, nn.Module]]:
    """The modules a ``Sequential`` tree applies, in order, with their dotted names."""
    if type(module) is nn.Sequential:
        for name, child in module.named_children():
            yield from _leaves(child, f"{path}.{name}" if path else name)
        return
    yield path, module


def _signature(model: nn.Module) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    return [(name, tuple(t.shape), t.dtype)
            for name, t in [*model.named_parameters(), *model.named_buffers()]]


class StackedModel:
    """``K`` models of one architecture trained as one: ``stacked(x)`` maps inputs ``(K,
    batch, *input)`` to logits ``(K, batch, classes)``; seed ``k``'s slice is what
    ``models[k](x[k])`` computes (to float rounding: the batched kernels may sum in another
    order; the tests measure it).

    :attr:`parameters` are the stacked leaves, ``(K, *shape)`` each, in the order of
    ``models[0].parameters()`` (trainable ones only), for any elementwise torch optimizer
    (SGD, Adam): an elementwise update of a stacked tensor is each seed's update.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models:
            raise Unstackable("no models to stack")
        self.models = list(models)
        self.k = len(models)
        first = self.models[0]
        reference = _signature(first)
        for position, other in enumerate(self.models[1:], 1):
            if type(other) is not type(first) or _signature(other) != reference:
                raise Unstackable(f"seed {position}'s model differs in structure from seed 0's")
        devices = {t.device for m in self.models for t in [*m.parameters(), *m.buffers()]}
        if len(devices) > 1:
            raise Unstackable(
                f"the models' tensors are on several devices: {sorted(map(str, devices))}")
        self.transposed = {f"{path}.weight" if path else "weight"
                           for path, module in _leaves(first) if type(module) is nn.Linear}
        """Linear weights, stored ``(K, in, out)``: measured 1.7x faster a training step
        than ``(K, out, in)`` read transposed (the backward pass then needs no transposed
        copies); each seed's module sees its slice transposed back, ``(out, in)``."""
        self.tensors: dict[str, torch.Tensor] = {}
        """Every parameter and buffer, stacked, by its name in the seed's module."""
        with torch.no_grad():
            for name, parameter in first.named_parameters():
                stacked = torch.stack([self._stored(name, dict(m.named_parameters())[name].detach())
                                       for m in self.models]).contiguous()
                self.tensors[name] = stacked.requires_grad_(parameter.requires_grad)
            for name, _ in first.named_buffers():
                self.tensors[name] = torch.stack(
                    [dict(m.named_buffers())[name].detach() for m in self.models]).contiguous()
        self.parameters: list[torch.Tensor] = [
            self.tensors[name] for name, p in first.named_parameters() if p.requires_grad
        ]
        self.parameter_names = [name for name, p in first.named_parameters() if p.requires_grad]
        self.layers = [self._layer(path, module) for path, module in _leaves(first)]
        self.training = True
        self._bound = False

    # ---------------------------------------------------------------------------- layers

    def _layer(self, path: str, module: nn.Module) -> _Layer:
        kind = type(module).__name__
        k = self.k
        own = getattr(module, "stacked_layer", None)
        if callable(own):  # the extension point (module docstring)
            return _Layer(kind, module, own(k, self.tensors, path))
        if isinstance(module, ELEMENTWISE) and not list(module.parameters()):
            return _Layer(kind, module, lambda x, layout: (module(x), layout))
        if isinstance(module, nn.Dropout):
            if module.p == 0:
                return _Layer(kind, module, lambda x, layout: (x, layout))
            raise Unstackable(
                f"layer {path or 'model'!r} is Dropout(p={module.p}): a single run draws its "
                "masks from the global random number generator, which K stacked seeds cannot "
                "replay draw for draw"
            )
        if isinstance(module, nn.Flatten):
            if module.start_dim != 1 or module.end_dim != -1:
                raise Unstackable(f"{path}: Flatten({module.start_dim}, {module.end_dim}) "
                                  "(only Flatten(1, -1) has a stacked form)")
            return _Layer(kind, module, _flatten(k))
        if isinstance(module, AsImage):
            return _Layer(kind, module, _as_image(k, tuple(module.shape)))
        if type(module) is nn.Linear:
            weight = self.tensors[f"{path}.weight"]
            bias = self.tensors.get(f"{path}.bias")
            return _Layer(kind, module, _linear(k, weight, bias))
        if type(module) is nn.Conv2d:
            if module.padding_mode != "zeros" or isinstance(module.padding, str):
                raise Unstackable(f"{path}: Conv2d with padding {module.padding!r} / "
                                  f"{module.padding_mode!r} (only numeric zero padding stacks)")
            weight = self.tensors[f"{path}.weight"]
            bias = self.tensors.get(f"{path}.bias")
            return _Layer(kind, module, _conv2d(k, module, weight, bias))
        if isinstance(module, PER_CHANNEL):
            def per_channel(x: torch.Tensor, layout: str, module: nn.Module = module
                            ) -> tuple[torch.Tensor, str]:
                if layout != CHANNELS:
                    raise Unstackable(f"{path}: {kind} on non-image inputs")
                return module(x), layout
            return _Layer(kind, module, per_channel)
        if type(module) in (nn.BatchNorm1d, nn.BatchNorm2d):
            if not module.track_running_stats:
                raise Unstackable(f"{path}: batch norm without running statistics")
            return _Layer(kind, module, _batch_norm(self, path, module))
        raise Unstackable(
            f"layer {path or 'model'!r} is a {type(module).__module__}.{kind}, which has no "
            f"stacked form (stacked: Sequential of Linear, Conv2d, batch norm, pooling, "
            f"Flatten, AsImage, elementwise activations and modules with a stacked_layer "
            f"method)"
        )

    # --------------------------------------------------------------------------- forward

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, batch, classes)`` of inputs ``(K, batch, *input shape)``."""
        if x.shape[0] != self.k:
            raise ValueError(f"stacked inputs must have {self.k} seeds first, got {tuple(x.shape)}")
        layout = ROWS
        for layer in self.layers:
            x, layout = layer.apply(x, layout)
        if layout == CHANNELS:  # an image-shaped output: back to (K, batch, ...)
            batch, channels = x.shape[0], x.shape[1] // self.k
            x = x.reshape(batch, self.k, channels, *x.shape[2:]).transpose(0, 1)
        return x

    def train(self, mode: bool = True) -> StackedModel:
        """Training mode (batch norm's batch statistics) or not. The seeds' own modules are
        left alone: the stacked layers only call stateless ones of them."""
        self.training = mode
        return self

    def eval(self) -> StackedModel:
        return self.train(False)

    # ---------------------------------------------------------------------------- seeds

    def bind(self) -> None:
        """Each seed's module reads its parameters and buffers as views of the stacked ones:
        whatever updates the stacked tensors in place is what every seed's module holds."""
        for k, model in enumerate(self.models):
            for name, parameter in model.named_parameters():
                parameter.data = self.seed_view(name, self.tensors[name].data[k])
            for module_name, module in model.named_modules():
                for buffer_name, buffer in list(module._buffers.items()):
                    if buffer is None:
                        continue
                    full = f"{module_name}.{buffer_name}" if module_name else buffer_name
                    module._buffers[buffer_name] = self.tensors[full].data[k]
        self._bound = True

    def unbind(self) -> None:
        """Give each seed's module tensors of its own (copies of its slices)."""
        if not self._bound:
            return
        for model in self.models:
            for parameter in model.parameters():
                parameter.data = parameter.data.clone(memory_format=torch.contiguous_format)
            for module in model.modules():
                for name, buffer in list(module._buffers.items()):
                    if buffer is not None:
                        module._buffers[name] = buffer.clone()
        self._bound = False

    def _stored(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """One seed's tensor in the stacked layout."""
        return value.t() if name in self.transposed else value

    def seed_view(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """One seed's slice of a stacked tensor, in its module's layout (a view)."""
        return value.t() if name in self.transposed else value

    def stack(self, per_seed: Sequence[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
        """``per_seed[k][i]`` (one tensor per trainable parameter, in the seed module's
        layout) as one stacked tensor per parameter, in the layout of :attr:`parameters`
        (EWC's importances, SI's anchors)."""
        return [torch.stack([self._stored(name, values[i]) for values in per_seed])
                for i, name in enumerate(self.parameter_names)]

    def unstack(self, stacked: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
        """The inverse of :meth:`stack`: per seed, one view per trainable parameter, in the
        seed module's layout (a stacked Fisher handed to each seed's strategy)."""
        return [[self.seed_view(name, tensor[k]) for name, tensor in
                 zip(self.parameter_names, stacked)] for k in range(self.k)]

    # --------------------------------------------------------------------------- memory

    def parameter_bytes(self) -> int:
        """Bytes of one seed's parameters and buffers."""
        return sum(t[0].numel() * t.element_size() for t in self.tensors.values())


def _flatten(k: int) -> Callable[[torch.Tensor, str], tuple[torch.Tensor, str]]:
    def apply(x: torch.Tensor, layout: str) -> tuple[torch.Tensor, str]:
        if layout == ROWS:
            return x.reshape(k, x.shape[1], -1), ROWS
        batch = x.shape[0]
        return x.reshape(batch, k, -1).transpose(0, 1), ROWS
    return apply


def _as_image(k: int, shape: tuple[int, ...]
              ) -> Callable[[torch.Tensor, str], tuple[torch.Tensor, str]]:
    def apply(x: torch.Tensor, layout: str) -> tuple[torch.Tensor, str]:
        if layout != ROWS:
            raise Unstackable("AsImage after an image layer")
        batch = x.shape[1]
        x = x.reshape(k, batch, *shape)
        if len(shape) != 3:
            return x, ROWS
        channels, height, width = shape
        return x.transpose(0, 1).reshape(batch, k * channels, height, width), CHANNELS
    return apply


def _linear(k: int, weight: torch.Tensor, bias: torch.Tensor | None
            ) -> Callable[[torch.Tensor, str], tuple[torch.Tensor, str]]:
    def apply(x: torch.Tensor, layout: str) -> tuple[torch.Tensor, str]:
        if layout != ROWS:
            raise Unstackable("Linear on image-shaped activations (flatten them first)")
        shape = x.shape
        flat = x.reshape(k, -1, shape[-1])
        if bias is None:
            out = torch.bmm(flat, weight)
        else:
            out = torch.baddbmm(bias.unsqueeze(1), flat, weight)
        return out.reshape(*shape[:-1], weight.shape[2]), ROWS
    return apply


def _conv2d(k: int, module: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None
            ) -> Callable[[torch.Tensor, str], tuple[torch.Tensor, str]]:
    def apply(x: torch.Tensor, layout: str) -> tuple[torch.Tensor, str]:
        if layout != CHANNELS:
            raise Unstackable("Conv2d on inputs that are not images (use AsImage)")
        w = weight.reshape(k * weight.shape[1], *weight.shape[2:])
        b = None if bias is None else bias.reshape(-1)
        out = F.conv2d(x, w, b, module.stride, module.padding, module.dilation,
                       module.groups * k)
        return out, CHANNELS
    return apply


def _batch_norm(stacked: StackedModel, path: str, module: nn.modules.batchnorm._BatchNorm
                ) -> Callable[[torch.Tensor, str], tuple[torch.Tensor, str]]:
    k = stacked.k
    tensors = stacked.tensors
    weight = tensors.get(f"{path}.weight")
    bias = tensors.get(f"{path}.bias")
    mean, var = tensors[f"{path}.running_mean"], tensors[f"{path}.running_var"]
    batches = tensors.get(f"{path}.num_batches_tracked")

    def apply(x: torch.Tensor, layout: str) -> tuple[torch.Tensor, str]:
        training = stacked.training
        factor = 0.0 if module.momentum is None else module.momentum
        if training and batches is not None:
            with torch.no_grad():
                batches.add_(1)
            if module.momentum is None:  # a cumulative average, as nn.BatchNorm does
                factor = 1.0 / float(batches[0])
        w = None if weight is None else weight.reshape(-1)
        b = None if bias is None else bias.reshape(-1)
        if layout == CHANNELS:
            out = F.batch_norm(x, mean.view(-1), var.view(-1), w, b, training, factor,
                               module.eps)
            return out, CHANNELS
        # rows (K, batch, features): features of every seed as channels of one batch
        batch = x.shape[1]
        flat = x.transpose(0, 1).reshape(batch, -1, *x.shape[3:])
        out = F.batch_norm(flat, mean.view(-1), var.view(-1), w, b, training, factor,
                           module.eps)
        return out.reshape(batch, k, *x.shape[2:]).transpose(0, 1), ROWS
    return apply


def why_not_stacked(model: Any) -> str:
    """Why ``model`` has no stacked form (``""`` when it has), without building one."""
    if not isinstance(model, nn.Module):
        return f"the model is a {type(model).__name__}, not a torch module"
    try:
        StackedModel([model])
    except Unstackable as error:
        return str(error)
    return ""


def activation_elements(model: nn.Module, example: torch.Tensor) -> int:
    """Elements of every layer's output for one batch ``example`` of one seed: what the
    forward pass keeps for the backward pass, for the memory estimate."""
    total = 0

    def count(module: nn.Module, inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    handles = [m.register_forward_hook(count) for _, m in _leaves(model)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total
