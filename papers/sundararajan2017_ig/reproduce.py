"""Sundararajan, Taly and Yan 2017, Axiomatic Attribution for Deep Networks: completeness.

Integrated gradients satisfy completeness: the attributions add up to F(x) - F(baseline). The
integral is approximated by a sum over ``steps`` points; the paper reports that "somewhere
between 20 and 300 steps are enough to approximate the integral (within 5%)" (Section 5), with
a Riemann sum. We measure the gap on two networks trained here: a ReLU MLP on the 8x8 digits
(an image classifier, black-image baseline as in the paper) and a tanh MLP on breast cancer
(all-zeros baseline, the mean of the standardized features), explaining the predicted class's
softmax probability, with the paper's Riemann sum and with Gauss-Legendre (Captum's default).
"""

from __future__ import annotations

import torch
from torch import nn

STEPS = (5, 20, 50, 300)


def _trained(name: str, activation: str, epochs: int, hidden: list[int]):
    from paralab_explain.training import train_mlp

    return train_mlp(name, hidden, epochs=epochs, activation=activation)


def completeness_error(model: nn.Module, x: torch.Tensor, steps: int, integration: str) -> float:
    """mean |sum(attributions) - (F(x) - F(0))| / mean |F(x) - F(0)| over the rows."""
    from paralab_explain.explainers import explain
    from paralab_explain.model_output import ClassOutput

    attribution = explain(model, x, method="integrated_gradients", baseline="zeros",
                          steps=steps, integration=integration)
    function = ClassOutput(model, tuple(x.shape[1:]))
    difference = function.target_values(x, attribution.target) - function.target_values(
        torch.zeros_like(x), attribution.target)
    gap = (attribution.values.double().sum(dim=1) - difference.double()).abs().mean()
    return float(gap / difference.double().abs().mean())


def reproduce(quick: bool = False) -> dict[str, float]:
    torch.set_num_threads(2)
    rows = 20 if quick else 200
    epochs, hidden = (40, [32]) if quick else (300, [128, 64])
    ours: dict[str, float] = {}
    for name, activation in (("digits", "relu"), ("breast_cancer", "tanh")):
        model, data = _trained(name, activation, epochs, hidden)
        x = data.x[data.splits["test"][:rows]]
        with torch.no_grad():
            accuracy = (model(data.x[data.splits["test"]]).argmax(1) == data.y[data.splits["test"]])
        ours[f"{name}/test_accuracy"] = float(accuracy.float().mean())
        for steps in STEPS:
            ours[f"{name}/riemann_{steps}_steps"] = completeness_error(
                model, x, steps, "riemann_right")
            ours[f"{name}/gausslegendre_{steps}_steps"] = completeness_error(
                model, x, steps, "gausslegendre")
    return ours
