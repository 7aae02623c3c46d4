"""The continual plugin's typed contract: declared options equal the factories' signatures,
every bad value is a SpecError naming the field before any folder exists, the protocol and
methods declare what they consume, the built objects implement their interfaces, and a
strategy that diverges to NaN fails the run naming the phase."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

import paralab
from paralab.interfaces import missing_members
from paralab.testing import isolated_registry
from paralab.testing.conformance import declaration_problems, factory_parameters
from tests.continual_helpers import CountingLoss, continual_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest

NATIVE = ("naive", "joint", "cumulative", "ewc", "online_ewc", "si", "lwf", "replay", "agem",
          "der", "er_ace", "gdumb", "icarl", "bic")


def _components() -> list[Any]:
    registry = paralab.get_registry()
    registry.load()
    found = [spec for kind in ("protocol", "method")
             for spec in registry.components[kind].values()
             if spec.provider == "paralab_continual"]
    assert {spec.name for spec in found} == {"continual", "avalanche", *NATIVE}
    return found


@pytest.mark.parametrize("spec", _components(), ids=lambda spec: f"{spec.kind}-{spec.name}")
def test_declared_options_equal_the_factory_signature(spec):
    """Names and defaults, both ways, along the ``**options`` chain of the strategies'
    constructors; every default satisfies its own declaration."""
    assert declaration_problems(spec) == []
    parameters, takes_more = factory_parameters(spec.load())
    assert not takes_more  # the chain ends in ContinualStrategy's (or the class's) own
    assert parameters == spec.defaults()
    for name, option in spec.declared_options().items():
        assert option.problem(option.default) is None, name
        assert option.types, f"{name}: declare a type"


def test_protocol_and_methods_declare_what_they_consume():
    registry = paralab.get_registry()
    protocol = registry.component("protocol", "continual")
    assert protocol.method_interface == "ContinualStrategy"
    assert protocol.applies_losses is True
    assert protocol.middleware_hooks == ()
    methods = {name: registry.component("method", name) for name in (*NATIVE, "avalanche")}
    assert all(methods[name].applies_losses for name in NATIVE)
    assert methods["avalanche"].applies_losses is False


def test_built_objects_implement_their_interfaces():
    from paralab_continual.avalanche_adapter import AvalancheStrategy
    from paralab_continual.protocol import Continual
    from paralab_continual.strategies import ContinualStrategy

    registry = paralab.get_registry()
    assert isinstance(Continual(), paralab.Protocol)
    assert missing_members(Continual(), paralab.Protocol) == []
    for name in NATIVE:
        method = registry.component("method", name).load()()
        assert isinstance(method, ContinualStrategy)
        assert isinstance(method, paralab.OptimizerMethod)
        assert isinstance(method, paralab.ContinualStrategy)
        assert missing_members(method, paralab.ContinualStrategy) == []
    assert isinstance(AvalancheStrategy(), paralab.ContinualStrategy)
    assert missing_members(AvalancheStrategy(), paralab.ContinualStrategy) == []


BAD_PROTOCOL = [
    ("scenario", "stream_il"), ("experiences", 0), ("experiences", 2.5), ("epochs", 0),
    ("batch_size", 0), ("batch_size", True), ("domain", "blurred"), ("shuffle_classes", 1),
    ("class_order_seed", 0.5), ("class_order", [0, 1, "2"]), ("class_order", [-1, 0]),
    ("class_order", 3), ("max_rotation", math.nan), ("max_rotation", math.inf),
    ("train_split", ""), ("eval_split", 3), ("forward_transfer", "yes"), ("plot", None),
]
BAD_METHOD = [
    ("naive", "lr", 0), ("naive", "lr", math.nan), ("naive", "lr", -0.1),
    ("naive", "optimizer", "adma"), ("joint", "momentum", 1.0), ("joint", "momentum", -0.5),
    ("naive", "weight_decay", -1e-4), ("naive", "reset_optimizer", "no"),
    ("naive", "heads", "two"), ("ewc", "ewc_lambda", -1.0), ("ewc", "ewc_lambda", math.inf),
    ("ewc", "mode", "offline"), ("ewc", "decay", 0.0), ("ewc", "decay", 1.5),
    ("ewc", "fisher_batch_size", -1), ("online_ewc", "decay", -0.2),
    ("online_ewc", "fisher_batch_size", 8.0), ("si", "si_lambda", -1.0), ("si", "damping", 0.0),
    ("lwf", "alpha", -0.1), ("lwf", "temperature", 0.0), ("lwf", "temperature", math.nan),
    ("replay", "buffer_size", 0), ("replay", "policy", "fifo"),
    ("replay", "memory_batch_size", -1), ("agem", "patterns_per_experience", 0),
    ("agem", "sample_size", 0), ("gdumb", "buffer_size", 0), ("icarl", "memory_size", 0),
    ("bic", "val_fraction", 1.0), ("bic", "bias_steps", 0),
    ("avalanche", "strategy", "Nieve"), ("avalanche", "lr", -1.0),
    ("avalanche", "optimizer", "rmsprop"), ("avalanche", "momentum", 2.0),
    ("avalanche", "strategy_options", [1, 2]), ("avalanche", "avalanche_metrics", "on"),
]


def _rejected(spec: dict[str, Any], tmp_path) -> paralab.SpecError:
    spec["output"] = str(tmp_path)
    with pytest.raises(paralab.SpecError) as raised:
        paralab.run(spec)
    assert list(tmp_path.iterdir()) == []  # no run folder
    return raised.value


@pytest.mark.parametrize(("option", "value"), BAD_PROTOCOL)
def test_bad_protocol_option_is_a_spec_error_naming_it(option, value, tmp_path):
    error = _rejected(continual_spec("naive", **{option: value}), tmp_path)
    assert f"protocol.{option} = {value!r}" in str(error)


@pytest.mark.parametrize(("method", "option", "value"), BAD_METHOD)
def test_bad_method_option_is_a_spec_error_naming_it(method, option, value, tmp_path):
    error = _rejected(continual_spec({"name": method, option: value}), tmp_path)
    assert f"method.{option} = {value!r}" in str(error)


def test_every_problem_is_reported_at_once(tmp_path):
    spec = continual_spec({"name": "ewc", "mode": "online", "lr": math.nan, "decay": 0.0}, epochs=0)
    error = _rejected(spec, tmp_path)
    assert len(error.problems) == 3


# ------------------------------------------------------------ what the protocol consumes


class _Plugins:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_losses(self):
        return [paralab.LossSpec("counting", CountingLoss, "Counts its calls.",
                                 {"weight": 0.0})]

    @paralab.hookimpl
    def paralab_middleware(self):
        return [paralab.MiddlewareSpec("clip", "nowhere:never", "Would act on updates.")]


def _registry():
    import paralab_continual

    return isolated_registry(("paralab_continual", paralab_continual), ("others", _Plugins()))


@pytest.mark.parametrize("method", NATIVE)
def test_every_native_strategy_applies_the_specs_loss_terms(method):
    """What `applies_losses = True` promises: the term enters every strategy's training."""
    spec = continual_spec(method, experiences=2, epochs=1)
    spec["losses"] = ["counting"]
    CountingLoss.calls = 0
    assert paralab.run(spec, registry=_registry()).status == "completed"
    assert CountingLoss.calls > 0


