"""Typed component contracts (issue 13): interfaces checked at build, options declared once,
components a protocol would ignore rejected, numerical health, per-run middleware, and the
public API that plugins import."""

from __future__ import annotations

import ast
import threading
import warnings
from pathlib import Path

import pytest
import torch

import paralab
from paralab import (
    LossSpec,
    MethodSpec,
    MiddlewareSpec,
    Option,
    ProtocolSpec,
    RunError,
    SpecError,
    hookimpl,
)
from paralab.health import NumericalWarning
from paralab.testing import TINY, TinyDataPlugin, isolated_registry
from paralab.testing.conformance import declaration_problems
from tests.host_support import REPOSITORY


def tiny(**changes):
    spec = {
        "dataset": TINY,
        "model": {"name": "mlp", "hidden": [16]},
        "protocol": {"name": "supervised", "epochs": 2, "batch_size": 32},
        "method": {"name": "sgd", "lr": 0.1},
        "output": None,
        "device": "cpu",
    }
    spec.update(changes)
    return spec


# ------------------------------------------------------------------------------- interfaces


class NoExecute:
    def run(self, run):  # the wrong name: the interface wants execute
        raise AssertionError("never called")


class NoStep:
    def setup(self, run, model):
        pass

    def loss(self, run, batch):
        return batch.logits.sum()


class RejectsInValidate(paralab.Protocol):
    def __init__(self, size: int = 3) -> None:
        self.size = size

    def validate(self, run):
        if self.size > len(run.dataset):
            raise ValueError(f"size = {self.size} is more than the {len(run.dataset)} rows")

    def execute(self, run):
        raise AssertionError("a rejected spec never executes")


class BlamesTheMethod(paralab.Protocol):
    def validate(self, run):
        raise paralab.OptionError("method.lr", f"lr = {run.method.lr} is too large for this")

    def execute(self, run):
        raise AssertionError("a rejected spec never executes")


class BuggyFactory(paralab.Protocol):
    def __init__(self) -> None:
        raise ValueError("a bug in the factory, not bad input")

    def execute(self, run):
        pass


class ContractPlugin:
    PARALAB_API = "1.0"

    @hookimpl
    def paralab_protocols(self):
        return [
            ProtocolSpec("no_execute", NoExecute, "Lacks execute.", accepts=("gradient",)),
            ProtocolSpec("checks_size", RejectsInValidate, "Checks against the data.",
                         {"size": Option(3, type=int, ge=1)}, accepts=("gradient",)),
            ProtocolSpec("buggy", BuggyFactory, "Its factory raises.", accepts=("gradient",)),
            ProtocolSpec("blames_method", BlamesTheMethod, "Rejects the method's lr.",
                         accepts=("gradient",)),
        ]

    @hookimpl
    def paralab_methods(self):
        return [MethodSpec("no_step", NoStep, "Lacks step.", family="gradient")]


@pytest.fixture(scope="module")
def contracts():
    return isolated_registry(("paralab_tiny", TinyDataPlugin()), ("contracts", ContractPlugin()))


def test_a_protocol_lacking_execute_fails_at_build_naming_plugin_component_and_member(contracts):
    with pytest.raises(RunError) as caught:
        paralab.run(tiny(protocol="no_execute"), registry=contracts)
    message = str(caught.value)
    assert "protocol 'no_execute'" in message and "plugin contracts" in message
    assert "lacks execute of paralab.interfaces.Protocol" in message
    assert caught.value.result.phases == []


def test_a_method_lacking_its_protocols_interface_fails_at_build(contracts):
    with pytest.raises(RunError, match="lacks step of paralab.interfaces.GradientMethod "
                                       "\\(the interface protocol 'supervised' drives\\)"):
        paralab.run(tiny(method="no_step"), registry=contracts)


def test_a_value_error_in_validate_run_is_a_spec_error_and_leaves_no_folder(contracts, tmp_path):
    with pytest.raises(SpecError, match="protocol: protocol 'checks_size' \\(contracts\\): "
                                        "size = 100000 is more than"):
        paralab.run(tiny(protocol={"name": "checks_size", "size": 100000},
                         output=str(tmp_path)), registry=contracts)
    assert not any(tmp_path.iterdir())


def test_validate_run_can_name_another_components_field(contracts):
    with pytest.raises(SpecError) as caught:
        paralab.run(tiny(protocol="blames_method"), registry=contracts)
    assert caught.value.problems == [
        "method.lr: protocol 'blames_method' (contracts): lr = 0.1 is too large for this"]


