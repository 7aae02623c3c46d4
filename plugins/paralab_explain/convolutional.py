"""Attributions for convolutional models: SmoothGrad, occlusion, Grad-CAM, layer integrated
gradients, each batched, each equal to Captum's implementation (tests/test_explain_convolutional.py).

* :func:`smoothgrad` — the mean attribution over noisy copies of each row (Smilkov et al.
  2017); the copies are drawn exactly as Captum's ``NoiseTunnel`` draws them (rows repeated
  ``samples`` times, one ``torch.normal`` call on the global generator), so with the same seed
  the values equal ``NoiseTunnel(Saliency)`` / ``NoiseTunnel(IntegratedGradients)``. All noisy
  copies go through the model as one batch and one backward pass.
* :func:`occlusion` — the drop of the output when a sliding window is set to the baseline,
  averaged over the windows covering each feature (Zeiler and Fergus 2014); every window of
  every row is one batched forward pass.
* :func:`grad_cam` — the layer's activations weighted by their spatially averaged gradients,
  summed over channels (Selvaraju et al. 2017), upsampled to the input (nearest), as Captum's
  ``LayerGradCam`` + ``LayerAttribution.interpolate``.
* :func:`layer_integrated_gradients` — integrated gradients in a layer's activation space,
  from the baseline's activations to the row's (Captum's ``LayerIntegratedGradients``); the
  layer attributions sum to ``f(x) - f(baseline)``; spread evenly over the input pixels each
  layer position covers, so the per-feature values keep that sum.

The layer is named as in ``model.named_modules()`` (``"3"`` for the fourth module of an
``nn.Sequential``); by default the last ``nn.Conv2d``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from paralab_explain.errors import ExplainError
from paralab_explain.gradients import integrated_gradients, quadrature
from paralab_explain.model_output import ClassOutput, not_differentiable


def find_layer(model: nn.Module, layer: str | None) -> nn.Module:
    """The module named ``layer`` (``None``: the last ``nn.Conv2d``); a clear error otherwise."""
    modules = dict(model.named_modules())
    if layer is None:
        convolutions = [module for module in modules.values() if isinstance(module, nn.Conv2d)]
        if not convolutions:
            raise ExplainError(
                f"layer: the model {type(model).__name__} has no nn.Conv2d layer; name a layer "
                f"(one of {[name for name in modules if name][:12]}) or use an input-space "
                "method (integrated_gradients, smoothgrad, occlusion)")
        return convolutions[-1]
    if layer not in modules or not layer:
        raise ExplainError(f"layer: {layer!r} is not a module of {type(model).__name__}; "
                           f"valid: {[name for name in modules if name][:20]}")
    return modules[layer]


def _saliency(function: ClassOutput, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    rows = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = function(rows).gather(1, target.unsqueeze(1))
        if not out.requires_grad:
            raise not_differentiable("smoothgrad", function)
        (gradient,) = torch.autograd.grad(out.sum(), rows)
    return gradient.abs()


def smoothgrad(
    function: ClassOutput,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    base: str = "saliency",
    stdev: float = 0.1,
    samples: int = 16,
    seed: int = 0,
    baseline: torch.Tensor | None = None,
    steps: int = 50,
    integration: str = "gausslegendre",
) -> torch.Tensor:
    """SmoothGrad ``(rows, F)`` of saliency (|gradient|) or of integrated gradients."""
    if samples < 1 or not stdev > 0:
        raise ExplainError(f"smoothgrad: needs samples >= 1 and stdev > 0, got {samples}, {stdev}")
    spread = torch.full((len(x) * samples, x.shape[1]), float(stdev), device=x.device)
    # Captum's draw (one torch.normal on the global generator after seeding), inside a fork so
    # the run's own random stream (its training) is left exactly where it was
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        noise = torch.normal(0, spread)
    noisy = x.detach().repeat_interleave(samples, dim=0) + noise
    targets = target.repeat_interleave(samples)
    if base == "saliency":
        values = _saliency(function, noisy, targets)
    elif base == "integrated_gradients":
        assert baseline is not None
        values = integrated_gradients(function, noisy, baseline, targets, steps=steps,
                                      integration=integration)
    else:
        raise ExplainError(f"smoothgrad: base {base!r} unknown; valid: saliency, "
                           "integrated_gradients")
    return values.view(len(x), samples, -1).mean(dim=1)


def _windows(shape: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """0/1 masks ``(W, *shape)`` of every window position, as Captum's Occlusion slides them:
    ``ceil((size - width) / stride) + 1`` starts per axis, the last one cut off at the edge."""
    starts = [range(0, step * (-(-(size - width) // step) + 1), step)
              for size, width, step in zip(shape, window, stride)]
    masks = []
    for corner in torch.cartesian_prod(*[torch.tensor(list(s)) for s in starts]).reshape(
            -1, len(shape)).tolist():
        mask = torch.zeros(tuple(shape))
        mask[tuple(slice(c, c + w) for c, w in zip(corner, window))] = 1.0
        masks.append(mask)
    return torch.stack(masks)


def occlusion_shape(input_shape: Sequence[int], window: int, stride: int
                    ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The shape windows slide over (images: ``(C, H, W)``, all channels at once), the window
    and the stride; a clear error when the window does not fit."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        sizes, strides = (shape[0], window, window), (1, stride, stride)
    elif len(shape) == 2:
        sizes, strides = (window, window), (stride, stride)
    else:
        sizes, strides = (window,) * len(shape), (stride,) * len(shape)
    if any(w > s for w, s in zip(sizes, shape)):
        raise ExplainError(f"window: {window} does not fit inputs of shape {shape}")
    return shape, sizes, strides


def occlusion(
    function: ClassOutput,
    x: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    *,
    window: int = 2,
    stride: int = 1,
    image_shape: Sequence[int] | None = None,
    max_batch: int = 1 << 22,
) -> torch.Tensor:
    """Occlusion ``(rows, F)``: per feature, the mean over the windows covering it of
    ``f(x) - f(x with the window at the baseline)``; windows slide over ``image_shape`` (None:
    the model's input shape)."""
    shape, sizes, strides = occlusion_shape(image_shape or function.input_shape, window, stride)
    masks = _windows(shape, sizes, strides).reshape(-1, x.shape[1]).to(x)  # (W, F)
    coverage = masks.sum(dim=0).clamp(min=1)
    per_chunk = max(1, max_batch // (len(masks) * x.shape[1]))
    results = []
    with torch.inference_mode():
        for start in range(0, len(x), per_chunk):
            rows = x[start : start + per_chunk]
            index = target[start : start + per_chunk]
            full = function(rows).gather(1, index.unsqueeze(1))  # (r, 1)
            occluded = rows.unsqueeze(1) + masks.unsqueeze(0) * (baseline - rows).unsqueeze(1)
            out = function(occluded.reshape(-1, x.shape[1]))
            drop = full - out.gather(1, index.repeat_interleave(len(masks)).unsqueeze(1)
                                     ).view(len(rows), -1)  # (r, W)
            results.append(drop @ masks / coverage)
    return torch.cat(results)


def _capture(layer: nn.Module, replace: torch.Tensor | None = None
             ) -> tuple[list[torch.Tensor], Callable[[], None]]:
    """A forward hook on ``layer`` storing its output (or replacing it with ``replace``)."""
    seen: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
        if replace is not None:
            seen.append(replace)
            return replace
        seen.append(output)
        return output

    handle = layer.register_forward_hook(hook)
    return seen, handle.remove


def grad_cam(
    function: ClassOutput,
    x: torch.Tensor,
    target: torch.Tensor,
    layer: nn.Module,
    *,
    relu: bool = False,
    image_shape: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM: the layer map ``(rows, 1, h, w)`` and its nearest upsampling to every input
    feature ``(rows, F)`` (each channel of a pixel gets the pixel's value)."""
    seen, remove = _capture(layer)
    try:
        with torch.enable_grad():
            out = function(x.detach()).gather(1, target.unsqueeze(1))
            activation = seen[0]
            if not activation.requires_grad:
                raise not_differentiable("gradcam", function)
            (gradient,) = torch.autograd.grad(out.sum(), activation)
    finally:
        remove()
    weights = gradient.mean(dim=tuple(range(2, gradient.dim())), keepdim=True)
    cam = (weights * activation.detach()).sum(dim=1, keepdim=True)
    if relu:
        cam = cam.clamp(min=0)
    return cam, _to_pixels(cam, image_shape or function.input_shape, spread=False)


def _to_pixels(layer_map: torch.Tensor, input_shape: Sequence[int], *, spread: bool
               ) -> torch.Tensor:
    """A layer map ``(rows, 1, h, w)`` on the input's pixels ``(rows, F)`` (nearest): copied
    (Grad-CAM, as Captum's ``interpolate``) or divided among the pixels and channels it covers
    (``spread``: the per-feature values keep the map's sum)."""
    shape = tuple(input_shape)
    image = shape if len(shape) == 3 else (1, *shape[-2:]) if len(shape) == 2 else None
    if image is None or layer_map.dim() != 4:
        raise ExplainError(f"layer attributions need image inputs (C, H, W) and a 2-D layer; "
                           f"inputs have shape {shape}, the layer map {tuple(layer_map.shape)}")
    channels, height, width = image
    up = nn.functional.interpolate(layer_map, size=(height, width), mode="nearest")
    if spread:
        index = nn.functional.interpolate(
            torch.arange(layer_map[0, 0].numel(), dtype=torch.float32, device=layer_map.device
                         ).view(1, 1, *layer_map.shape[2:]), size=(height, width), mode="nearest")
        counts = torch.bincount(index.flatten().long(), minlength=layer_map[0, 0].numel())
        up = up / counts[index.long()].to(up.dtype) / channels
    return up.expand(len(layer_map), channels, height, width).reshape(len(layer_map), -1)


def layer_integrated_gradients(
    function: ClassOutput,
    x: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    layer: nn.Module,
    *,
    steps: int = 50,
    integration: str = "gausslegendre",
    image_shape: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer integrated gradients: the layer attributions ``(rows, *layer output)`` and,
    summed over channels, spread over the input features ``(rows, F)``."""
    alphas_np, weights_np = quadrature(steps, integration)
    with torch.no_grad():
        seen, remove = _capture(layer)
        try:
            function(x)
            function(baseline.expand_as(x).contiguous())
        finally:
            remove()
    at_x, at_base = seen[0].detach(), seen[1].detach()
    alphas = torch.as_tensor(alphas_np, dtype=x.dtype, device=x.device)
    weights = torch.as_tensor(weights_np, dtype=x.dtype, device=x.device)
    shift = at_x - at_base
    view = (-1,) + (1,) * at_x.dim()
    path = (at_base.unsqueeze(0) + alphas.view(view) * shift.unsqueeze(0))
    path = path.reshape(-1, *at_x.shape[1:]).requires_grad_(True)
    seen, remove = _capture(layer, replace=path)
    try:
        with torch.enable_grad():
            inputs = x.detach().repeat(steps, 1)
            out = function(inputs).gather(1, target.repeat(steps).unsqueeze(1))
            if not out.requires_grad:
                raise not_differentiable("layer_integrated_gradients", function)
            (gradient,) = torch.autograd.grad(out.sum(), path)
    finally:
        remove()
    average = torch.einsum("s,s...->...", weights, gradient.view(steps, *at_x.shape))
    values = average * shift
    if values.dim() != 4:
        raise ExplainError(f"layer_integrated_gradients: the layer's output has shape "
                           f"{tuple(values.shape)}; name a convolutional layer (C, h, w)")
    return values, _to_pixels(values.sum(dim=1, keepdim=True), image_shape or function.input_shape,
                              spread=True)
