"""Lundberg and Lee 2017, A Unified Approach to Interpreting Model Predictions (SHAP).

Two claims, on a tanh MLP trained on breast cancer with its 30 features grouped into the 10
measurements (radius, texture, ...: mean, error and worst of each), the training mean as the
single background row, explaining the predicted class's probability:

* Kernel SHAP (their Theorem 2, ``shap.KernelExplainer``) recovers the Shapley values: its error
  against the exact values (paralab's enumeration of all 2^10 coalitions) falls as its samples
  grow, and vanishes when the samples cover every coalition.
* Kernel SHAP is more sample-efficient than Shapley sampling (Strumbelj and Kononenko 2014) at
  the same number of model evaluations (their Figure 3). Shapley sampling here: random
  permutations, each costing M + 1 evaluations, as one batched pass.
"""

from __future__ import annotations

import torch

SAMPLES = (24, 64, 256, 512)


def _trained(epochs: int):
    from paralab_explain.training import train_mlp

    return train_mlp("breast_cancer", [64], epochs=epochs)


def measurement_groups(feature_names: tuple[str, ...]) -> dict[str, list[str]]:
    """'mean radius', 'radius error', 'worst radius' -> the group 'radius'."""
    groups: dict[str, list[str]] = {}
    for name in feature_names:
        measure = name.replace("mean ", "").replace("worst ", "").replace(" error", "")
        groups.setdefault(measure, []).append(name)
    return groups


def shapley_sampling(function, x, baseline, target, players, evaluations: int, seed: int = 0):
    """Permutation-sampling estimates with ``evaluations // (M + 1)`` permutations per row."""
    count = players.count
    permutations = max(1, evaluations // (count + 1))
    generator = torch.Generator().manual_seed(seed)
    estimates = []
    for row, label in zip(x, target):
        order = torch.stack([torch.randperm(count, generator=generator)
                             for _ in range(permutations)])  # (P, M)
        rank = order.argsort(dim=1)  # position of each player in the permutation
        steps = torch.arange(count + 1).view(1, -1, 1)
        present = (rank.unsqueeze(1) < steps).float()  # (P, M + 1, M) nested coalitions
        mask = players.feature_mask(present.reshape(-1, count))
        inputs = baseline + mask * (row - baseline)
        values = function.target_values(inputs, label.expand(len(inputs))).view(
            permutations, count + 1)
        gains = values[:, 1:] - values[:, :-1]  # gain of the player added at each step
        contribution = torch.zeros(permutations, count)
        contribution.scatter_(1, order, gains)
        estimates.append(contribution.mean(dim=0))
    return torch.stack(estimates)


def reproduce(quick: bool = False) -> dict[str, float]:
    from paralab_explain.explainers import explain
    from paralab_explain.model_output import ClassOutput

    torch.set_num_threads(2)
    model, data = _trained(epochs=60 if quick else 300)
    rows = 6 if quick else 40
    x = data.x[data.splits["test"][:rows]]
    options = dict(groups=measurement_groups(data.feature_names), baseline="mean",
                   reference=data.x[data.splits["train"]], feature_names=data.feature_names)
    exact = explain(model, x, method="exact_shapley", **options)
    scale = float(exact.values.abs().mean())
    function = ClassOutput(model, (x.shape[1],))
    ours: dict[str, float] = {"players": float(exact.players.count)}
    for samples in SAMPLES:
        kernel = explain(model, x, method="kernel_shap", samples=samples, **options).values
        ours[f"kernel_shap/error_{samples}"] = float((kernel - exact.values).abs().mean()) / scale
        sampled = shapley_sampling(function, x, exact.baseline, exact.target, exact.players,
                                   samples)
        ours[f"shapley_sampling/error_{samples}"] = float(
            (sampled - exact.values).abs().mean()) / scale
    ours["kernel_shap/max_abs_error_all_coalitions"] = float(
        (explain(model, x, method="kernel_shap", samples=2 ** exact.players.count, **options)
         .values - exact.values).abs().max())
    return ours
