"""How faithful an attribution is to the model it explains, per method.

* :func:`completeness_gap` — attributions should sum to ``f(x) - f(baseline)`` (the
  completeness axiom of Sundararajan et al. 2017; Shapley values' efficiency). Reported as the
  mean absolute gap relative to the mean ``|f(x) - f(baseline)|``.
* :func:`deletion_insertion` — remove the most important players first (towards the baseline)
  and watch ``f`` fall; insert them first into the baseline and watch it rise (Petsiuk et al.
  2018). Areas under both curves: deletion lower is better, insertion higher is better. All
  rows x steps of one curve are one batched forward pass.
* :func:`infidelity` and :func:`sensitivity` — Captum's ``infidelity`` and ``sensitivity_max``
  (Yeh et al. 2019), on per-feature attributions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from paralab_explain.model_output import ClassOutput
from paralab_explain.players import Players


def completeness_gap(
    function: ClassOutput,
    x: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    values: torch.Tensor,
    references: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> dict[str, float]:
    """Mean ``|sum(attr) - (f(x) - f(b))|``, absolute and relative to mean ``|f(x) - f(b)|``.

    With ``references`` (rows a method averaged over, like GradientSHAP's or a Shapley
    estimator's background), ``f(b)`` is their mean output (weighted by ``weights`` when given)
    for each row's target.
    """
    with torch.no_grad():
        at_x = function.target_values(x, target)
        if references is None:
            at_base = function.target_values(baseline.expand_as(x), target)
        else:
            outputs = function(references)  # (K, C)
            if weights is None:
                at_base = outputs.mean(dim=0)[target]
            else:
                at_base = (weights.to(outputs.dtype) @ outputs)[target]
    difference = (at_x - at_base).double()
    gap = (values.double().sum(dim=1) - difference).abs()
    scale = float(difference.abs().mean())
    return {
        "completeness_gap": float(gap.mean()),
        "completeness_relative_gap": float(gap.mean()) / scale if scale > 0 else float("nan"),
    }


def _trapezoid_area(curve: torch.Tensor) -> torch.Tensor:
    """Area under curves sampled at evenly spaced fractions 0..1, ``(rows, points) -> (rows,)``."""
    points = curve.shape[1]
    return (curve[:, 1:] + curve[:, :-1]).sum(dim=1) / (2 * (points - 1))


def deletion_insertion(
    function: ClassOutput,
    x: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    values: torch.Tensor,
    players: Players,
    *,
    max_points: int = 33,
) -> dict[str, float | list[float]]:
    """Deletion and insertion curves (mean over rows) and their areas.

    Players are ranked per row by attribution, largest first; the curve has ``min(M, max_points
    - 1)`` steps, each removing (or adding) the next slice of the ranking.
    """
    rows, n_players = values.shape
    steps = min(n_players, max_points - 1)
    order = values.argsort(dim=1, descending=True)  # (R, M)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n_players, device=order.device).expand_as(order))
    # cut[k] = how many top players are taken at step k (0 .. M)
    cut = torch.linspace(0, n_players, steps + 1, device=values.device).round().long()
    taken = (rank.unsqueeze(1) < cut.view(1, -1, 1)).to(x.dtype)  # (R, K, M)
    mask = players.feature_mask(taken.reshape(-1, n_players)).to(x.dtype).view(rows, steps + 1, -1)
    shift = (x - baseline).unsqueeze(1)
    index = target.repeat_interleave(steps + 1)
    with torch.no_grad():
        deleted = function.target_values((x.unsqueeze(1) - mask * shift).reshape(-1, x.shape[1]),
                                         index).view(rows, -1)
        inserted = function.target_values(torch.addcmul(baseline, mask, shift).reshape(
            -1, x.shape[1]), index).view(rows, -1)
    return {
        "deletion_auc": float(_trapezoid_area(deleted).mean()),
        "insertion_auc": float(_trapezoid_area(inserted).mean()),
        "deletion_curve": [round(float(v), 6) for v in deleted.mean(dim=0)],
        "insertion_curve": [round(float(v), 6) for v in inserted.mean(dim=0)],
    }


def _noise(scale: float) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn_like(inputs) * scale
        return noise, inputs - noise

    return perturb


def infidelity(
    function: ClassOutput,
    x: torch.Tensor,
    target: torch.Tensor,
    features: torch.Tensor,
    *,
    scale: float = 0.1,
    samples: int = 16,
    seed: int = 0,
) -> float:
    """Captum's infidelity with Gaussian perturbations of standard deviation ``scale``."""
    from captum.metrics import infidelity as captum_infidelity

    torch.manual_seed(seed)
    values = captum_infidelity(
        function, _noise(scale), x, features, target=target, n_perturb_samples=samples,
        normalize=True,
    )
    return float(values.mean())


def sensitivity(
    explanation: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    radius: float = 0.02,
    samples: int = 8,
    seed: int = 0,
) -> float:
    """Captum's ``sensitivity_max``: the largest change of the explanation under small noise."""
    from captum.metrics import sensitivity_max

    torch.manual_seed(seed)

    def explain(inputs: torch.Tensor | tuple[torch.Tensor, ...], target: torch.Tensor
                ) -> tuple[torch.Tensor, ...]:
        # Captum hands the (perturbed, expanded) inputs over as a one-element tuple and
        # expects the explanation in the same form.
        rows = inputs[0] if isinstance(inputs, tuple) else inputs
        return (explanation(rows, target),)

    values = sensitivity_max(
        explain, x, perturb_radius=radius, n_perturb_samples=samples, target=target
    )
    return float(values.mean())
