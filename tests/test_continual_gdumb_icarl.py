"""GDumb and iCaRL, native: against Avalanche's GDumb and ICaRL on the same stream, iCaRL's
herding, class means and loss against Avalanche's own code on the same model, and what GDumb
does that a no-op would not (restart from the initial weights, train on the memory alone)."""

from __future__ import annotations

import statistics
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import paralab
from paralab import MethodSpec, hookimpl
from paralab.testing import isolated_registry
from paralab.testing.kit import use_registry
from tests.continual_helpers import continual_spec, small_continual_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


def _with_reader(reader: type, method: dict[str, Any], **protocol: Any) -> paralab.Result:
    import paralab_continual

    class Plugin:
        PARALAB_API = "1.0"

        @hookimpl
        def paralab_methods(self) -> list[MethodSpec]:
            return [MethodSpec("reader", reader, "Reads a strategy.", family="continual_plugin")]

    registry = isolated_registry(("paralab_continual", paralab_continual), ("reader", Plugin()))
    with use_registry(registry):
        result = paralab.run(small_continual_spec({**method, "plugins": [{"name": "reader"}]},
                                                  **protocol), registry=registry)
    assert result.status == "completed", result.error
    return result


def _spec(method: dict[str, Any], seed: int) -> dict[str, Any]:
    spec = continual_spec({"lr": 0.05, **method}, epochs=3, plot=False)
    spec["seed"] = seed
    return spec


def _means(method: dict[str, Any], seeds: range) -> list[float]:
    return [paralab.run(_spec(method, seed)).metrics["average_accuracy"] for seed in seeds]


# ---------------------------------------------------------------------------------- GDumb


class _GDumbReader:
    """After gdumb: the weights each experience starts from and the rows it trains on."""

    name = "reader"
    seen: list[dict[str, Any]] = []

    def setup(self, strategy: Any, run: Any, model: torch.nn.Module) -> None:
        type(self).initial = [p.detach().clone() for p in model.parameters()]
        type(self).seen = []

    def before_experience(self, strategy: Any, run: Any, experience: Any) -> None:
        type(self).seen.append({"start": [p.detach().clone() for p in strategy.parameters],
                                "buffer": strategy.plugin.buffer.indices.clone(), "rows": []})

    def augment(self, strategy: Any, run: Any, x: Any, y: Any, rows: Any, ids: Any) -> Any:
        type(self).seen[-1]["rows"].append(rows.clone())
        return x, y, rows, ids


def test_gdumb_restarts_from_the_initial_weights_and_trains_on_the_memory_alone():
    result = _with_reader(_GDumbReader, {"name": "gdumb", "buffer_size": 90}, epochs=2)
    seen = _GDumbReader.seen
    assert len(seen) == 3
    for entry in seen:
        for start, initial in zip(entry["start"], _GDumbReader.initial):
            assert torch.equal(start, initial)  # every experience restarts
        trained = torch.cat(entry["rows"])
        # Two epochs over exactly the memory's rows, nothing of the stream outside it.
        assert sorted(trained.tolist()) == sorted(entry["buffer"].tolist() * 2)
    assert len(seen[0]["buffer"]) == 90 and len(seen[-1]["buffer"]) == 90
    naive = paralab.run(small_continual_spec({"name": "naive"}, epochs=2)).metrics
    # The first experience's classes are still known (the memory), unlike fine-tuning's.
    assert result.metrics["accuracy_matrix"][-1][0] > naive["accuracy_matrix"][-1][0] + 0.05


def test_gdumb_against_avalanches_gdumb_on_the_same_stream():
    """Same stream, model, initial weights, epochs, batch size and memory; the memory's samples
    and minibatch orders differ (Avalanche draws from torch's global generator), so means over
    seeds are compared. Measured 2026-12-02, seeds 0-2: paralab 0.282, 0.245, 0.211 (mean
    0.246), Avalanche 0.268, 0.220, 0.263 (mean 0.250)."""
    pytest.importorskip("avalanche")
    ours = _means({"name": "gdumb", "buffer_size": 200}, range(3))
    theirs = _means({"name": "avalanche", "strategy": "GDumb",
                     "strategy_options": {"mem_size": 200}}, range(3))
    assert abs(statistics.mean(ours) - statistics.mean(theirs)) < 0.04, (ours, theirs)


