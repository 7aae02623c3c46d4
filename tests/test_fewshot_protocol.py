"""The episodic protocol end to end through paralab.run: learning, evaluation, bad input."""

from __future__ import annotations

import pytest
import torch

import paralab
from paralab import AuditorSpec, LossSpec, hookimpl
from tests.fewshot_helpers import digits_spec, fewshot_registry

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest

CHANCE = 1 / 3


@pytest.fixture(scope="module")
def registry():
    return fewshot_registry()


@pytest.mark.parametrize(
    ("method", "minimum"),
    [
        ("protonet", 0.55),
        ({"name": "maml", "inner_lr": 0.4, "inner_steps": 1}, 0.45),
        ({"name": "fomaml", "inner_lr": 0.4}, 0.4),
        ({"name": "anil", "inner_lr": 0.4}, 0.4),
        ({"name": "reptile", "inner_steps": 2}, 0.4),
        ({"name": "finetune", "head_steps": 30}, 0.45),
    ],
)
def test_each_method_learns_digits_episodes_above_chance(registry, method, minimum):
    result = paralab.run(digits_spec(method), registry=registry)
    metrics = result.metrics
    assert result.status == "completed"
    assert result.main_metric == "meta_test/accuracy"
    assert metrics["meta_test/episodes"] == 100
    assert metrics["meta_test/accuracy"] > minimum > CHANCE
    assert 0 < metrics["meta_test/ci95"] < 0.05
    # the shared engine computed the spec's metrics (accuracy, loss) on the query predictions
    test_phase = result.phases[-1]["metrics"]
    assert 0 < test_phase["meta_test/loss"] < 5
    assert test_phase["meta_test/accuracy"] == metrics["meta_test/accuracy"]
    kinds = [(phase["kind"], phase["index"]) for phase in result.phases]
    assert kinds == [("meta_batch", 0), ("meta_batch", 1), ("meta_test", 0)]
    assert result.phases[0]["info"]["steps"] == [0, 10]
    assert "meta_val/accuracy" in result.phases[1]["metrics"]


def test_default_meta_test_is_600_episodes_with_a_95_percent_interval(registry):
    spec = digits_spec("protonet", eval_episodes=600, meta_iterations=10, val_episodes=0)
    result = paralab.run(spec, registry=registry)
    metrics = result.metrics
    assert metrics["meta_test/episodes"] == 600
    # the interval narrows with more episodes: 1.96 * std / sqrt(600) of per-episode accuracy
    assert 0.003 < metrics["meta_test/ci95"] < 0.03
    assert "meta_val/accuracy" not in metrics


def test_same_seed_same_numbers_other_seed_other_numbers(registry):
    spec = digits_spec(
        "protonet", meta_iterations=4, eval_every=4, eval_episodes=50, val_episodes=0
    )
    first = paralab.run(spec, registry=registry).metrics["meta_test/accuracy"]
    again = paralab.run(spec, registry=registry).metrics["meta_test/accuracy"]
    other = paralab.run({**spec, "seed": 1}, registry=registry).metrics["meta_test/accuracy"]
    assert first == again
    assert other != first


def test_every_method_is_scored_on_the_same_test_episodes(registry):
    seen: dict[str, torch.Tensor] = {}

    class QueryRecorder:
        def audit(self, run, phase, predictions):
            if predictions.split == "meta_test":
                seen[run.spec.method.name] = predictions.indices.clone()
                return {"queries": len(predictions)}
            return {}

    class AuditPlugin:
        PARALAB_API = "1.0"

        @hookimpl
        def paralab_auditors(self):
            return [AuditorSpec("query_recorder", lambda: QueryRecorder(), "records queries")]

    registry = fewshot_registry(("fewshot_test_auditor", AuditPlugin()))
    for method in ("protonet", "fomaml"):
        spec = digits_spec(
            method, meta_iterations=2, eval_every=2, eval_episodes=30, val_episodes=0
        )
        result = paralab.run({**spec, "auditors": ["query_recorder"]}, registry=registry)
        assert result.phases[-1]["audits"]["query_recorder/meta_test"] == {"queries": 30 * 3 * 5}
    assert torch.equal(seen["protonet"], seen["fomaml"])


