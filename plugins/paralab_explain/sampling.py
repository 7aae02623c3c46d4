"""Sampled explanations through their reference libraries: KernelSHAP (``shap``) and LIME (``lime``).

Both explain the same scalar as every other method, ``f(x)[target]`` of :class:`ClassOutput`.
KernelSHAP works in the players' presence space: a coalition ``z`` in {0, 1}^M becomes the input
``baseline + mask(z) * (x - baseline)``, the background is the empty coalition and the explained
point the full one. That is exactly the game :func:`paralab_explain.shapley.exact_shapley`
enumerates, so with enough samples the two agree (Lundberg and Lee 2017, Theorem 2). With a
:class:`~paralab_explain.background.Background` of several rows, a coalition's value is the
weighted mean of that input built against each background row: the game KernelExplainer itself
plays with that background data.
"""

from __future__ import annotations

import numpy as np
import torch

from paralab_explain.background import Background, single
from paralab_explain.model_output import ClassOutput
from paralab_explain.players import Players


def _presence_game(
    function: ClassOutput, row: torch.Tensor, background: Background, target: int,
    players: Players
):
    """``z (n, M) numpy -> E_b f(masked inputs)[target] (n,) numpy`` for one row."""
    membership = players.to(row.device)
    rows = background.rows.to(row.dtype)  # (B, F)

    def game(z: np.ndarray) -> np.ndarray:
        coalitions = torch.as_tensor(np.asarray(z), dtype=row.dtype, device=row.device)
        mask = membership.feature_mask(coalitions).to(row.dtype).unsqueeze(1)  # (n, 1, F)
        inputs = torch.addcmul(rows, mask, row - rows).reshape(-1, row.shape[0])  # (n * B, F)
        index = torch.full((len(inputs),), target, device=row.device)
        values = function.target_values(inputs, index).double().view(len(coalitions), -1)
        return background.expected(values).cpu().numpy()

    return game


def kernel_shap(
    function: ClassOutput,
    x: torch.Tensor,
    baseline: torch.Tensor | Background,
    target: torch.Tensor,
    players: Players,
    *,
    samples: int | str = "auto",
    seed: int = 0,
) -> torch.Tensor:
    """KernelSHAP values ``(rows, M)`` from ``shap.KernelExplainer``, one explainer per row.

    ``samples`` is KernelExplainer's ``nsamples``; at ``2^M - 2`` or more it enumerates every
    coalition and is exact up to its least-squares solve. No L1 feature selection.
    """
    import shap

    background = baseline if isinstance(baseline, Background) else single(baseline)
    background = background.to(x.device)
    results = []
    empty, full = np.zeros((1, players.count)), np.ones((1, players.count))
    for position in range(len(x)):
        game = _presence_game(function, x[position], background, int(target[position]), players)
        np.random.seed(seed + position)
        explainer = shap.KernelExplainer(game, empty)
        values = explainer.shap_values(full, nsamples=samples, l1_reg=False, silent=True)
        results.append(np.asarray(values, dtype=np.float64).reshape(-1))
    return torch.as_tensor(np.stack(results), dtype=x.dtype, device=x.device)


def lime_tabular(
    function: ClassOutput,
    x: torch.Tensor,
    target: torch.Tensor,
    background: torch.Tensor,
    *,
    samples: int = 1000,
    seed: int = 0,
    feature_names: tuple[str, ...] = (),
) -> torch.Tensor:
    """LIME weights ``(rows, F)`` from ``lime.lime_tabular`` (regression on ``f(x)[target]``).

    Continuous features are not discretized: each weight is the local linear model's coefficient
    on the standardized feature (LIME's weights are not additive like Shapley values).
    """
    from lime.lime_tabular import LimeTabularExplainer

    reference = background.detach().double().cpu().numpy()
    explainer = LimeTabularExplainer(
        reference,
        mode="regression",
        feature_names=list(feature_names) or None,
        discretize_continuous=False,
        sample_around_instance=True,
        random_state=seed,
    )
    n_features = x.shape[1]
    results = np.zeros((len(x), n_features))
    for position in range(len(x)):
        label = int(target[position])

        def predict(rows: np.ndarray, label: int = label) -> np.ndarray:
            inputs = torch.as_tensor(rows, dtype=x.dtype, device=x.device)
            index = torch.full((len(inputs),), label, device=x.device)
            return function.target_values(inputs, index).double().cpu().numpy()

        explanation = explainer.explain_instance(
            x[position].detach().double().cpu().numpy(),
            predict,
            num_features=n_features,
            num_samples=samples,
        )
        for feature, weight in explanation.as_map()[1]:
            results[position, feature] = weight
    return torch.as_tensor(results, dtype=x.dtype, device=x.device)
