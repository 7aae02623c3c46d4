"""Avalanche strategies on a paralab stream, and Avalanche's own metrics beside paralab's on
the same trained model at the same points."""

from __future__ import annotations

import pytest
import torch

import paralab
from paralab_continual.avalanche_adapter import UNSUPPORTED
from tests.continual_helpers import continual_spec, small_continual_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


def test_avalanche_metrics_equal_paralabs_on_the_same_model():
    method = {"name": "avalanche", "strategy": "Naive", "avalanche_metrics": True}
    result = paralab.run(continual_spec(method, experiences=4, epochs=2))
    metrics = result.metrics
    # Avalanche evaluated the same model on the same test views after each experience.
    for phase in result.phases[1:]:
        ours = phase["metrics"]["accuracy_matrix_row"]
        theirs = phase["metrics"]["avalanche/experience_accuracy"]
        assert theirs == pytest.approx(ours, abs=1e-6)
    assert metrics["avalanche/forgetting"] == pytest.approx(metrics["forgetting"], abs=1e-6)
    assert metrics["avalanche/backward_transfer"] == pytest.approx(
        metrics["backward_transfer"], abs=1e-6
    )
    assert metrics["avalanche/forward_transfer"] == pytest.approx(
        metrics["forward_transfer"], abs=1e-6
    )
    # And it did learn, then forget: class-incremental fine-tuning.
    assert metrics["forgetting"] > 0.5


@pytest.mark.parametrize(
    ("strategy", "options"),
    [
        ("EWC", {"ewc_lambda": 10.0}),
        ("Replay", {"mem_size": 200}),
        ("LwF", {"alpha": 1.0, "temperature": 2.0}),
        ("GEM", {"patterns_per_exp": 20}),
    ],
)
def test_avalanche_strategies_run_on_a_paralab_stream(strategy, options):
    method = {"name": "avalanche", "strategy": strategy, "strategy_options": options}
    result = paralab.run(continual_spec(method, experiences=3))
    assert result.status == "completed"
    matrix = result.metrics["accuracy_matrix"]
    assert len(matrix) == 3
    assert matrix[2][2] > 0.5  # it trained on the last experience


def test_avalanche_si_is_refused_on_the_cpu_where_it_does_nothing(tmp_path):
    """Avalanche 0.6's SI stores its weight snapshots as views of the live CPU parameters, so it
    measures no change, no importance and no penalty: a run would report SI and train naive."""
    import avalanche.training.plugins.synaptic_intelligence as si

    parameter = torch.nn.Parameter(torch.ones(3))
    snapshot = si.ParamData("w", parameter.flatten().shape)
    si.SynapticIntelligencePlugin.extract_weights(
        torch.nn.ParameterDict({"w": parameter}), {"w": snapshot}, set())
    with torch.no_grad():
        parameter.add_(1.0)
    # The cause, in Avalanche itself: the "old" weights moved with the parameter. When this
    # fails, Avalanche copies its snapshots and the refusal below can be lifted.
    assert torch.equal(snapshot.data, parameter.detach())
    spec = continual_spec({"name": "avalanche", "strategy": "SI",
                           "strategy_options": {"si_lambda": 1000.0}})
    spec["output"] = str(tmp_path)
    with pytest.raises(paralab.SpecError, match=r"'SI' is a no-op on the CPU.*native method 'si'"):
        paralab.run(spec)
    assert list(tmp_path.iterdir()) == []


def test_avalanche_replay_remembers_more_than_naive():
    naive = paralab.run(continual_spec({"name": "avalanche", "strategy": "Naive"}))
    replay = paralab.run(
        continual_spec(
            {"name": "avalanche", "strategy": "Replay", "strategy_options": {"mem_size": 200}}
        )
    )
    assert replay.metrics["average_accuracy"] > naive.metrics["average_accuracy"] + 0.08


def test_unknown_strategy_and_option_are_spec_errors(tmp_path):
    """The strategy is a declared choice; strategy_options are checked against the installed
    strategy's constructor in the protocol's validate(run): both before any folder exists."""
    spec = continual_spec({"name": "avalanche", "strategy": "Nieve"})
    spec["output"] = str(tmp_path)
    with pytest.raises(paralab.SpecError, match=r"method.strategy = 'Nieve'.*did you mean 'Naive'"):
        paralab.run(spec)
    spec["method"] = {"name": "avalanche", "strategy": "EWC", "strategy_options": {"lambda": 1.0}}
    with pytest.raises(paralab.SpecError, match=r"strategy_options \['lambda'\] are not arguments"):
        paralab.run(spec)
    assert list(tmp_path.iterdir()) == []


