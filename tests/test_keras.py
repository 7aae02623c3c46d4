"""A Keras 3 model (Keras's torch backend) trains wherever a torch model does: supervised and
federated on digits, with the Keras weights being what paralab's optimizer updates."""

from __future__ import annotations

import os

import pytest

import paralab

os.environ.setdefault("KERAS_BACKEND", "torch")  # before anything imports Keras
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _spec(**changes):
    spec = {
        "dataset": "digits",
        "model": {"name": "keras", "builder": "tests.keras_builders:digits_mlp",
                  "options": {"width": 32}},
        "protocol": {"name": "supervised", "epochs": 3},
        "method": {"name": "sgd", "lr": 0.1},
        "output": None,
    }
    spec.update(changes)
    return spec


def test_keras_model_trains_on_digits():
    result = paralab.run(_spec())
    assert result.status == "completed", result.error
    assert result.metrics["test/accuracy"] > 0.85  # chance is 0.1


def test_keras_weights_are_the_trained_parameters():
    import keras

    from paralab.data import load_dataset
    from paralab.keras_models import keras_model

    info = load_dataset("digits").info
    model = keras_model(info, "tests.keras_builders:digits_mlp", {"width": 8})
    assert isinstance(model.keras_model, keras.Model)
    keras_weights = {id(v.value) for v in model.keras_model.trainable_variables}
    assert keras_weights == {id(p) for p in model.parameters()}
    assert sum(p.numel() for p in model.parameters()) == 64 * 8 + 8 + 8 * 10 + 10


def test_keras_dropout_follows_train_and_eval():
    import torch

    from paralab.data import load_dataset
    from paralab.keras_models import keras_model

    info = load_dataset("digits").info
    model = keras_model(info, "tests.keras_builders:digits_mlp", {"width": 64, "dropout": 0.5})
    x = torch.ones(4, 64)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_keras_model_under_federated_averaging():
    result = paralab.run(_spec(protocol={"name": "federated", "clients": 4, "fraction": 1.0,
                                         "rounds": 3, "local_epochs": 1},
                               method={"name": "fedavg", "lr": 0.1}))
    assert result.status == "completed", result.error
    assert result.metrics["test/accuracy"] > 0.5


@pytest.mark.parametrize("builder, message", [
    ("tests.keras_builders:wrong_outputs", "one logit per class"),
    ("tests.keras_builders:not_a_model", "not a keras.Model"),
    ("tests.keras_builders:missing", "has no 'missing'"),
    ("no_such_module_xyz:f", "cannot import"),
])
def test_bad_builders_are_named(builder, message):
    with pytest.raises(Exception, match=message):
        paralab.run(_spec(model={"name": "keras", "builder": builder}))


def test_functional_calls_use_the_parameters_torch_passes():
    """torch.func substitutes parameters; a Keras layer reads its variables: the adapter maps
    one onto the other, so zeroed parameters give zero outputs and vmap over two parameter
    sets gives each its own outputs (without it, both would be the model's own)."""
    import torch

    from paralab.data import load_dataset
    from paralab.keras_models import keras_model

    model = keras_model(load_dataset("digits").info, "tests.keras_builders:digits_mlp",
                        {"width": 8})
    model.eval()
    x = torch.randn(5, 64)
    params = {name: p.detach() for name, p in model.named_parameters()}
    zeros = {name: torch.zeros_like(p) for name, p in params.items()}
    assert torch.func.functional_call(model, zeros, (x,)).abs().max() == 0
    assert model(x).abs().max() > 0  # the model's own weights are back after the call
    both = {name: torch.stack([p, torch.zeros_like(p)]) for name, p in params.items()}
    out = torch.vmap(lambda ps: torch.func.functional_call(model, ps, (x,)))(both)
    assert torch.allclose(out[0], model(x)) and out[1].abs().max() == 0
    grads = torch.func.grad(lambda ps: torch.func.functional_call(model, ps, (x,)).sum())(params)
    assert all(g.abs().sum() > 0 for name, g in grads.items() if name.endswith("kernel"))