def test_a_loss_term_from_another_plugin_applies_to_the_query_predictions(registry):
    calls: list[tuple[int, ...]] = []

    def logit_penalty(batch):
        calls.append(tuple(batch.logits.shape))
        return 10.0 * batch.logits.pow(2).mean()

    class LossPlugin:
        PARALAB_API = "1.0"

        @hookimpl
        def paralab_losses(self):
            return [LossSpec("logit_penalty", lambda: logit_penalty, "penalises large logits")]

    registry = fewshot_registry(("fewshot_test_loss", LossPlugin()))
    spec = digits_spec(
        {"name": "maml", "inner_steps": 1},
        meta_iterations=3,
        eval_every=3,
        eval_episodes=20,
        val_episodes=0,
        meta_batch=4,
    )
    plain = paralab.run(spec, registry=registry)
    penalised = paralab.run({**spec, "losses": ["logit_penalty"]}, registry=registry)
    assert calls == [(4 * 3 * 5, 3)] * 3  # every outer step, on all query logits of 4 tasks
    assert (
        penalised.phases[0]["metrics"]["meta_train/loss"]
        > plain.phases[0]["metrics"]["meta_train/loss"]
    )


@pytest.mark.parametrize(
    ("protocol", "message"),
    [
        ({"ways": 4}, r"ways = 4 but the meta_val classes of dataset 'digits' number 3"),
        ({"shots": 100, "queries": 100}, r"shots \+ queries = 100 \+ 100 = 200 but class"),
        ({"class_split": [1.0, 0.0, 0.0]}, r"val_episodes = 20 but the meta_val classes"),
        ({"class_split": [0.9, 0.1, 0.0], "val_episodes": 0}, r"meta_test classes .* are empty"),
        ({"class_split": [0.5, 0.3, 0.3]}, r"class_split = \[0.5, 0.3, 0.3\] sums to 1.1"),
    ],
)
def test_bad_episodes_fail_before_training_with_a_clear_message(registry, protocol, message):
    # checked against the data by Episodic.validate: a spec error naming the protocol (a bad
    # single value, like queries = 0, is refused by the declarations: test_fewshot_options)
    with pytest.raises(
        paralab.SpecError, match=r"protocol: protocol 'episodic' \(paralab_fewshot\)"
    ):
        paralab.run(digits_spec("protonet", **protocol), registry=registry)
    with pytest.raises(paralab.SpecError, match=message):
        paralab.run(digits_spec("protonet", **protocol), registry=registry)


def test_a_model_with_too_few_outputs_is_refused_before_training(registry):
    spec = digits_spec({"name": "maml"}, ways=3)
    spec["model"] = {"name": "conv4", "hidden": 4, "out_features": 2}
    with pytest.raises(
        paralab.SpecError,
        match=r"method: method 'maml' .*the model has 2 outputs but episodes are 3-way",
    ):
        paralab.run(spec, registry=registry)
    spec["method"] = "protonet"  # ProtoNets use the embedding: any head size works
    assert paralab.run(spec, registry=registry).status == "completed"


def test_unknown_option_is_rejected_by_the_spec_with_the_valid_ones():
    registry = fewshot_registry()
    with pytest.raises(paralab.SpecError, match="has no option 'way'.*did you mean 'ways'"):
        paralab.run(digits_spec("protonet", way=3), registry=registry)


def test_the_plugin_is_found_through_its_entry_point():
    from paralab.host import get_registry

    record = get_registry().plugin("paralab_fewshot")
    assert record.status == "active"
    assert "episodic" in get_registry().components["protocol"]
    assert get_registry().components["method"]["maml"].provider == "paralab_fewshot"


