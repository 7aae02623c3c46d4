"""The vectorised inner loop: equal to a task-by-task loop, and to learn2learn's MAML."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import paralab
from paralab.data import DatasetInfo
from paralab_fewshot.adaptation import TaskMap, adapted_query_logits, model_forward
from paralab_fewshot.episodes import TaskBatch
from paralab_fewshot.methods.finetune import fit_linear_heads
from paralab_fewshot.methods.maml import ANIL, MAML
from paralab_fewshot.methods.protonet import prototype_logits
from paralab_fewshot.models import BatchStatNorm2d, conv4
from tests.fewshot_helpers import digits_spec, fewshot_registry

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest

WAYS, SHOTS, QUERIES = 5, 1, 3


def episode(tasks: int, shape: tuple[int, ...], dtype=torch.float32, seed: int = 0) -> TaskBatch:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(WAYS)
    support_x = torch.randn(tasks, WAYS * SHOTS, *shape, generator=generator, dtype=dtype)
    query_x = torch.randn(tasks, WAYS * QUERIES, *shape, generator=generator, dtype=dtype)
    return TaskBatch(
        support_x=support_x,
        support_y=labels.repeat_interleave(SHOTS).expand(tasks, -1),
        support_indices=torch.zeros(tasks, WAYS * SHOTS, dtype=torch.long),
        query_x=query_x,
        query_y=labels.repeat_interleave(QUERIES).expand(tasks, -1),
        query_indices=torch.zeros(tasks, WAYS * QUERIES, dtype=torch.long),
        ways=WAYS,
    )


def small_conv4(dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    info = DatasetInfo("t", (1, 8, 8), 10, 64, image_shape=(1, 8, 8))
    return conv4(info, hidden=6, layers=3).to(dtype)


def meta_gradients(model: nn.Module, batch: TaskBatch, *, vectorize: bool, first_order: bool):
    model = copy.deepcopy(model)
    logits = adapted_query_logits(
        model_forward(model, WAYS),
        dict(model.named_parameters()),
        batch.support_x,
        batch.support_y,
        batch.query_x,
        steps=2,
        lr=0.4,
        first_order=first_order,
        task_map=TaskMap(vectorize),
    )
    loss = F.cross_entropy(logits.flatten(0, 1), batch.query_y.flatten())
    loss.backward()
    return float(loss.detach()), [p.grad for p in model.parameters()]


@pytest.mark.parametrize("first_order", [False, True])
def test_vmap_over_tasks_equals_a_loop_over_tasks(first_order):
    model, batch = small_conv4(torch.float64), episode(2, (1, 8, 8), torch.float64)
    loss_v, grads_v = meta_gradients(model, batch, vectorize=True, first_order=first_order)
    loss_l, grads_l = meta_gradients(model, batch, vectorize=False, first_order=first_order)
    assert loss_v == pytest.approx(loss_l, abs=1e-12)
    for a, b in zip(grads_v, grads_l):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("first_order", [False, True])
def test_factored_engine_equals_vmap_on_linear_stacks(first_order):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 7)
    ).double()
    batch = episode(3, (12,), torch.float64)
    results = {}
    for engine in ("factored", "vmap"):
        copied = copy.deepcopy(model)
        method = MAML(inner_lr=0.3, inner_steps=3, first_order=first_order, engine=engine)
        method.setup(None, copied, WAYS, batch.support_x[0])
        assert (method.factored is not None) == (engine == "factored")
        logits = method.query_logits(copied, batch, steps=3, first_order=first_order)
        F.cross_entropy(logits.flatten(0, 1), batch.query_y.flatten()).backward()
        results[engine] = (
            logits.detach(),
            [p.grad for p in copied.parameters()],
            method.predict(None, copied, batch),
        )
    factored, vmapped = results["factored"], results["vmap"]
    torch.testing.assert_close(factored[0], vmapped[0], rtol=0, atol=1e-10)
    for a, b in zip(factored[1], vmapped[1]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    torch.testing.assert_close(factored[2], vmapped[2], rtol=0, atol=1e-10)


def test_factored_engine_refuses_models_it_cannot_factor():
    with pytest.raises(ValueError, match="engine = 'factored' needs an nn.Sequential of Linear"):
        MAML(engine="factored").setup(None, small_conv4(), WAYS, torch.randn(2, 1, 8, 8))
    # an unknown engine is refused by the declared choices, before anything is built
    with pytest.raises(paralab.SpecError, match=r"method.engine = 'fast': expected one of"):
        paralab.run(digits_spec({"name": "maml", "engine": "fast"}), registry=fewshot_registry())


def test_second_order_differs_from_first_order():
    model, batch = small_conv4(torch.float64), episode(2, (1, 8, 8), torch.float64)
    _, second = meta_gradients(model, batch, vectorize=True, first_order=False)
    _, first = meta_gradients(model, batch, vectorize=True, first_order=True)
    assert max(float((a - b).abs().max()) for a, b in zip(second, first)) > 1e-4


def test_batch_stat_norm_equals_torch_batch_norm_without_running_stats():
    x = torch.randn(6, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    ours, reference = (
        BatchStatNorm2d(4).double(),
        nn.BatchNorm2d(4, track_running_stats=False).double(),
    )
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.uniform_(-1, 1)
    reference.load_state_dict(ours.state_dict())
    for module in (ours, reference):
        module.eval()  # both use batch statistics in eval mode too
    torch.testing.assert_close(ours(x), reference(x))
    (g1,) = torch.autograd.grad(ours(x).pow(2).sum(), x)
    (g2,) = torch.autograd.grad(reference(x).pow(2).sum(), x)
    torch.testing.assert_close(g1, g2)


def test_conv4_shapes_on_omniglot_and_digits_sized_images():
    omniglot = DatasetInfo("o", (1, 28, 28), 242, 784, image_shape=(1, 28, 28))
    digits = DatasetInfo("d", (64,), 10, 64, image_shape=(1, 8, 8))
    model = conv4(omniglot)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 242)
    assert model[-1].in_features == 64  # 28 -> 14 -> 7 -> 3 -> 1: the 64-d embedding
    assert conv4(digits, out_features=5)(torch.randn(3, 64)).shape == (3, 5)
    with pytest.raises(ValueError, match="conv4: dataset 'x' has inputs of shape"):
        conv4(DatasetInfo("x", (13,), 2, 13))


def test_prototype_logits_are_negative_squared_distances_to_class_means():
    support = torch.randn(2, 6, 4)  # 3 ways x 2 shots, class-major
    query = torch.randn(2, 5, 4)
    logits = prototype_logits(support, query, ways=3)
    prototypes = support.reshape(2, 3, 2, 4).mean(2)
    expected = -((query[:, :, None] - prototypes[:, None]) ** 2).sum(-1)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_linear_heads_fit_separable_support_sets():
    centres = torch.eye(8)[:4] * 3
    support = (centres.repeat_interleave(5, 0) + 0.1 * torch.randn(20, 8)).expand(3, -1, -1)
    labels = torch.arange(4).repeat_interleave(5).expand(3, -1)
    weight, bias = fit_linear_heads(F.normalize(support, dim=-1), labels, 4, steps=50, lr=1.0)
    logits = torch.einsum("tnd,twd->tnw", F.normalize(support, dim=-1), weight) + bias[:, None]
    assert torch.equal(logits.argmax(-1), labels)


def test_anil_adapts_only_the_head():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, WAYS))
    method = ANIL(inner_lr=0.5, inner_steps=3)
    batch = episode(4, (6,))
    method.setup(None, model, WAYS, batch.support_x[0])
    full = MAML(inner_lr=0.5, inner_steps=3)
    full.setup(None, model, WAYS, batch.support_x[0])
    head_only, everything = method.predict(None, model, batch), full.predict(None, model, batch)
    # Same start, different adaptation: ANIL changes the head only, MAML every layer.
    assert not torch.allclose(head_only, everything)
    features = model[:-1](batch.query_x)
    # ANIL's query logits are linear in the unchanged embedding
    solution = torch.linalg.lstsq(
        torch.cat([features, torch.ones(*features.shape[:2], 1)], -1), head_only
    ).solution
    refit = torch.cat([features, torch.ones(*features.shape[:2], 1)], -1) @ solution
    torch.testing.assert_close(refit, head_only, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------ learn2learn parity


@pytest.fixture(scope="module")
def l2l():
    return pytest.importorskip(
        "learn2learn", reason="learn2learn not installed (scripts/build_learn2learn.sh)"
    )


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("architecture", ["conv4", "mlp"])
def test_maml_matches_learn2learn_adapted_loss_and_meta_gradient(l2l, first_order, architecture):
    if architecture == "conv4":
        model, batch = small_conv4(), episode(4, (1, 8, 8))
    else:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        batch = episode(4, (64,))
    ours = copy.deepcopy(model)
    method = MAML(inner_lr=0.4, inner_steps=3, first_order=first_order)
    logits = method.query_logits(ours, batch, steps=3, first_order=first_order)
    loss = F.cross_entropy(logits.flatten(0, 1), batch.query_y.flatten())
    loss.backward()

    theirs = copy.deepcopy(model)
    maml = l2l.algorithms.MAML(theirs, lr=0.4, first_order=first_order)
    total = 0.0
    for task in range(batch.tasks):
        learner = maml.clone()
        for _ in range(3):
            learner.adapt(
                F.cross_entropy(learner(batch.support_x[task])[:, :WAYS], batch.support_y[task])
            )
        task_loss = F.cross_entropy(learner(batch.query_x[task])[:, :WAYS], batch.query_y[task])
        (task_loss / batch.tasks).backward()
        total += float(task_loss) / batch.tasks

    assert float(loss) == pytest.approx(total, abs=1e-5)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)


def test_l2l_maml_method_predicts_like_paralab_maml(l2l):
    from paralab_fewshot.methods.l2l import L2LMAML

    model, batch = small_conv4(), episode(3, (1, 8, 8))
    ours = MAML(inner_lr=0.4, inner_steps=2)
    theirs = L2LMAML(inner_lr=0.4, inner_steps=2)
    for method in (ours, theirs):
        method.setup(None, model, WAYS, batch.support_x[0])
    torch.testing.assert_close(
        ours.predict(None, model, batch), theirs.predict(None, model, batch), rtol=1e-4, atol=1e-5
    )


def test_without_learn2learn_the_adapter_says_how_to_install_it(monkeypatch):
    import sys

    from paralab_fewshot.methods.l2l import L2LMAML

    monkeypatch.setitem(sys.modules, "learn2learn", None)  # import learn2learn -> ImportError
    with pytest.raises(ImportError, match=r"scripts/build_learn2learn.sh"):
        L2LMAML()
