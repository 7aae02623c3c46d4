"""Gradient attributions: paralab's batched integrated gradients, and Captum for the rest.

:func:`integrated_gradients` computes every step of every row as one batch and one backward
pass, with Captum's quadratures (``gausslegendre``, Captum's default, and ``riemann_*``) so the
two agree to float precision (tests/test_explain_gradients.py), plus the exact ``trapezoid``
rule whose weights sum to one. Saliency, DeepLift and GradientSHAP are Captum's own.
"""

from __future__ import annotations

import numpy as np
import torch

from paralab_explain.choices import QUADRATURES
from paralab_explain.errors import ExplainError
from paralab_explain.model_output import ClassOutput, not_differentiable


def quadrature(steps: int, method: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """Points ``alpha`` in [0, 1] and weights for integrating along the straight path.

    The ``riemann_*`` rules reproduce Captum's (its trapezoid weights sum to ``1 - 1/steps``);
    ``trapezoid`` is the textbook rule on ``steps`` evenly spaced points, weights summing to 1.
    """
    if steps < 2:
        raise ExplainError(f"steps: need at least 2 integration steps, got {steps}")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (1 + nodes), 0.5 * weights
    if method == "trapezoid":
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return np.linspace(0, 1, steps), weights
    weights = np.full(steps, 1.0 / steps)
    if method == "riemann_trapezoid":
        weights[[0, -1]] /= 2
        return np.linspace(0, 1, steps), weights
    if method == "riemann_left":
        return np.linspace(0, 1 - 1 / steps, steps), weights
    if method == "riemann_right":
        return np.linspace(1 / steps, 1, steps), weights
    if method == "riemann_middle":
        return np.linspace(1 / (2 * steps), 1 - 1 / (2 * steps), steps), weights
    raise ExplainError(f"integration: {method!r} unknown; valid: {', '.join(QUADRATURES)}")


def integrated_gradients(
    function: ClassOutput,
    x: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    *,
    steps: int = 50,
    integration: str = "gausslegendre",
    max_batch: int = 1 << 22,
) -> torch.Tensor:
    """Integrated gradients (Sundararajan et al. 2017) of ``function(x)[target]``, ``(rows, F)``.

    All ``steps`` points of a chunk of rows go through the model as one batch; ``max_batch``
    bounds the input values built at once (rows x steps x features).
    """
    alphas_np, weights_np = quadrature(steps, integration)
    alphas = torch.as_tensor(alphas_np, dtype=x.dtype, device=x.device)
    weights = torch.as_tensor(weights_np, dtype=x.dtype, device=x.device)
    n_features = x.shape[1]
    rows_per_chunk = max(1, max_batch // (steps * n_features))
    results = []
    for start in range(0, len(x), rows_per_chunk):
        rows = x[start : start + rows_per_chunk].detach()
        shift = rows - baseline  # (r, F)
        path = torch.addcmul(baseline, alphas.view(-1, 1, 1), shift.unsqueeze(0))  # (S, r, F)
        path = path.reshape(-1, n_features).requires_grad_(True)
        index = target[start : start + rows_per_chunk].repeat(steps)
        with torch.enable_grad():
            out = function(path).gather(1, index.unsqueeze(1))
            if not out.requires_grad:  # checked on the first chunk, before any attribution
                raise not_differentiable("integrated_gradients", function)
            (gradient,) = torch.autograd.grad(out.sum(), path)
        average = torch.einsum("s,srf->rf", weights, gradient.view(steps, len(rows), n_features))
        results.append(average * shift)
    return torch.cat(results)


def captum_attribution(
    method: str,
    function: ClassOutput,
    x: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    *,
    steps: int = 50,
    background: torch.Tensor | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Saliency, DeepLift, GradientSHAP or IntegratedGradients through Captum, ``(rows, F)``."""
    from captum import attr

    rows = x.detach().clone().requires_grad_(True)
    base = baseline.unsqueeze(0)
    if method == "saliency":
        values = attr.Saliency(function).attribute(rows, target=target, abs=True)
    elif method == "deeplift":
        values = attr.DeepLift(function).attribute(rows, baselines=base, target=target)
    elif method == "gradient_shap":
        distribution = background if background is not None and len(background) else base
        torch.manual_seed(seed)
        values = attr.GradientShap(function).attribute(
            rows, baselines=distribution, n_samples=steps, stdevs=0.0, target=target
        )
    elif method == "captum_integrated_gradients":
        values = attr.IntegratedGradients(function).attribute(
            rows, baselines=base, target=target, n_steps=steps
        )
    else:
        raise ExplainError(f"captum method {method!r} unknown")
    return values.detach()
