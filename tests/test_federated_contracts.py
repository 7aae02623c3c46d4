"""The federated plugin's contracts: every option declared once, with the factory's own
signature; every built object implements its interface; what the protocol declares it
consumes is what it really calls."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import paralab
from paralab.host import get_registry

PROVIDER = "paralab_federated"
_SKIPPED = {"info", "root"}


def _components() -> list[Any]:
    registry = get_registry()
    return [spec for kind in registry.components.values() for spec in kind.values()
            if spec.provider == PROVIDER]


def _same(a: Any, b: Any) -> bool:
    """Declared and signature defaults agree (a TOML list declares a tuple default)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return type(a) is type(b) and a == b or (a is None and b is None)


@pytest.mark.parametrize("spec", _components(), ids=lambda s: f"{s.kind}:{s.name}")
def test_declared_options_are_the_factorys_signature(spec) -> None:
    parameters = {
        name: parameter.default
        for name, parameter in inspect.signature(spec.load()).parameters.items()
        if name not in _SKIPPED
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    }
    declared = spec.defaults()
    assert list(declared) == list(parameters), "same names, in the same order"
    for name, default in declared.items():
        assert _same(default, parameters[name]), f"{name}: {default!r} vs {parameters[name]!r}"
    for name, option in spec.declared_options().items():
        assert option.required or option.problem(option.default) is None, name


@pytest.mark.parametrize("spec", _components(), ids=lambda s: f"{s.kind}:{s.name}")
def test_every_declared_option_says_what_it_is(spec) -> None:
    assert all(option.help for option in spec.declared_options().values())


def test_the_federated_protocol_declares_what_it_consumes() -> None:
    protocol = get_registry().component("protocol", "federated")
    assert protocol.method_interface == "FederatedStrategy"
    assert protocol.applies_losses  # on loop and vmap; ray rejects losses in validate(run)
    assert protocol.middleware_hooks == ("paralab_process_update",)
    dp = get_registry().component("middleware", "dp")
    assert set(dp.hooks) == {"paralab_process_update", "paralab_process_gradients"}
    secure = get_registry().component("middleware", "secure_aggregation")
    assert secure.hooks == ("paralab_process_update",)
    supervised = get_registry().component("protocol", "supervised")
    assert supervised.middleware_hooks == ("paralab_process_gradients",)


def test_built_objects_implement_their_interfaces() -> None:
    from paralab_federated.methods import FedAdam, FedAvg, FedProx, FedSGD, FedYogi
    from paralab_federated.privacy import DPFedAvg
    from paralab_federated.protocol import Federated
    from paralab_federated.secure_aggregation import SecureAggregation

    for method in (FedSGD, FedAvg, FedProx, FedAdam, FedYogi):
        assert isinstance(method(), paralab.FederatedStrategy)
    assert isinstance(Federated(), paralab.Protocol)
    assert isinstance(DPFedAvg(), paralab.Middleware)
    assert isinstance(SecureAggregation(), paralab.Middleware)


@pytest.mark.parametrize("protocol", [{"batch_size": 16}, {"local_epochs": 5}])
def test_fedsgd_refuses_local_options_it_would_ignore(protocol, tmp_path) -> None:
    """FedSGD takes one full-batch gradient step per client: local epochs or a minibatch size
    would record a setting that never acted."""
    from tests.federated_helpers import spec

    options = spec("fedsgd", overrides={"output": str(tmp_path)})
    options["protocol"].update(protocol)
    with pytest.raises(paralab.SpecError, match=rf"protocol\.{next(iter(protocol))}: method "
                       "'fedsgd' takes one full-batch gradient step"):
        paralab.run(options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ({"name": "fedavg", "lr": 0}, r"method\.lr = 0: must be > 0"),
        ({"name": "fedsgd", "server_lr": float("nan")}, r"method\.server_lr = nan: must be a fin"),
        ({"name": "fedprox", "mu": -0.1}, r"method\.mu = -0\.1: must be >= 0"),
        ({"name": "fedadam", "beta1": 1.0}, r"method\.beta1 = 1\.0: must be < 1"),
        ({"name": "fedyogi", "beta2": -0.5}, r"method\.beta2 = -0\.5: must be >= 0"),
        ({"name": "fedyogi", "tau": 0.0}, r"method\.tau = 0\.0: must be > 0"),
    ],
)
def test_bad_method_options_are_spec_errors(method, message, tmp_path) -> None:
    from tests.federated_helpers import spec

    with pytest.raises(paralab.SpecError, match=message):
        paralab.run(spec(method, overrides={"output": str(tmp_path)}))
    assert list(tmp_path.iterdir()) == []


def test_every_problem_is_listed_at_once(tmp_path) -> None:
    from tests.federated_helpers import spec

    experiment = spec({"name": "fedavg", "lr": -1},
                      [{"name": "dp", "noise_multiplier": float("nan"), "delta": 3}],
                      overrides={"output": str(tmp_path)}, fraction=2.0, backend="tpu")
    with pytest.raises(paralab.SpecError) as caught:
        paralab.run(experiment)
    fields = [problem.split(" ")[0] for problem in caught.value.problems]
    assert fields == ["protocol.fraction", "protocol.backend", "method.lr",
                      "middleware[0].noise_multiplier", "middleware[0].delta"]
    assert list(tmp_path.iterdir()) == []