def test_avalanche_with_loss_terms_is_rejected(tmp_path):
    spec = continual_spec({"name": "avalanche", "strategy": "Naive"})
    spec["losses"] = ["counting"]
    spec["output"] = str(tmp_path)
    with pytest.raises(paralab.SpecError, match=r"losses\[0\] = 'counting': method 'avalanche'"):
        paralab.run(spec, registry=_registry())
    assert list(tmp_path.iterdir()) == []


def test_middleware_under_continual_is_rejected(tmp_path):
    """The protocol passes no update through middleware, so naming any would be a lie."""
    spec = continual_spec("naive")
    spec["middleware"] = ["clip"]
    spec["output"] = str(tmp_path)
    with pytest.raises(paralab.SpecError, match=r"middleware\[0\] = 'clip'.*never calls"):
        paralab.run(spec, registry=_registry())
    assert list(tmp_path.iterdir()) == []


def test_the_stream_is_built_once_in_validate(monkeypatch):
    from paralab_continual import protocol

    built = []

    def counting(*args, **kwargs):
        built.append(kwargs)
        return original(*args, **kwargs)

    original = protocol.build_stream
    monkeypatch.setattr(protocol, "build_stream", counting)
    result = paralab.run(continual_spec("naive", experiences=2, epochs=1))
    assert result.status == "completed" and len(built) == 1


