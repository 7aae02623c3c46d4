"""One entry point for every attribution method: :func:`explain`.

It validates everything first (method name, baseline shape, player count for exact enumeration,
differentiability for gradient methods), then dispatches to paralab's batched code (exact
Shapley values, integrated gradients), Captum (saliency, DeepLift, GradientSHAP), shap
(KernelSHAP) or lime (LIME), and returns attributions per player in one :class:`Attribution`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from paralab_explain import convolutional
from paralab_explain.background import Background, resolve_background
from paralab_explain.baselines import check_baseline, resolve_baseline
from paralab_explain.choices import GRADIENT_METHODS, LAYER_METHODS, METHODS, PLAYER_METHODS
from paralab_explain.errors import ExplainError
from paralab_explain.gradients import captum_attribution, integrated_gradients, quadrature
from paralab_explain.model_output import ClassOutput, require_differentiable, resolve_targets
from paralab_explain.permutation import check_sampling, permutation_shapley
from paralab_explain.players import Players, resolve_players
from paralab_explain.sampling import kernel_shap, lime_tabular
from paralab_explain.shapley import MAX_PLAYERS, check_player_count, exact_shapley


@dataclass
class Attribution:
    """Attributions ``values[row, player]`` of ``f(x)[target]``; ``features`` per input feature
    when the method computes them (gradient methods, LIME)."""

    method: str
    values: torch.Tensor
    players: Players
    target: torch.Tensor
    baseline: torch.Tensor
    features: torch.Tensor | None = None
    references: torch.Tensor | None = None
    """The baseline rows the method averaged over (GradientSHAP's or a Shapley estimator's
    background), when not the single ``baseline``: the values then sum to ``f(x)`` minus their
    (weighted) mean output."""
    reference_weights: torch.Tensor | None = None
    """The weights of ``references`` (a k-means background's cluster sizes); None: equal."""
    standard_error: torch.Tensor | None = None
    """Per value standard errors ``(rows, players)`` of a sampled estimate (permutation_shapley)."""
    permutations: torch.Tensor | None = None
    """Orders spent per row (permutation_shapley)."""
    converged: torch.Tensor | None = None
    """Per row: the largest standard error reached ``target_error`` (permutation_shapley)."""
    layer: torch.Tensor | None = None
    """The attributions in the layer's own space (gradcam: ``(rows, 1, h, w)``;
    layer_integrated_gradients: the layer's output shape); ``features`` maps them to pixels."""


def check_method(method: str) -> None:
    if method not in METHODS:
        from paralab_registry import suggest

        raise ExplainError(
            f"method: {method!r} unknown{suggest(method, METHODS)}; valid: {', '.join(METHODS)}"
        )


def explain(
    model: nn.Module,
    x: torch.Tensor,
    *,
    method: str = "integrated_gradients",
    target: int | Sequence[int] | torch.Tensor | str | None = None,
    baseline: Any = "zeros",
    reference: torch.Tensor | None = None,
    groups: Any = None,
    feature_names: Sequence[str] = (),
    image_shape: Sequence[int] | None = None,
    output: str = "probability",
    steps: int = 50,
    integration: str = "gausslegendre",
    samples: int | str = "auto",
    max_players: int = MAX_PLAYERS,
    seed: int = 0,
    players: Players | None = None,
    background: Any = None,
    permutations: int = 256,
    antithetic: bool = True,
    target_error: float | None = None,
    stdev: float = 0.1,
    noise_samples: int = 16,
    window: int = 2,
    stride: int = 1,
    layer: str | None = None,
) -> Attribution:
    """Explain ``model``'s output for rows ``x`` (any input shape; rows first).

    :param method: one of :data:`METHODS`.
    :param target: the class to explain per row; ``None``/``"predicted"`` = the model's argmax.
    :param baseline: ``"zeros"``, ``"mean"`` (of ``reference``), a number or one value per feature.
    :param reference: rows standing for the data (the training split): the ``"mean"`` baseline,
        LIME's sampling statistics and GradientSHAP's baseline distribution.
    :param groups: the players (see :mod:`paralab_explain.players`).
    :param output: ``"probability"`` (softmax) or ``"logit"``.
    :param steps: integration steps (integrated gradients) or samples (GradientSHAP).
    :param samples: KernelSHAP's ``nsamples`` or LIME's ``num_samples``.
    :param background: for the Shapley estimators (exact, kernel, permutation): ``None`` (the single ``baseline``), ``"sample:N"``, ``"kmeans:K"``,
        ``"train"`` (of ``reference``), a tensor of rows or a
        :class:`~paralab_explain.background.Background`; values are then expectations over it.
    :param permutations, antithetic, target_error: permutation_shapley's budget of orders per
        row, pairing each order with its reverse, and the standard error to stop at.
    :param stdev, noise_samples: SmoothGrad's noise (standard deviation, in input units) and
        noisy copies per row.
    :param window, stride: occlusion's square window (over all channels of an image) and step.
    :param layer: Grad-CAM's and layer integrated gradients' layer, a name from
        ``model.named_modules()`` (None: the last ``nn.Conv2d``).
    """
    check_method(method)
    model_device = next((p.device for p in model.parameters()), x.device)
    x = x.to(model_device)
    if x.dim() < 2 or len(x) == 0:
        raise ExplainError(f"x: expected a non-empty batch of rows, got shape {tuple(x.shape)}")
    input_shape = tuple(x.shape[1:])
    flat = x.reshape(len(x), -1).float()
    n_features = flat.shape[1]
    reference_flat = reference.reshape(len(reference), -1).float().to(x.device) if (
        reference is not None) else None
    if isinstance(baseline, torch.Tensor):
        base = check_baseline(baseline.to(x.device).float(), n_features)
    else:
        base = resolve_baseline(baseline, n_features, reference_flat, x.device)
    players = players or resolve_players(groups, n_features, feature_names, image_shape)
    if players.n_features != n_features:
        raise ExplainError(f"groups: built for {players.n_features} features, inputs have {n_features}")
    players = players.to(x.device)
    distribution: Background | None = resolve_background(background, reference_flat, seed=seed,
                                                         n_features=n_features)
    if distribution is not None:
        if distribution.rows.shape[1] != n_features:
            raise ExplainError(f"background: rows have {distribution.rows.shape[1]} features, "
                               f"the inputs {n_features}")
        distribution = distribution.to(x.device)
    if method == "permutation_shapley":
        check_sampling(permutations, 32, antithetic, target_error)
    shape = tuple(image_shape) if image_shape else input_shape
    chosen_layer = convolutional.find_layer(model, layer) if method in LAYER_METHODS else None
    if method == "occlusion":
        convolutional.occlusion_shape(shape, window, stride)
    if method == "exact_shapley":
        check_player_count(players.count, max_players)
    if method == "integrated_gradients":
        quadrature(steps, integration)
    if method == "lime" and reference_flat is None:
        raise ExplainError("method 'lime' needs reference rows (the training data) to sample from")
    was_training = model.training
    model.eval()
    try:
        function = ClassOutput(model, input_shape, output)
        if method in GRADIENT_METHODS and method != "integrated_gradients":
            # (integrated gradients checks its first forward pass itself, at no extra cost)
            require_differentiable(function, flat, method)
        targets = resolve_targets(target, function, flat)
        features = None
        references = weights = None
        sampled = None
        game = distribution if distribution is not None else base
        if method in PLAYER_METHODS and distribution is not None:
            references, weights = distribution.rows, distribution.weights
        layer_values = None
        if method == "exact_shapley":
            values = exact_shapley(function, flat, game, targets, players, max_players=max_players)
        elif method == "kernel_shap":
            values = kernel_shap(function, flat, game, targets, players, samples=samples, seed=seed)
        elif method == "permutation_shapley":
            sampled = permutation_shapley(
                function, flat, game, targets, players, permutations=permutations,
                antithetic=antithetic, target_error=target_error, seed=seed,
            )
            values = sampled.values
        else:
            if method == "integrated_gradients":
                features = integrated_gradients(
                    function, flat, base, targets, steps=steps, integration=integration
                )
            elif method in ("smoothgrad", "smoothgrad_ig"):
                features = convolutional.smoothgrad(
                    function, flat, targets, stdev=stdev, samples=noise_samples, seed=seed,
                    base="saliency" if method == "smoothgrad" else "integrated_gradients",
                    baseline=base, steps=steps, integration=integration)
            elif method == "occlusion":
                features = convolutional.occlusion(function, flat, base, targets, window=window,
                                                   stride=stride, image_shape=shape)
            elif method == "gradcam":
                assert chosen_layer is not None
                layer_values, features = convolutional.grad_cam(function, flat, targets,
                                                                chosen_layer, image_shape=shape)
            elif method == "layer_integrated_gradients":
                assert chosen_layer is not None
                layer_values, features = convolutional.layer_integrated_gradients(
                    function, flat, base, targets, chosen_layer, steps=steps,
                    integration=integration, image_shape=shape)
            elif method == "lime":
                lime_samples = 1000 if samples == "auto" else int(samples)
                features = lime_tabular(
                    function, flat, targets, reference_flat, samples=lime_samples, seed=seed,
                    feature_names=tuple(feature_names),
                )
            else:
                background_rows = reference_flat[:64] if reference_flat is not None else None
                if method == "gradient_shap" and background_rows is not None:
                    references = background_rows
                features = captum_attribution(
                    method, function, flat, base, targets, steps=steps,
                    background=background_rows, seed=seed,
                )
            values = features if players.is_identity else players.sum_features(features)
    finally:
        model.train(was_training)
    attribution = Attribution(method, values.float(), players, targets, base, features,
                              references, weights)
    attribution.layer = layer_values
    if sampled is not None:
        attribution.standard_error = sampled.standard_error.float()
        attribution.permutations = sampled.permutations
        attribution.converged = sampled.converged
    return attribution