def test_a_value_error_in_a_factory_is_a_bug_not_a_spec_error(contracts, tmp_path):
    with pytest.raises(RunError, match="a bug in the factory") as caught:
        paralab.run(tiny(protocol="buggy", output=str(tmp_path)), registry=contracts)
    assert not isinstance(caught.value, SpecError)
    assert caught.value.result.error["component"] == "buggy"


def test_bundled_objects_subclass_their_interfaces():
    from paralab.methods import SGD, OptimizerMethod
    from paralab.protocols.supervised import Supervised

    assert issubclass(SGD, OptimizerMethod) and issubclass(SGD, paralab.GradientMethod)
    assert issubclass(Supervised, paralab.Protocol)


# ------------------------------------------------------------------------ ignored components


class CountingTerm(paralab.LossTerm):
    calls = 0

    def __call__(self, batch):
        CountingTerm.calls += 1
        return batch.logits.pow(2).mean()


class Ignores(paralab.Protocol):
    """Trains nothing and calls no middleware hook."""

    def execute(self, run):
        with run.phase("epoch", 0):
            run.evaluate("test")


class Noise(paralab.Middleware):
    @hookimpl(wrapper=True)
    def paralab_process_update(self, run, update):
        return (yield)


class IgnoringPlugin:
    PARALAB_API = "1.0"

    @hookimpl
    def paralab_protocols(self):
        return [ProtocolSpec("ignores", Ignores, "Applies nothing.", accepts=("gradient",))]

    @hookimpl
    def paralab_losses(self):
        return [LossSpec("counting", CountingTerm, "Counts its calls.")]

    @hookimpl
    def paralab_middleware(self):
        return [MiddlewareSpec("noise", Noise, "Would add noise to updates.")]


@pytest.fixture(scope="module")
def ignoring():
    return isolated_registry(("paralab_tiny", TinyDataPlugin()), ("ignoring", IgnoringPlugin()))


def test_loss_terms_under_a_protocol_that_applies_none_are_spec_errors(ignoring, tmp_path):
    with pytest.raises(SpecError) as caught:
        paralab.run(tiny(protocol="ignores", losses=["counting"], output=str(tmp_path)),
                    registry=ignoring)
    (problem,) = caught.value.problems
    assert problem.startswith("losses[0] = 'counting': protocol 'ignores' (ignoring) adds no "
                              "loss terms")
    assert "protocols that apply loss terms: supervised (paralab)" in problem
    assert not any(tmp_path.iterdir())
    CountingTerm.calls = 0
    paralab.run(tiny(losses=["counting"]), registry=ignoring)
    assert CountingTerm.calls > 0, "under supervised the same loss term acts"


def test_middleware_under_a_protocol_that_never_calls_its_hooks_is_a_spec_error(ignoring):
    with pytest.raises(SpecError) as caught:
        paralab.run(tiny(middleware=["noise"]), registry=ignoring)
    (problem,) = caught.value.problems
    assert problem.startswith("middleware[0] = 'noise': middleware 'noise' (ignoring) acts "
                              "through paralab_process_update, which protocol 'supervised' "
                              "(paralab) never calls")


def test_a_model_under_a_protocol_that_uses_none_is_a_spec_error():
    registry = paralab.get_registry()
    if "kernel" not in registry.components["protocol"]:
        pytest.skip("the quantum plugin is not installed")
    spec = paralab.ExperimentSpec(dataset="iris", model="mlp", protocol="kernel", method="svc")
    with pytest.raises(SpecError, match="model.name = 'mlp': protocol 'kernel'"):
        spec.validate(registry)


def test_a_method_that_applies_no_loss_terms_is_rejected_with_them(ignoring):
    class Adapter(paralab.OptimizerMethod):
        def make_optimizer(self, parameters):
            return torch.optim.SGD(parameters, lr=self.lr)

    class AdapterPlugin:
        PARALAB_API = "1.0"

        @hookimpl
        def paralab_methods(self):
            return [MethodSpec("adapter", Adapter, "Trains in another library's loop.",
                               {"lr": 0.05, "weight_decay": 0.0}, family="gradient",
                               applies_losses=False)]

    registry = isolated_registry(("paralab_tiny", TinyDataPlugin()), ("ignoring", IgnoringPlugin()),
                                 ("adapter", AdapterPlugin()))
    with pytest.raises(SpecError, match="losses\\[0\\] = 'counting': method 'adapter' "
                                        "\\(adapter\\) adds no loss terms"):
        paralab.run(tiny(method="adapter", losses=["counting"]), registry=registry)


# ------------------------------------------------------------------------- declared options