@pytest.mark.parametrize("name", ["fewshot_digits_protonet", "fewshot_omniglot_maml"])
def test_example_specs_are_valid(name):
    from pathlib import Path

    from paralab.host import get_registry
    from paralab.spec import ExperimentSpec

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.toml"
    spec = ExperimentSpec.from_toml(path)
    spec.validate(get_registry())
    assert spec.protocol.name == "episodic"
    assert spec.protocol.options["eval_episodes"] >= 600


def test_digits_example_runs_shortened(registry):
    from pathlib import Path

    from paralab.spec import ExperimentSpec

    path = Path(__file__).resolve().parents[1] / "examples" / "fewshot_digits_protonet.toml"
    spec = ExperimentSpec.from_toml(path)
    protocol = {
        **spec.protocol.to_dict(),
        "meta_iterations": 10,
        "eval_every": 10,
        "val_episodes": 10,
        "eval_episodes": 60,
    }
    result = paralab.run(
        spec.replace(protocol=protocol, output=None, device="cpu"), registry=registry
    )
    assert result.metrics["meta_test/accuracy"] > CHANCE


def test_meta_test_evaluates_the_best_on_validation_model() -> None:
    """select = auto (the default with meta-validation) evaluates the phase whose
    meta-validation accuracy was best (the earliest of ties); select = last the final one."""
    spec = digits_spec("protonet", meta_iterations=40, eval_every=8, val_episodes=30)
    best = paralab.run(spec)
    validation = [p["metrics"]["meta_val/accuracy"] for p in best.phases
                  if p["kind"] == "meta_batch"]
    chosen = best.metrics["meta_val/selected_phase"]
    assert chosen == validation.index(max(validation))
    assert best.metrics["meta_val/selected_accuracy"] == max(validation)
    last = paralab.run({**spec, "protocol": {**spec["protocol"], "select": "last"}})
    assert "meta_val/selected_phase" not in last.metrics
    if chosen != len(validation) - 1:  # another model was tested
        assert best.metrics["meta_test/accuracy"] != last.metrics["meta_test/accuracy"]
    with pytest.raises(paralab.SpecError, match=r"select = 'best_val' .* val_episodes = 0"):
        paralab.run({**spec, "protocol": {**spec["protocol"], "select": "best_val",
                                          "val_episodes": 0}})


def test_the_outer_learning_rate_halves_on_schedule_alone_and_stacked() -> None:
    spec = digits_spec({"name": "protonet", "meta_lr": 0.004}, meta_iterations=20,
                       eval_every=10, lr_halving_every=5, val_episodes=0)
    result = paralab.run(spec)
    lrs = [p["metrics"]["meta_train/lr"] for p in result.phases if p["kind"] == "meta_batch"]
    assert lrs == [0.004 / 2, 0.004 / 8]  # halved before steps 5; 10 and 15
    constant = paralab.run({**spec, "protocol": {**spec["protocol"], "lr_halving_every": 0}})
    assert "meta_train/lr" not in constant.phases[0]["metrics"]
    assert constant.metrics["meta_test/accuracy"] != result.metrics["meta_test/accuracy"]
    stacked = paralab.run_seeds(spec, [0, 1])
    assert stacked[0].provenance["seed_axis"]["stacked"] == 2
    separate = paralab.run_seeds(spec, [0, 1], vectorize=False)
    for a, b in zip(stacked, separate):
        assert [p["metrics"]["meta_train/lr"] for p in a.phases if p["kind"] == "meta_batch"] \
            == lrs
        losses = [(p["metrics"]["meta_train/loss"], q["metrics"]["meta_train/loss"])
                  for p, q in zip(a.phases, b.phases) if p["kind"] == "meta_batch"]
        assert losses[0][0] == pytest.approx(losses[0][1], rel=1e-5)  # after the first phase


def test_a_halving_schedule_longer_than_the_run_is_refused() -> None:
    spec = digits_spec("protonet", meta_iterations=20, eval_every=10, lr_halving_every=20)
    with pytest.raises(paralab.SpecError, match=r"lr_halving_every = 20 but meta_iterations = "
                                                r"20: the learning rate would never be halved"):
        paralab.run(spec)
