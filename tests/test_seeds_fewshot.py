"""The seed axis of the ``episodic`` protocol: stacked ProtoNet and (FO)MAML seeds.

Per seed, a stacked run must be the seed's separate run (``vectorize=False``): the same
episodes (drawn from its own generators), phases, evaluations and weights.

Tolerances, measured here (digits, 1 torch thread): after the first phase every weight is
within ~6e-8 of the separate run's for Conv-4, ~1.2e-6 for the ProtoNet on the MLP's outputs
(grouped convolutions, batched ``cdist`` and ``vmap`` over seeds sum in another order, and
Adam divides small gradients by their own size), except the **convolution biases that feed a**
:class:`BatchStatNorm2d`. Their true gradient is exactly 0 (the norm subtracts any constant
per channel), so what the backward pass gives them is rounding noise (~1e-9), and Adam's first
steps move each such element by up to ``meta_lr`` on the sign of that noise: stacked and
separate runs differ there by up to ``2 * meta_lr`` per step (each moves by up to ~``meta_lr``;
measured 4e-3 to 1.3e-2 after 10
steps at ``meta_lr = 1e-3``). Those biases do not change the function (in exact arithmetic not
at all; in floats by rounding), so they are compared against that bound, every other weight
at ``atol = 1e-5``, losses at ``rel = 1e-5`` and accuracies equal.
"""

from __future__ import annotations

import statistics
from typing import Any

import pytest
import torch
from torch import nn

import paralab
from paralab import DatasetInfo, run_seeds
from paralab.stacked import CHANNELS, StackedModel, Unstackable, why_not_stacked
from paralab_fewshot.models import BatchStatNorm2d, conv4, embed_episodes, episode_rows
from tests.seed_helpers import assert_runs_one_after_another, with_a_failing_seed

pytestmark = pytest.mark.usefixtures("one_torch_thread")

META_LR = 1e-3


def spec(method: dict[str, Any], model: dict[str, Any] | None = None,
         **protocol: Any) -> dict[str, Any]:
    options = {"name": "episodic", "ways": 3, "shots": 1, "queries": 5, "meta_batch": 4,
               "meta_iterations": 10, "eval_every": 10, "val_episodes": 10,
               "eval_episodes": 50, "eval_meta_batch": 25, "class_split": [0.4, 0.3, 0.3],
               **protocol}
    return {"name": "seeds-fewshot", "dataset": "digits", "device": "cpu", "output": None,
            "model": model or {"name": "conv4", "hidden": 8, "layers": 2},
            "protocol": options, "method": {"meta_lr": META_LR, **method}}


def inert_biases(model: nn.Module) -> set[str]:
    """Names of the convolution biases directly followed by a batch-statistics norm."""
    names, previous = set(), None
    for name, module in model.named_children():
        if isinstance(module, BatchStatNorm2d) and previous and isinstance(previous[1], nn.Conv2d):
            names.add(f"{previous[0]}.bias")
        previous = (name, module)
    return names


def assert_equal_runs(stacked: list[paralab.Result], separate: list[paralab.Result],
                      steps: int, inert: set[str] = frozenset()) -> None:
    for a, b in zip(stacked, separate):
        assert a.status == b.status == "completed", (a.error, b.error)
        assert a.provenance["seed_axis"]["why_not"] is None
        assert b.provenance["seed_axis"]["stacked"] == 1
        assert [(p["kind"], p["index"], p["info"]) for p in a.phases] == \
            [(p["kind"], p["index"], p["info"]) for p in b.phases]
        for pa, pb in zip(a.phases, b.phases):
            assert pa["metrics"].keys() == pb["metrics"].keys()
            for key, value in pa["metrics"].items():
                if key.endswith("/accuracy") or key.endswith("/episodes"):
                    assert value == pb["metrics"][key], key
                elif isinstance(value, float):
                    assert value == pytest.approx(pb["metrics"][key], rel=1e-5), key
        loose = inert | inert_biases(a.model)
        sa, sb = a.model.state_dict(), b.model.state_dict()
        for name in sa:
            bound = 2 * META_LR * steps if name in loose else 1e-5
            assert float((sa[name] - sb[name]).abs().max()) <= bound, name