def test_gdumb_memory_larger_than_the_stream_is_a_spec_error():
    with pytest.raises(paralab.SpecError, match=r"method 'gdumb': buffer_size = 100000"):
        paralab.run(small_continual_spec({"name": "gdumb", "buffer_size": 100000}))


# ---------------------------------------------------------------------------------- iCaRL


class _AvalancheICaRL:
    """Listed after icarl: after each experience, Avalanche's own iCaRL plugin selects the
    exemplars and computes the class means from the same model and rows; both are kept."""

    name = "reader"
    seen: list[dict[str, Any]] = []

    def setup(self, strategy: Any, run: Any, model: torch.nn.Module) -> None:
        from avalanche.training.supervised.icarl import _ICaRLPlugin

        self.avalanche = _ICaRLPlugin(strategy.plugin.memory_size, None, True)
        type(self).seen = []

    @torch.no_grad()
    def after_experience(self, strategy: Any, run: Any, experience: Any) -> None:
        from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
        from avalanche.models import NCMClassifier

        from paralab_continual.icarl import split_model
        from paralab_continual.rows import gather

        stream = strategy.stream.experiences
        x, y = gather(run.dataset, strategy.stream, experience.train,
                      torch.full_like(experience.train, experience.index))
        dataset = _make_taskaware_tensor_classification_dataset(
            x, y, task_labels=0, targets=y.tolist())
        features, _ = split_model(run.model, "test")
        stand_in = SimpleNamespace(
            clock=SimpleNamespace(train_exp_counter=experience.index),
            experience=SimpleNamespace(dataset=dataset, benchmark=SimpleNamespace(
                n_classes_per_exp=[len(e.classes) for e in stream],
                classes_order=[c for e in stream for c in e.classes])),
            eval_mb_size=10_000, device="cpu",
            model=SimpleNamespace(feature_extractor=features,
                                  eval_classifier=NCMClassifier(normalize=True)))
        plugin = self.avalanche
        plugin.embedding_size = features(x[:1]).shape[1]
        run.model.eval()
        plugin.before_training_exp(stand_in)
        plugin.construct_exemplar_set(stand_in)
        plugin.reduce_exemplar_set(stand_in)
        plugin.compute_class_means(stand_in)
        run.model.train()
        ours = strategy.plugin
        mine_x, _ = gather(run.dataset, strategy.stream, ours.rows, ours.ids)
        type(self).seen.append({
            "theirs": {int(ys[0]): xs.clone() for xs, ys in zip(plugin.x_memory, plugin.y_memory)},
            "ours": {c: mine_x[ours.classes == c] for c in ours.classes.unique().tolist()},
            "their_means": {c: m.clone() for c, m in plugin.class_means.items()},
            "our_means": ours.means.clone(),
        })


def test_icarl_exemplars_and_class_means_equal_avalanches_on_the_same_model():
    """Herding (with the memory's reduction as classes arrive) and the class means, computed
    by Avalanche's ``_ICaRLPlugin`` on the same model and experience: the same exemplars and
    the same means (1e-5)."""
    pytest.importorskip("avalanche")
    _with_reader(_AvalancheICaRL, {"name": "icarl", "memory_size": 60})
    assert len(_AvalancheICaRL.seen) == 3
    for entry in _AvalancheICaRL.seen:
        assert set(entry["ours"]) == set(entry["theirs"])
        for c, theirs in entry["theirs"].items():
            # Avalanche keeps a class's exemplars in dataset order (their herding ranks apart).
            assert sorted(map(tuple, entry["ours"][c].tolist())) == sorted(
                map(tuple, theirs.tolist())), c
            assert torch.allclose(entry["our_means"][c], entry["their_means"][c], atol=1e-5)
    last = _AvalancheICaRL.seen[-1]["ours"]
    assert sum(len(v) for v in last.values()) <= 60 + len(last)  # ceil(60 / 10) each