def test_the_spec_reports_every_bad_option_at_once_quoting_the_constraint(tmp_path):
    spec = tiny(method={"name": "sgd", "lr": float("nan"), "momentum": -1},
                protocol={"name": "supervised", "epochs": 0, "batch_size": "32"},
                model={"name": "mlp", "hidden": [16, 0], "activation": "relu6"},
                output=str(tmp_path))
    with pytest.raises(SpecError) as caught:
        paralab.run(spec, registry=isolated_registry(("paralab_tiny", TinyDataPlugin())))
    problems = caught.value.problems
    starts = ["method.lr = nan: must be a finite number", "method.momentum = -1: must be >= 0",
              "protocol.epochs = 0: must be >= 1", "protocol.batch_size = '32': expected int",
              "model.hidden = [16, 0]: entry [1] must be >= 1",
              "model.activation = 'relu6': expected one of 'relu'"]
    for start in starts:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == len(starts)
    assert any("see `paralab show method sgd`" in p for p in problems)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("changes", "start"), [
    ({"eval_batch_size": "x"}, "eval_batch_size = 'x': expected int"),
    ({"eval_batch_size": 0}, "eval_batch_size = 0: must be >= 1"),
    ({"on_nan": "ignore"}, "on_nan = 'ignore': expected one of 'fail', 'warn'"),
])
def test_the_specs_own_settings_are_declared(changes, start):
    with pytest.raises(SpecError) as caught:
        paralab.ExperimentSpec.from_dict(tiny(**changes))
    assert caught.value.problems[0].startswith(start)


def test_a_declaration_that_disagrees_with_its_factory_is_named():
    def factory(lr: float = 0.1, steps: int = 3):
        return None

    spec = MethodSpec("drifted", factory, "x", {"lr": 0.05, "epochs": 1,
                                                "steps": Option(3, ge=5)})
    problems = declaration_problems(spec)
    assert "option 'steps': its default 3 must be >= 5, got 3" in problems
    assert "option 'lr': the spec declares default 0.05, the factory 0.1" in problems
    assert "the spec declares 'epochs', which the factory does not take" in problems


def test_every_bundled_component_declares_options_true_to_its_factory():
    registry = paralab.get_registry()
    wrong = {
        f"{kind} {name} ({spec.provider})": problems
        for kind, specs in registry.components.items()
        for name, spec in specs.items()
        if (problems := declaration_problems(spec))
    }
    assert not wrong, wrong


def test_every_bundled_protocol_declares_its_method_interface():
    from paralab.interfaces import resolve

    for name, spec in paralab.get_registry().components["protocol"].items():
        assert spec.method_interface, f"protocol {name} ({spec.provider}) declares none"
        resolve(spec.method_interface)


# -------------------------------------------------------------------------- numerical health


def test_training_that_diverges_fails_the_run_naming_the_phase_and_keeping_what_finished(
    tmp_path,
):
    registry = isolated_registry(("paralab_tiny", TinyDataPlugin()))
    spec = tiny(method={"name": "sgd", "lr": 1e30}, protocol={"name": "supervised",
                                                              "epochs": 3},
                output=str(tmp_path), name="diverges")
    with pytest.raises(RunError) as caught:
        paralab.run(spec, registry=registry)
    result = caught.value.result
    assert result.status == "failed"
    assert result.error["type"] == "NumericalError"
    assert result.error["component"] == "sgd" and result.error["stage"] == "method"
    assert result.error["phase"] == {"kind": "epoch", "index": 0}
    assert "training diverged in epoch 0" in str(caught.value)
    assert "method.lr = 1e+30" in str(caught.value)
    saved = paralab.Result.load(tmp_path / "diverges")
    assert saved.status == "failed" and saved.phases[0]["info"]["numerical_error"]