@pytest.mark.parametrize(("method", "model", "inert"), [
    ({"name": "protonet"}, None, set()),
    # The output layer's bias moves every embedding by the same vector, and so does the bias
    # of a hidden unit active on every row of an episode: prototype distances ignore that,
    # so their true gradient is 0 too and Adam moves them on rounding noise (measured up to
    # 1.8e-4 and 1.4e-3 after 10 steps).
    ({"name": "protonet", "embedding": "output"}, {"name": "mlp", "hidden": [32]},
     {"1.bias", "3.bias"}),
    ({"name": "maml", "engine": "vmap", "inner_steps": 2}, None, set()),
    ({"name": "fomaml", "engine": "loop"}, None, set()),
    ({"name": "maml", "engine": "vmap"}, {"name": "mlp", "hidden": [32]}, set()),
], ids=["protonet-conv4", "protonet-output-mlp", "maml-conv4", "fomaml-loop-conv4",
        "maml-mlp"])
def test_stacked_seeds_equal_separate_runs_after_the_first_phase(
        method: dict[str, Any], model: dict[str, Any] | None, inert: set[str]) -> None:
    one = spec(method, model)
    stacked = run_seeds(one, [0, 1, 2])
    assert stacked[0].provenance["seed_axis"]["why_not"] is None
    assert_equal_runs(stacked, run_seeds(one, [0, 1, 2], vectorize=False), 10, inert)


@pytest.mark.parametrize("method", [{"name": "protonet"},
                                    {"name": "maml", "engine": "vmap"}],
                         ids=["protonet", "maml"])
def test_ten_seeds_distribute_as_separate_runs(method: dict[str, Any]) -> None:
    """Two phases: after the first, the inert biases' Adam steps differ (see the module's
    docstring), and later steps carry that rounding on, so the final weights are not
    compared; the meta-test accuracies are (750 queries per seed). Measured: every seed's
    equal, ProtoNet and MAML alike. The bound allows two queries per seed and the samples' mean and
    deviation one and two queries apart: any real difference in what a stacked seed trains
    (another episode, a missed step, another seed's statistics) moves them by far more."""
    one = spec(method, meta_iterations=20, eval_every=10)
    seeds = list(range(10))
    stacked = run_seeds(one, seeds)
    separate = run_seeds(one, seeds, vectorize=False)
    assert all(r.provenance["seed_axis"]["stacked"] == 10 for r in stacked)
    a = [r.metrics["meta_test/accuracy"] for r in stacked]
    b = [r.metrics["meta_test/accuracy"] for r in separate]
    queries = 50 * 3 * 5
    assert all(abs(x - y) <= 2 / queries + 1e-6 for x, y in zip(a, b)), (a, b)
    assert abs(statistics.mean(a) - statistics.mean(b)) <= 1 / queries
    assert abs(statistics.stdev(a) - statistics.stdev(b)) <= 2 / queries
    assert statistics.stdev(a) > 2 / queries  # the seeds do differ: the test can tell


@pytest.mark.parametrize(("method", "model", "why"), [
    ({"name": "reptile", "inner_steps": 1}, None, "Reptile's outer step"),
    ({"name": "anil"}, None, "ANIL's"),
    ({"name": "finetune", "head_steps": 2}, {"name": "conv4", "hidden": 8, "layers": 2,
                                            "out_features": 0}, "finetune pretrains"),
    ({"name": "maml"}, {"name": "mlp", "hidden": [16]}, "factored inner loop"),
    ({"name": "maml", "engine": "vmap"}, {"name": "mlp", "hidden": [16], "dropout": 0.1},
     "Dropout(p=0.1)"),
], ids=["reptile", "anil", "finetune", "maml-factored", "dropout"])
def test_refused_configurations_run_one_after_another(
        method: dict[str, Any], model: dict[str, Any] | None, why: str) -> None:
    one = spec(method, model, meta_iterations=2, eval_every=1, val_episodes=0,
               eval_episodes=6, eval_meta_batch=6)
    assert_runs_one_after_another(one, why, "meta_test/accuracy")


def test_checkpointed_runs_go_one_after_another(tmp_path: Any) -> None:
    one = {**spec({"name": "protonet"}, meta_iterations=2, eval_every=1, val_episodes=0,
                  eval_episodes=6), "checkpoint_every": 1, "output": str(tmp_path)}
    results = run_seeds(one, [0, 1])
    assert all("checkpoint_every" in r.provenance["seed_axis"]["why_not"] for r in results)


def test_the_episodic_protocol_declares_the_seed_axis() -> None:
    protocol = paralab.get_registry().component("protocol", "episodic")
    assert protocol.seed_axis


# --------------------------------------------------------------- the stacked Conv-4 layers


def digits_like(hidden: int = 8, layers: int = 2, size: int = 8) -> list[nn.Module]:
    info = DatasetInfo("x", (1, size, size), 10, size * size, image_shape=(1, size, size))
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(conv4(info, hidden, layers))
    return models