# ----------------------------------------------------------------------- numerical health


def test_ewc_that_diverges_fails_naming_the_phase(tmp_path):
    """Issue 13: an exploding EWC penalty used to end `completed` with accuracy 0.100."""
    spec = continual_spec({"name": "ewc", "ewc_lambda": 1e30}, experiences=3, epochs=1)
    spec["output"] = str(tmp_path)
    with pytest.raises(paralab.RunError, match="ewc_lambda") as raised:
        paralab.run(spec)
    result = raised.value.result
    assert result.status == "failed"
    # The penalty acts from the second experience on: that is the phase that diverged.
    assert result.error["phase"] == {"kind": "experience", "index": 1}
    assert result.error["component"] == "ewc"
    kinds = [(phase["kind"], phase["index"]) for phase in result.phases]
    assert kinds == [("initial", 0), ("experience", 0), ("experience", 1)]
    assert math.isfinite(result.phases[1]["metrics"]["train/loss"])  # the phase before is kept
    saved = json.loads((tmp_path / "continual-test" / "result.json").read_text("utf-8"))
    assert saved["status"] == "failed" and len(saved["phases"]) == 3


def test_with_on_nan_warn_it_completes_with_a_warning():
    spec = continual_spec({"name": "ewc", "ewc_lambda": 1e30}, experiences=3, epochs=1)
    spec["on_nan"] = "warn"
    with pytest.warns(UserWarning, match="training diverged in experience") as caught:
        result = paralab.run(spec)
    assert result.status == "completed"
    assert "training diverged in experience 1" in str(caught[0].message)
    assert "numerical_warning" not in result.phases[1]["info"]
    assert all("numerical_warning" in phase["info"] for phase in result.phases[2:])


@pytest.mark.parametrize(("protocol", "unused", "because"), [
    ({"scenario": "class_incremental", "domain": "rotated"}, "domain",
     "scenario = 'domain_incremental'"),
    ({"scenario": "domain_incremental", "domain": "permuted", "max_rotation": 90.0},
     "max_rotation", "domain = 'rotated'"),
    ({"shuffle_classes": False, "class_order_seed": 3}, "class_order_seed",
     "shuffle_classes = True"),
])
def test_an_option_the_stream_does_not_use_is_a_spec_error(protocol, unused, because):
    spec = {"dataset": "digits", "model": "mlp", "output": None,
            "protocol": {"name": "continual", "experiences": 2, **protocol},
            "method": {"name": "naive"}}
    with pytest.raises(paralab.SpecError, match=rf"protocol\.{unused}: .* only when .*"
                                                 rf"{because}"):
        paralab.run(spec)


@pytest.mark.parametrize(("method", "message"), [
    ({"name": "naive", "optimizer": "adam", "momentum": 0.9},
     "method.momentum: method 'naive' (paralab_continual) uses it only when optimizer = 'sgd', "
     "and here optimizer = 'adam'"),
    ({"name": "avalanche", "optimizer": "adam", "momentum": 0.9}, "method.momentum: method"),
    ({"name": "ewc", "decay": 0.5},
     "method.decay: method 'ewc' (paralab_continual) uses it only when mode = 'online', and "
     "here mode = 'separate'"),
])
def test_an_option_the_chosen_setting_ignores_is_a_spec_error(method, message):
    with pytest.raises(paralab.SpecError, match=re.escape(message)):
        paralab.run(continual_spec(method))