def test_on_nan_warn_keeps_running_and_says_so():
    registry = isolated_registry(("paralab_tiny", TinyDataPlugin()))
    spec = tiny(method={"name": "sgd", "lr": 1e30}, on_nan="warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = paralab.run(spec, registry=registry)
    assert result.status == "completed"
    assert any(issubclass(w.category, NumericalWarning) for w in caught)
    assert "training diverged" in result.phases[0]["info"]["numerical_warning"]


def test_healthy_runs_are_untouched():
    registry = isolated_registry(("paralab_tiny", TinyDataPlugin()))
    result = paralab.run(tiny(), registry=registry)
    assert result.status == "completed"
    assert all("numerical_warning" not in phase["info"] for phase in result.phases)


# --------------------------------------------------------------------------- per-run middleware


class Scale(paralab.Middleware):
    def __init__(self, factor: float = 2.0) -> None:
        self.factor = factor

    @hookimpl(wrapper=True)
    def paralab_process_update(self, run, update):
        update = yield
        return update.replace(delta={k: v * self.factor for k, v in update.delta.items()})


class SlowProbe(paralab.Protocol):
    """Sends updates while another run does the same, checking who scales them."""

    def __init__(self, wait: float = 0.0) -> None:
        self.wait = wait

    def execute(self, run):
        import time

        with run.phase("round", 0):
            values = []
            for _ in range(5):
                update = run.process_update(paralab.Update(delta={"w": torch.ones(1)}))
                values.append(float(update.delta["w"][0]))
                time.sleep(self.wait)
            run.record("w", values)


class ThreadPlugin:
    PARALAB_API = "1.0"

    @hookimpl
    def paralab_middleware(self):
        return [MiddlewareSpec("scale", Scale, "Scales updates.", {"factor": 2.0})]

    @hookimpl
    def paralab_protocols(self):
        return [ProtocolSpec("slow_probe", SlowProbe, "Sends updates.", {"wait": 0.0},
                             accepts=("gradient",),
                             middleware_hooks=("paralab_process_update",))]


def test_two_runs_in_one_process_never_see_each_others_middleware():
    registry = isolated_registry(("paralab_tiny", TinyDataPlugin()), ("threads", ThreadPlugin()))
    plugins_before = list(registry.pm.get_plugins())
    results: dict[float, list[float]] = {}

    def one(factor: float) -> None:
        spec = tiny(protocol={"name": "slow_probe", "wait": 0.01},
                    middleware=[{"name": "scale", "factor": factor}])
        results[factor] = paralab.run(spec, registry=registry).metrics["w"]

    threads = [threading.Thread(target=one, args=(factor,)) for factor in (3.0, 7.0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {3.0: [3.0] * 5, 7.0: [7.0] * 5}
    assert list(registry.pm.get_plugins()) == plugins_before, "the process manager is unchanged"


# ----------------------------------------------------------------------------- public API


def _paralab_imports(path: Path) -> list[tuple[int, str, str]]:
    """``(line, module, name)`` of every paralab import in a file (TYPE_CHECKING ones too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and (
            node.module == "paralab" or node.module.startswith("paralab.")
        ):
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, "") for alias in node.names
                      if alias.name == "paralab" or alias.name.startswith("paralab.")]
    return found


def test_bundled_plugins_import_only_the_public_api():
    public = set(paralab.__all__)
    roots = [REPOSITORY / "plugins", REPOSITORY / "examples" / "paralab-hello"]
    wrong = [
        f"{path.relative_to(REPOSITORY)}:{line}: {module} {name}".rstrip()
        for root in roots
        for path in sorted(root.rglob("*.py"))
        for line, module, name in _paralab_imports(path)
        if module != "paralab" or (name and name not in public)
    ]
    assert not wrong, "import these from `paralab` (and list them in paralab.__all__):\n" + (
        "\n".join(wrong))


def test_every_public_name_resolves():
    for name in paralab.__all__:
        assert getattr(paralab, name) is not None, name


def test_a_model_that_does_not_fit_the_data_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="model: model 'cnn' \\(paralab\\): cnn: dataset 'iris' "
                                        "has inputs of shape \\(4,\\)"):
        paralab.run({"dataset": "iris", "model": "cnn", "output": str(tmp_path)})
    assert not any(tmp_path.iterdir())


class Raises(paralab.Middleware):
    @hookimpl(wrapper=True)
    def paralab_process_update(self, run, update):
        yield
        raise RuntimeError("the middleware broke")


class RaisingPlugin(ThreadPlugin):
    @hookimpl
    def paralab_middleware(self):
        return [MiddlewareSpec("scale", Scale, "Scales updates.", {"factor": 2.0}),
                MiddlewareSpec("raises", Raises, "Raises on every update.")]


def test_a_raising_middleware_is_named_whichever_protocol_calls_it():
    registry = isolated_registry(("paralab_tiny", TinyDataPlugin()), ("raising", RaisingPlugin()))
    spec = tiny(protocol="slow_probe", middleware=[{"name": "scale"}, {"name": "raises"}])
    with pytest.raises(RunError, match="failed in middleware 'raises': RuntimeError: the "
                                       "middleware broke") as caught:
        paralab.run(spec, registry=registry)
    assert caught.value.result.error["component"] == "raises"
    assert caught.value.result.error["stage"] == "middleware"