def test_stacked_batch_stat_norm_normalises_each_seed_and_episode_alone() -> None:
    models = digits_like()
    stacked = StackedModel(models)
    x = torch.randn(3, 4, 6, 1, 8, 8)  # (seeds, episodes, rows, image)
    whole = stacked(x.flatten(1, 2))
    for k, model in enumerate(models):  # no episodes: the seed's batch is one batch
        assert torch.allclose(whole[k], model(x[k].flatten(0, 1)), atol=1e-5)
    encoder = stacked.layers[:-1]
    h, layout = x.flatten(1, 2), "rows"
    with episode_rows(6):
        for layer in encoder:
            h, layout = layer.apply(h, layout)
    h = h.reshape(3, 4, 6, -1)
    for k, model in enumerate(models):
        assert torch.allclose(h[k], embed_episodes(model[:-1], x[k]), atol=1e-5)
    g, layout = x.flatten(1, 2), "rows"
    for layer in encoder:  # the same layers without episode_rows: one batch per seed
        g, layout = layer.apply(g, layout)
    assert not torch.allclose(h, g.reshape(3, 4, 6, -1), atol=1e-3)  # the episodes matter


class Doubler(nn.Module):
    """A plugin's module with a stacked form of its own (the extension point)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((4,), 2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def stacked_layer(self, k: int, tensors: dict[str, torch.Tensor], path: str) -> Any:
        scale = tensors[f"{path}.scale"]

        def apply(x: torch.Tensor, layout: str) -> tuple[torch.Tensor, str]:
            if layout == CHANNELS:
                raise Unstackable("Doubler on images")
            return x * scale[:, None, :], layout
        return apply


class Plain(Doubler):
    stacked_layer = None  # type: ignore[assignment]


def test_a_module_with_stacked_layer_supplies_its_stacked_form() -> None:
    models = [nn.Sequential(nn.Linear(3, 4), Doubler()) for _ in range(2)]
    with torch.no_grad():
        models[1][1].scale.fill_(3.0)
    stacked = StackedModel(models)
    x = torch.randn(2, 5, 3)
    out = stacked(x)
    for k, model in enumerate(models):
        assert torch.allclose(out[k], model(x[k]), atol=1e-6)
    out.sum().backward()
    assert stacked.tensors["1.scale"].grad is not None
    assert "Plain, which has no stacked form" in why_not_stacked(nn.Sequential(Plain()))


def test_a_failing_seed_fails_alone_as_its_separate_run_would() -> None:
    one = spec({"name": "protonet"}, meta_iterations=4, eval_every=2)
    stacked, separate = with_a_failing_seed(one, index=0, kind="meta_batch")
    assert [r.status for r in stacked] == [r.status for r in separate] == \
        ["completed", "failed", "completed"]
    assert stacked[1].error["message"] == separate[1].error["message"]
    assert stacked[1].error["phase"] == separate[1].error["phase"]
    assert_equal_runs([stacked[0], stacked[2]], [separate[0], separate[2]], 4)


def test_ten_seeds_of_a_deeper_conv4_distribute_as_separate_runs() -> None:
    """Four Conv-4 blocks on 8x8 digits: the last convolution sees 1x1 maps, and a
    batch-statistics norm after it makes its input's per-channel shift (and scale) inert too,
    so there are many zero-gradient directions for Adam to move on rounding noise, and the
    stacked and separate runs part after a few steps (measured here, 20 steps: per-seed
    meta-test accuracies 0, 0, 0, 0, 0, 1, 0, 3, 9 and 18 of 750 queries apart, means 0.5612
    and 0.5617, deviations 0.056 and 0.057; with hidden 32, up to 23 of 1,500). Per-seed
    equality does not hold; the paired differences must be centred on 0
    (|t| below 3.25, the two-sided 1% point of Student's t with 9 degrees of freedom) and
    the two samples' means closer than a third of the seeds' spread."""
    one = spec({"name": "protonet"}, {"name": "conv4", "hidden": 16, "layers": 4},
               meta_iterations=20, eval_every=10, val_episodes=0)
    seeds = list(range(10))
    a = [r.metrics["meta_test/accuracy"] for r in run_seeds(one, seeds)]
    b = [r.metrics["meta_test/accuracy"] for r in run_seeds(one, seeds, vectorize=False)]
    differences = [x - y for x, y in zip(a, b)]
    spread = statistics.stdev(differences)
    if spread > 0:
        assert abs(statistics.mean(differences)) / (spread / len(seeds) ** 0.5) < 3.25, (a, b)
    assert abs(statistics.mean(a) - statistics.mean(b)) < statistics.stdev(b) / 3, (a, b)
