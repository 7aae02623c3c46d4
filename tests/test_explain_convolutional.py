"""SmoothGrad, occlusion, Grad-CAM and layer integrated gradients on convolutional models,
against Captum's NoiseTunnel, Occlusion, LayerGradCam and LayerIntegratedGradients here."""

from __future__ import annotations

import pytest
import torch

import paralab
from paralab_explain.errors import ExplainError
from paralab_explain.explainers import explain
from paralab_explain.model_output import ClassOutput
from tests.explain_helpers import small_cnn

attr = pytest.importorskip("captum.attr")
IMAGE = (1, 8, 8)


def _case(rows: int = 5):
    model = small_cnn(IMAGE, seed=2)
    x = torch.rand(rows, 64, generator=torch.Generator().manual_seed(7))
    function = ClassOutput(model, (64,))
    target = function(x).argmax(dim=1)
    return model, x, function, target


@pytest.mark.parametrize("method", ["smoothgrad", "smoothgrad_ig"])
def test_smoothgrad_equals_captum_noise_tunnel_with_the_same_seed(method):
    model, x, function, target = _case()
    ours = explain(model, x, method=method, target=target, baseline="zeros", stdev=0.2,
                   noise_samples=6, steps=16, seed=11, image_shape=IMAGE).values
    base = attr.Saliency(function) if method == "smoothgrad" else attr.IntegratedGradients(
        function)
    extra = {} if method == "smoothgrad" else {"baselines": torch.zeros(1, 64), "n_steps": 16}
    torch.manual_seed(11)
    theirs = attr.NoiseTunnel(base).attribute(x, nt_type="smoothgrad", nt_samples=6,
                                              stdevs=0.2, target=target, **extra)
    assert torch.allclose(ours, theirs, atol=1e-7, rtol=1e-5)
    # the noise matters: plain saliency / IG of the same rows differ
    plain = explain(model, x, method="saliency" if method == "smoothgrad" else
                    "integrated_gradients", target=target, baseline="zeros", steps=16).values
    assert float((plain - ours).abs().max()) > 1e-2 * float(ours.abs().max())


def test_smoothgrad_leaves_the_global_random_stream_alone():
    model, x, _, target = _case(2)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    explain(model, x, method="smoothgrad", target=target, noise_samples=4, seed=1)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(("window", "stride"), [(2, 1), (3, 2)])
def test_occlusion_equals_captum_occlusion(window, stride):
    model, x, _, target = _case()
    baseline = torch.full((64,), 0.25)
    ours = explain(model, x, method="occlusion", target=target, baseline=baseline,
                   window=window, stride=stride, image_shape=IMAGE).values
    images = ClassOutput(model, IMAGE)
    theirs = attr.Occlusion(images).attribute(
        x.view(-1, *IMAGE), sliding_window_shapes=(1, window, window), strides=(1, stride, stride),
        baselines=0.25, target=target).reshape(len(x), -1)
    assert torch.allclose(ours, theirs, atol=1e-7)
    assert float(ours.abs().max()) > 0


@pytest.mark.parametrize("layer", [None, "4"])
def test_grad_cam_equals_captum_layer_grad_cam(layer):
    model, x, function, target = _case()
    ours = explain(model, x, method="gradcam", target=target, layer=layer, image_shape=IMAGE)
    module = dict(model.named_modules())[layer or "4"]  # the last Conv2d is module "4"
    theirs = attr.LayerGradCam(function, module).attribute(x, target=target)
    assert torch.allclose(ours.layer, theirs, atol=1e-7)
    upsampled = attr.LayerAttribution.interpolate(theirs, IMAGE[1:]).reshape(len(x), -1)
    assert torch.allclose(ours.values, upsampled, atol=1e-7)
    first = explain(model, x, method="gradcam", target=target, layer="1", image_shape=IMAGE)
    assert first.layer.shape == (5, 1, 8, 8) and ours.layer.shape == (5, 1, 4, 4)


def test_layer_integrated_gradients_equals_captum_and_is_complete():
    model, x, function, target = _case()
    baseline = torch.zeros(64)
    ours = explain(model, x, method="layer_integrated_gradients", target=target,
                   baseline=baseline, steps=24, layer="1", image_shape=IMAGE)
    module = dict(model.named_modules())["1"]
    theirs = attr.LayerIntegratedGradients(function, module).attribute(
        x, baselines=baseline.unsqueeze(0), target=target, n_steps=24)
    assert torch.allclose(ours.layer, theirs, atol=1e-7)
    difference = function.target_values(x, target) - function.target_values(
        baseline.expand_as(x), target)
    # the pixel values keep the layer's sum, and the sum is f(x) - f(baseline)
    assert torch.allclose(ours.values.sum(dim=1), theirs.flatten(1).sum(dim=1), atol=1e-6)
    assert torch.allclose(ours.values.sum(dim=1), difference, atol=1e-4)


def test_bad_layer_and_window_are_refused_before_computing():
    model, x, _, target = _case(2)
    with pytest.raises(ExplainError, match="not a module"):
        explain(model, x, method="gradcam", layer="conv9", image_shape=IMAGE)
    with pytest.raises(ExplainError, match="does not fit"):
        explain(model, x, method="occlusion", window=9, image_shape=IMAGE)
    with pytest.raises(ExplainError, match="no nn.Conv2d"):
        explain(torch.nn.Linear(64, 3), x, method="gradcam")


def test_lenet_run_with_convolutional_methods():
    """paralab_neurosymbolic's LeNet on digits, through the auditors, end to end."""
    from paralab.host import get_registry

    registry = get_registry()
    if "lenet" not in registry.components["model"]:
        pytest.skip("paralab_neurosymbolic's lenet model is not installed")
    spec = {"dataset": "digits", "model": "lenet", "output": None, "device": "cpu",
            "protocol": {"name": "supervised", "epochs": 1}, "method": {"name": "adam",
                                                                        "lr": 0.01},
            "auditors": [{"name": "attributions", "method": "gradcam", "rows": 6, "plots": False},
                         {"name": "faithfulness", "rows": 4, "steps": 8, "noise_samples": 4,
                          "methods": ["smoothgrad", "occlusion", "layer_integrated_gradients"],
                          "sensitivity": False, "perturbations": 2}]}
    result = paralab.run(spec, registry=registry)
    audits = result.phases[-1]["audits"]
    assert len(audits["attributions/test"]["importance"]) == 64
    faithful = audits["faithfulness/test"]
    assert faithful["layer_integrated_gradients"]["completeness_relative_gap"] < 0.05
    assert set(faithful) == {"smoothgrad", "occlusion", "layer_integrated_gradients"}
    bad = dict(spec, auditors=[{"name": "attributions", "method": "gradcam", "layer": "nope"}])
    with pytest.raises(paralab.SpecError, match="auditors\\[0\\].*layer"):
        paralab.run(bad, registry=registry)