def test_icarl_loss_equals_avalanches_icarl_loss():
    """The sigmoid cross-entropy with the old classes' targets from the previous model equals
    Avalanche's ``ICaRLLossPlugin`` on the same logits, targets and previous model."""
    pytest.importorskip("avalanche")
    from avalanche.training.losses import ICaRLLossPlugin

    from paralab import Batch
    from paralab_continual.icarl import ICaRLPlugin

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 5))
    teacher = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 5))
    x, y = torch.randn(7, 6), torch.tensor([2, 3, 4, 2, 3, 4, 2])
    ours = ICaRLPlugin(10)
    ours.teacher, ours.old_classes = teacher, [0, 1]
    logits = model(x)
    loss = ours.objective(None, None, None)(Batch(x, y, torch.arange(7), logits, model))
    theirs = ICaRLLossPlugin()
    theirs.old_model, theirs.old_classes = teacher, [0, 1]
    theirs.before_forward(SimpleNamespace(mb_x=x))
    assert float(loss) == pytest.approx(float(theirs(logits, y)), rel=1e-6)
    assert float(loss) != pytest.approx(float(ICaRLLossPlugin()(logits, y)), rel=1e-3)


def test_icarl_against_avalanches_icarl_on_the_same_stream():
    """Same stream, model split, initial weights, epochs, batch size and memory; minibatch
    orders differ, so means over seeds. Measured 2026-12-02, seeds 0-2: paralab 0.856, 0.842,
    0.828 (mean 0.8418), Avalanche 0.856, 0.842, 0.828 (mean 0.8418); naive 0.200."""
    pytest.importorskip("avalanche")
    ours = _means({"name": "icarl", "memory_size": 200}, range(2))
    theirs = _means({"name": "avalanche", "strategy": "ICaRL",
                     "strategy_options": {"memory_size": 200}}, range(2))
    naive = _means({"name": "naive"}, range(1))
    assert abs(statistics.mean(ours) - statistics.mean(theirs)) < 0.02, (ours, theirs)
    assert statistics.mean(ours) > naive[0] + 0.4


def test_icarl_evaluates_by_nearest_mean_not_by_its_head():
    """The recorded R is the nearest-mean classifier's: the head alone scores differently."""
    from paralab_continual.icarl import NearestMeanOfExemplars

    seen: dict[str, Any] = {}

    class Reader:
        name = "reader"

        def after_experience(self, strategy: Any, run: Any, experience: Any) -> None:
            seen["classifier"] = strategy.evaluation_model(run)
            seen["model"] = run.model

    _with_reader(Reader, {"name": "icarl", "memory_size": 60})
    assert isinstance(seen["classifier"], NearestMeanOfExemplars)
    x = torch.randn(50, 64)
    scores = seen["classifier"](x)
    assert bool((scores <= 0).all()) and bool((scores >= -3).all())
    assert not torch.allclose(scores, seen["model"](x))


def test_icarl_outside_class_incremental_is_a_spec_error():
    with pytest.raises(paralab.SpecError, match=r"method 'icarl': iCaRL learns new classes"):
        paralab.run(small_continual_spec({"name": "icarl"}, scenario="task_incremental"))


@pytest.mark.parametrize("method", [{"name": "gdumb", "buffer_size": 60},
                                    {"name": "icarl", "memory_size": 60},
                                    {"name": "bic", "memory_size": 60}])
def test_gdumb_icarl_and_bic_resume_to_the_uninterrupted_run(method, tmp_path):
    """Their memories, GDumb's initial weights, iCaRL's class means and previous model, BiC's
    correction and teacher are in the checkpoint: a run stopped after experience 1 resumes to
    the same R."""
    from pathlib import Path

    from paralab import host
    from paralab_registry import LoadSettings

    spec = {**small_continual_spec(method), "checkpoint_every": 1}
    reference = paralab.run({**spec, "output": str(tmp_path / "a")})

    class Stop:
        PARALAB_API = "1.0"

        @hookimpl
        def paralab_after_phase(self, run: Any, phase: Any) -> None:
            if phase.kind == "experience" and phase.index == 1:
                raise KeyboardInterrupt

    registry = host.make_registry(LoadSettings()).load()
    registry.add("stop", Stop())
    with pytest.raises(KeyboardInterrupt) as caught:
        paralab.run({**spec, "output": str(tmp_path / "b")}, registry=registry)
    resumed = paralab.resume(Path(caught.value.result.path))
    assert resumed.metrics["accuracy_matrix"] == reference.metrics["accuracy_matrix"]
