"""The scalar an attribution explains: one class output of a run's model, on flat inputs.

Every method here explains ``f(x)[target]`` for rows ``x`` flattened to ``(rows, features)``;
:class:`ClassOutput` reshapes them back to the model's input shape and applies the chosen output
(softmax probabilities or raw logits), so Captum, shap, lime and paralab's own code all see the
same function. :func:`require_differentiable` probes the model once before a gradient method
runs, so a model without gradients fails with a clear message instead of deep in autograd.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from paralab_explain.choices import OUTPUTS
from paralab_explain.errors import ExplainError


class ClassOutput(nn.Module):
    """``model`` on flat inputs, returning probabilities (softmax) or logits per class."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int], output: str = "probability"):
        super().__init__()
        if output not in OUTPUTS:
            raise ExplainError(f"output: {output!r} unknown; valid: {', '.join(OUTPUTS)}")
        self.model = model
        self.input_shape = tuple(int(size) for size in input_shape)
        self.output = output
        # A module (not a function) so that Captum's DeepLift recognizes the nonlinearity.
        self.softmax = nn.Softmax(dim=-1) if output == "probability" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x.reshape(x.shape[0], *self.input_shape))
        return self.softmax(logits)

    def split_first_linear(self) -> tuple[nn.Linear, Callable[[torch.Tensor], torch.Tensor]] | None:
        """``(first linear layer, the rest)`` when the model is ``[Flatten,] Linear, ...``.

        Every input is an affine function of the features up to that layer, which lets exact
        Shapley enumeration compute the layer once per player instead of once per coalition.
        ``None`` for any other model (the generic path is used).
        """
        if not isinstance(self.model, nn.Sequential):
            return None
        layers = list(self.model)
        while layers and isinstance(layers[0], nn.Flatten):
            layers.pop(0)
        if not layers or not isinstance(layers[0], nn.Linear):
            return None
        first, rest = layers[0], nn.Sequential(*layers[1:])
        if first.in_features != math.prod(self.input_shape):
            return None
        return first, lambda hidden: self.softmax(rest(hidden))

    @torch.no_grad()
    def target_values(
        self, x: torch.Tensor, target: torch.Tensor, batch_size: int = 65536
    ) -> torch.Tensor:
        """``f(x)[target]`` for each row, in batches; ``target`` is per row or broadcast."""
        values = []
        for start in range(0, len(x), batch_size):
            out = self(x[start : start + batch_size])
            index = target[start : start + batch_size] if target.numel() > 1 else target.expand(
                len(out))
            values.append(out.gather(1, index.reshape(-1, 1)).squeeze(1))
        return torch.cat(values) if values else torch.empty(0, device=x.device)


def not_differentiable(method: str, function: ClassOutput) -> ExplainError:
    return ExplainError(
        f"method {method!r} needs gradients, but the model {type(function.model).__name__} is "
        "not differentiable with respect to its inputs (its output has no gradient); use "
        "exact_shapley, kernel_shap or lime, which need only forward passes"
    )


def require_differentiable(function: ClassOutput, x: torch.Tensor, method: str) -> None:
    """Fail clearly when ``method`` needs gradients that the model does not provide."""
    if not torch.is_floating_point(x):
        raise ExplainError(
            f"method {method!r} needs floating-point inputs, got {x.dtype}; "
            "use exact_shapley, kernel_shap or lime"
        )
    probe = x[:2].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        try:
            out = function(probe)
        except RuntimeError as error:
            raise ExplainError(
                f"method {method!r}: the model failed on inputs that require gradients ({error}); "
                "use exact_shapley, kernel_shap or lime, which need only forward passes"
            ) from None
        if not out.requires_grad:
            raise not_differentiable(method, function)
        (gradient,) = torch.autograd.grad(out.sum(), probe, allow_unused=True)
    if gradient is None:
        raise ExplainError(
            f"method {method!r} needs gradients, but the model's output does not depend "
            "differentiably on its inputs; use exact_shapley, kernel_shap or lime"
        )


def resolve_targets(
    target: int | torch.Tensor | Sequence[int] | str | None, function: ClassOutput, x: torch.Tensor
) -> torch.Tensor:
    """Per-row class indices: an int, a sequence, or ``None``/``"predicted"`` (the argmax)."""
    if target is None or (isinstance(target, str) and target == "predicted"):
        with torch.no_grad():
            return function(x).argmax(dim=-1)
    if isinstance(target, str):
        raise ExplainError(f"target: {target!r} unknown; valid: 'predicted', 'true' or a class index")
    index = torch.as_tensor(target, dtype=torch.long, device=x.device)
    if index.dim() == 0:
        index = index.expand(len(x))
    if index.shape != (len(x),):
        raise ExplainError(f"target: expected one class per row ({len(x)}), got shape {tuple(index.shape)}")
    return index.clone()
