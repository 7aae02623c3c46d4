"""Parity with Quantus (Hedström et al. 2023) on the faithfulness measure paralab shares with
it: the deletion curve is Quantus's ``PixelFlipping`` (remove the most important feature, then
the next, towards a zero baseline, and read the target's probability each time), computed by
Quantus in the test on the same model, rows, attributions and targets."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from paralab_explain.explainers import explain
from paralab_explain.faithfulness import deletion_insertion
from paralab_explain.model_output import ClassOutput
from paralab_explain.players import resolve_players
from tests.explain_helpers import trained_mlp

quantus = pytest.importorskip("quantus")


@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "exact_shapley"])
def test_deletion_curve_equals_quantus_pixel_flipping(method: str) -> None:
    model, data = trained_mlp("wine")
    x = data.x[data.splits["test"][:20]]
    with torch.no_grad():
        target = model(x).argmax(dim=1)
    values = explain(model, x, method=method, target=target, baseline="zeros").values
    n = x.shape[1]
    ours = deletion_insertion(ClassOutput(model, (n,)), x, torch.zeros(n), target, values,
                              resolve_players(None, n), max_points=n + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = quantus.PixelFlipping(features_in_step=1, normalise=False, abs=False,
                                       perturb_baseline=0.0, disable_warnings=True)
        curves = np.asarray(metric(model=model, x_batch=x.numpy(), y_batch=target.numpy(),
                                   a_batch=values.numpy(), device="cpu", softmax=True,
                                   channel_first=True))
    assert curves.shape == (20, n)
    # Quantus's curve starts after the first removal; paralab's also holds the intact input.
    difference = np.abs(np.asarray(ours["deletion_curve"][1:]) - curves.mean(axis=0)).max()
    assert difference < 1e-5  # paralab rounds its curve to 6 decimals
    with torch.no_grad():
        intact = torch.softmax(model(x), -1)[torch.arange(20), target].mean()
    assert ours["deletion_curve"][0] == pytest.approx(float(intact), abs=1e-6)
    # Both fall as the evidence is removed: the measure is not a constant.
    assert curves.mean(axis=0)[-1] < float(intact) - 0.2