def test_declared_strategies_are_the_installed_avalanches():
    """The declared choices of `strategy` are avalanche.training's supervised strategies."""
    import inspect

    import avalanche.training as training
    from avalanche.training.templates import SupervisedTemplate

    from paralab_continual import AVALANCHE_STRATEGIES
    from paralab_continual.avalanche_adapter import ALIASES

    installed = {
        name for name, value in vars(training).items()
        if inspect.isclass(value) and issubclass(value, SupervisedTemplate)
        and value is not SupervisedTemplate
    }
    assert set(AVALANCHE_STRATEGIES) == installed | set(ALIASES)


@pytest.mark.parametrize(
    ("strategy", "options", "learned"),
    [
        ("ICaRL", {"memory_size": 100}, 0.5),
        ("GDumb", {"mem_size": 100}, 0.0),  # 3 epochs on 100 rows: see the GDumb test below
        ("FromScratchTraining", {}, 0.3),
        ("GenerativeReplay", {}, 0.0),  # a 2-d VAE of Avalanche's default: a weak replay
    ],
)
def test_strategies_that_crashed_or_replaced_the_model_now_run_and_are_evaluated_as_avalanche(
        strategy, options, learned):
    """ICaRL (NCM classifier over a split model), GDumb and FromScratchTraining (which put a
    copy of the initial model in ``strategy.model``) and GenerativeReplay (a VAE sized to the
    inputs) run, and paralab's accuracy of every experience after every experience is
    Avalanche's own evaluation of its model: no stale or wrong model is evaluated."""
    method = {"name": "avalanche", "strategy": strategy, "strategy_options": options,
              "avalanche_metrics": True}
    result = paralab.run(small_continual_spec(method, epochs=3))
    assert result.status == "completed"
    for phase in result.phases[1:]:
        ours = phase["metrics"]["accuracy_matrix_row"]
        theirs = phase["metrics"]["avalanche/experience_accuracy"]
        assert theirs == pytest.approx(ours, abs=1e-6)
    matrix = result.metrics["accuracy_matrix"]
    # The final model knows classes it met only after the first experience.
    assert max(matrix[-1][1:]) >= learned


def test_gdumb_through_the_adapter_evaluates_the_retrained_model():
    """GDumb retrains a copy of the initial model each experience: before the fix paralab
    evaluated the model as it was after the first experience, so its later rows of R were
    the first row's accuracies on the old classes and chance elsewhere."""
    method = {"name": "avalanche", "strategy": "GDumb", "strategy_options": {"mem_size": 150}}
    result = paralab.run(small_continual_spec(method, epochs=10))
    matrix = result.metrics["accuracy_matrix"]
    assert matrix[1][1] > 0.3 and matrix[2][1] > 0.3  # not the first experience's model


@pytest.mark.parametrize("strategy", sorted(UNSUPPORTED))
def test_strategies_the_adapter_cannot_run_are_spec_errors_naming_them(strategy, tmp_path):
    spec = small_continual_spec({"name": "avalanche", "strategy": strategy})
    spec["output"] = str(tmp_path)
    with pytest.raises(paralab.SpecError,
                       match=rf"strategy '{strategy}' \(avalanche.training.{strategy}\) "
                             r"cannot run through the adapter: \w+"):
        paralab.run(spec)
    assert list(tmp_path.iterdir()) == []


def test_missing_required_arguments_and_icarl_outside_class_il_are_spec_errors(monkeypatch):
    spec = small_continual_spec({"name": "avalanche", "strategy": "ICaRL"},
                                scenario="task_incremental")
    with pytest.raises(paralab.SpecError, match=r"ICaRL learns new classes.*'task_incremental'"):
        paralab.run(spec)
    from paralab_continual import avalanche_adapter

    monkeypatch.setitem(avalanche_adapter.REQUIRED_DEFAULTS, "MIR", {})
    with pytest.raises(paralab.SpecError,
                       match=r"avalanche.training.MIR needs \['mem_size', 'subsample'\]"):
        paralab.run(small_continual_spec({"name": "avalanche", "strategy": "MIR"}))


def test_icarl_needs_a_model_it_can_split():
    import torch

    from paralab_continual.icarl import split_model
    from paralab_continual.scenarios import ScenarioError

    features, head = split_model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)),
                                 "x")
    assert isinstance(head, torch.nn.Linear) and isinstance(features[0], torch.nn.Flatten)
    with pytest.raises(ScenarioError, match=r"who: needs .*nn.Sequential ending in an nn.Linear"):
        split_model(torch.nn.Linear(4, 2), "who")
