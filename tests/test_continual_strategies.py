"""Native strategies: end to end through paralab.run, and parity of their pieces with
Avalanche's implementations (EWC's Fisher and penalty, LwF's distillation, A-GEM's projection)."""

from __future__ import annotations

import copy

import pytest
import torch

import paralab
from paralab import LossSpec, hookimpl, load_dataset
from paralab.testing import isolated_registry
from paralab_continual.buffers import IndexBuffer
from paralab_continual.scenarios import build_stream
from paralab_continual.strategies import AGEM, EWC, SI, LwF
from tests.continual_helpers import CountingLoss, continual_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


def _run(method, **protocol):
    return paralab.run(continual_spec(method, **protocol))


@pytest.fixture(scope="module")
def class_il_runs():
    methods = {
        "naive": "naive",
        "replay": {"name": "replay", "buffer_size": 200, "policy": "class_balanced"},
        "joint": "joint",
    }
    return {key: _run(method) for key, method in methods.items()}


def test_class_incremental_shape(class_il_runs):
    naive, replay, joint = (class_il_runs[k].metrics for k in ("naive", "replay", "joint"))
    # Naive fine-tuning forgets everything but the last experience.
    assert naive["average_accuracy"] < 0.3
    assert naive["forgetting"] > 0.7
    # Replay keeps much of it, joint training nearly all.
    assert replay["average_accuracy"] > naive["average_accuracy"] + 0.15
    assert joint["average_accuracy"] > 0.8
    assert joint["forgetting"] < 0.1
    # The matrix: 5x5, last row's mean is the average accuracy, diagonal high for naive.
    matrix = naive["accuracy_matrix"]
    assert len(matrix) == 5 and all(len(row) == 5 for row in matrix)
    assert sum(matrix[-1]) / 5 == pytest.approx(naive["average_accuracy"])
    assert min(matrix[i][i] for i in range(5)) > 0.7
    assert naive["backward_transfer"] == pytest.approx(-naive["forgetting"])
    assert "forward_transfer" in naive and len(naive["initial_accuracy"]) == 5


def test_phases_and_evaluations_per_experience(class_il_runs):
    result = class_il_runs["naive"]
    kinds = [(p["kind"], p["index"]) for p in result.phases]
    assert kinds == [("initial", 0)] + [("experience", i) for i in range(5)]
    last = result.phases[-1]
    assert sorted(k for k in last["metrics"] if k.endswith("/accuracy")) == [
        f"exp{j}/accuracy" for j in range(5)
    ]
    assert last["info"]["classes"] == list(result.phases[-1]["info"]["classes"])
    assert result.main_metric == "average_accuracy"
    # The R row recorded in each phase is the shared engine's exp{j}/accuracy of that phase.
    for phase in result.phases[1:]:
        row = phase["metrics"]["accuracy_matrix_row"]
        assert row == pytest.approx([phase["metrics"][f"exp{j}/accuracy"] for j in range(5)])


@pytest.mark.parametrize("method", ["ewc", "online_ewc", "si", "lwf", "agem", "replay"])
def test_every_strategy_learns_task_incremental(method):
    result = _run(method, scenario="task_incremental")
    assert result.status == "completed"
    # Two classes per task with the task known: every strategy is far above chance (0.5).
    assert result.metrics["average_accuracy"] > 0.9


def test_domain_incremental_permuted_and_split():
    permuted = _run("naive", scenario="domain_incremental", domain="permuted", experiences=3)
    matrix = permuted.metrics["accuracy_matrix"]
    # Learned on the original pixels, then forgotten as the permuted tasks overwrite it.
    assert matrix[0][0] > 0.7 and matrix[2][0] < matrix[0][0] - 0.2
    split = _run({"name": "replay", "buffer_size": 100}, scenario="domain_incremental",
                 domain="split")
    assert split.metrics["average_accuracy"] > 0.7  # 2-way labels, chance 0.5


def test_heat_map_written(tmp_path):
    spec = continual_spec("naive", experiences=2, epochs=1)
    spec["output"] = str(tmp_path)
    result = paralab.run(spec)
    assert (tmp_path / "continual-test" / "accuracy_matrix.png").stat().st_size > 1000
    assert result.artifacts["accuracy_matrix"] == "accuracy_matrix.png"


class _ExperienceObserver:
    """A plugin that sees each experience through the host's lifecycle hooks."""

    PARALAB_API = "1.0"

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int, tuple]] = []

    @hookimpl
    def paralab_before_phase(self, run, phase):
        self.events.append(("before", phase.kind, phase.index, tuple(phase.info.get("classes", ()))))

    @hookimpl
    def paralab_after_phase(self, run, phase):
        self.events.append(("after", phase.kind, phase.index, tuple(phase.info.get("classes", ()))))


class _LossPlugin:
    PARALAB_API = "1.0"

    @hookimpl
    def paralab_losses(self):
        return [LossSpec("counting", CountingLoss, "Counts its calls.", {"weight": 0.0})]


def test_lifecycle_hooks_and_loss_terms_of_other_plugins():
    import paralab_continual

    observer = _ExperienceObserver()
    registry = isolated_registry(
        ("paralab_continual", paralab_continual), ("observer", observer), ("losses", _LossPlugin())
    )
    spec = continual_spec("ewc", experiences=3, epochs=1)
    spec["losses"] = ["counting"]
    CountingLoss.calls = 0
    result = paralab.run(spec, registry=registry)
    stream = result.phases
    experiences = [e for e in observer.events if e[1] == "experience"]
    assert [(e[0], e[2]) for e in experiences] == [
        ("before", 0), ("after", 0), ("before", 1), ("after", 1), ("before", 2), ("after", 2)
    ]
    assert [e[3] for e in experiences[::2]] == [tuple(p["info"]["classes"]) for p in stream[1:]]
    # 3 experiences x 1 epoch x ceil(rows / 32) steps: the term entered every step's loss.
    dataset = load_dataset("digits")
    built = build_stream(dataset, experiences=3)
    steps = sum(-(-len(e.train) // 32) for e in built)
    assert CountingLoss.calls == steps


# ------------------------------------------------------------------- parity with Avalanche


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


class _Run:
    """The few run attributes a strategy's pieces read."""

    def __init__(self, model, dataset):
        self.model = model
        self.dataset = dataset
        self.generator = torch.Generator().manual_seed(0)


def test_ewc_fisher_equals_avalanche_compute_importances():
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
    from avalanche.training.plugins import EWCPlugin

    dataset = load_dataset("digits")
    stream = build_stream(dataset, experiences=5)
    experience = stream[0]
    model = _model()
    ewc = EWC(ewc_lambda=1.0, fisher_batch_size=32)
    ewc.bind(stream)
    ewc.setup(None, model)
    ours = ewc.plugin.importance(ewc, _Run(model, dataset), experience)
    rows = experience.train
    data = _make_taskaware_tensor_classification_dataset(
        dataset.x[rows], dataset.y[rows], task_labels=0, targets=dataset.y[rows].tolist()
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    theirs = EWCPlugin(1.0).compute_importances(
        model, torch.nn.CrossEntropyLoss(), optimizer, data, "cpu", 32
    )
    for (name, _parameter), mine in zip(model.named_parameters(), ours):
        assert torch.allclose(mine, theirs[name].data, rtol=1e-5, atol=1e-9), name


@pytest.mark.parametrize("mode", ["separate", "online"])
def test_ewc_closed_form_gradient_equals_autograd_of_avalanches_penalty(mode):
    """Folding every experience's penalty into A*theta - B gives the gradient of Avalanche's
    sum over experiences (separate) or of its single decayed penalty (online)."""
    model = _model()
    ewc = EWC(ewc_lambda=3.0, mode=mode, decay=0.7)
    ewc.setup(None, model)
    generator = torch.Generator().manual_seed(1)
    saved = []
    for _ in range(3):
        importance = [torch.rand(p.shape, generator=generator) for p in ewc.parameters]
        anchor = [torch.randn(p.shape, generator=generator) for p in ewc.parameters]
        ewc.plugin._fold(importance, anchor, 0.7 if mode == "online" else None)
        saved.append((importance, anchor))
    # Avalanche's formula
    if mode == "separate":
        terms = saved
    else:
        combined = saved[0][0]
        for importance, _ in saved[1:]:
            combined = [0.7 * c + i for c, i in zip(combined, importance)]
        terms = [(combined, saved[-1][1])]
    penalty = sum(
        (imp * (p - anchor).pow(2)).sum()
        for importances, anchors in terms
        for p, imp, anchor in zip(ewc.parameters, importances, anchors)
    )
    expected = torch.autograd.grad(3.0 * penalty, ewc.parameters)
    for p in ewc.parameters:
        p.grad = None
    ewc.after_backward(None, model)
    for p, grad in zip(ewc.parameters, expected):
        assert torch.allclose(p.grad, grad, rtol=1e-5, atol=1e-5)
    assert float(ewc.plugin.penalty()) == pytest.approx(float(3.0 * penalty.detach()), rel=1e-4)


def test_lwf_distillation_equals_avalanche():
    from avalanche.training.regularization import LearningWithoutForgetting

    dataset = load_dataset("digits")
    stream = build_stream(dataset, experiences=5, shuffle_classes=False)
    model = _model()
    lwf = LwF(alpha=0.5, temperature=2.0)
    lwf.bind(stream)
    lwf.setup(None, model)
    run = _Run(model, dataset)
    lwf.after_experience(run, stream[0])
    lwf.after_experience(run, stream[1])  # teacher after experience 1; seen classes 0..3
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = dataset.x[:40]
    logits = model(x)
    ours = lwf.plugin.distillation(x, logits, model)
    theirs_method = LearningWithoutForgetting(alpha=0.5, temperature=2.0)
    theirs_method.prev_model = copy.deepcopy(lwf.plugin.teacher)
    theirs_method.prev_classes_by_task[0] = {0, 1, 2, 3}
    theirs = theirs_method(x, logits, model)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)


def test_agem_projection_equals_avalanche():
    from avalanche.training.plugins import AGEMPlugin

    model = _model()
    agem = AGEM()
    agem.setup(None, model)
    generator = torch.Generator().manual_seed(2)
    reference = [torch.randn(p.shape, generator=generator) for p in agem.parameters]
    current = [-r + 0.1 * torch.randn(r.shape, generator=generator) for r in reference]
    agem.plugin.reference = reference
    for p, g in zip(agem.parameters, current):
        p.grad = g.clone()
    agem.after_backward(None, model)
    ours = [p.grad.clone() for p in agem.parameters]

    class Strategy:
        pass

    strategy = Strategy()
    strategy.model = model
    strategy.device = "cpu"
    plugin = AGEMPlugin(patterns_per_experience=1, sample_size=1)
    plugin.buffers = [object()]
    plugin.reference_gradients = torch.cat([r.flatten() for r in reference])
    for p, g in zip(model.parameters(), current):
        p.grad = g.clone()
    plugin.after_backward(strategy)
    for mine, p in zip(ours, model.parameters()):
        assert torch.allclose(mine, p.grad, atol=1e-6)
    # Projected: no longer against the reference.
    dot = sum((g * r).sum() for g, r in zip(ours, reference))
    assert float(dot) == pytest.approx(0.0, abs=1e-3)


def test_si_importance_is_the_path_integral_on_a_quadratic():
    """On L = 0.5 * sum(theta^2) with plain SGD, omega = sum of grad * step, computable by hand."""
    parameter = torch.nn.Parameter(torch.tensor([2.0, -1.0]))
    model = torch.nn.Module()
    model.weight = parameter
    si = SI(si_lambda=1.0, damping=0.5, lr=0.1)
    si.setup(None, model)

    class Experience:
        index = 0

    si.before_experience(None, Experience())
    expected = torch.zeros(2)
    for _ in range(3):
        si.optimizer.zero_grad()
        (0.5 * parameter.pow(2).sum()).backward()
        before = parameter.detach().clone()
        grad = parameter.grad.clone()
        si.after_backward(None, model)
        si.optimizer.step()
        si.after_step(None, model)
        expected -= grad * (parameter.detach() - before)
    assert torch.allclose(si.plugin.omega[0], expected)
    si.after_experience(None, Experience())
    delta = parameter.detach() - torch.tensor([2.0, -1.0])
    assert torch.allclose(si.plugin.curvature[0], expected / (delta**2 + 0.5))


# ----------------------------------------------------------------------------- buffers


def test_reservoir_buffer_is_a_uniform_sample_of_indices():
    buffer = IndexBuffer(50, "reservoir")
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(1000)
    for _trial in range(40):
        buffer = IndexBuffer(50, "reservoir")
        for experience in range(5):
            rows = torch.arange(experience * 200, (experience + 1) * 200)
            buffer.add_experience(rows, experience, rows % 10, generator)
        assert len(buffer) == 50 and len(set(buffer.indices.tolist())) == 50
        counts[buffer.indices] += 1
    per_experience = counts.reshape(5, 200).sum(dim=1)
    # Each experience holds about a fifth of the memory on average (400 of 2000 slots).
    assert ((per_experience - 400).abs() < 120).all(), per_experience
    assert torch.equal(buffer.experiences, buffer.indices // 200)


@pytest.mark.parametrize(("policy", "group"), [("class_balanced", 10), ("experience_balanced", 200)])
def test_balanced_buffers(policy, group):
    buffer = IndexBuffer(40, policy)
    generator = torch.Generator().manual_seed(0)
    for experience in range(4):
        rows = torch.arange(experience * 200, (experience + 1) * 200)
        targets = (rows % 10) + 10 * (experience % 2)
        buffer.add_experience(rows, experience, targets, generator)
    assert len(buffer) == 40
    if policy == "experience_balanced":
        assert torch.bincount(buffer.experiences).tolist() == [10, 10, 10, 10]
    else:
        classes = (buffer.indices % 10) + 10 * ((buffer.indices // 200) % 2)
        assert torch.bincount(classes, minlength=20).tolist() == [2] * 20
    first, _ = buffer.sample(30, generator)
    second, _ = buffer.sample(10, generator)
    # One shuffled pass covers the whole memory before repeating.
    assert sorted(torch.cat([first, second]).tolist()) == sorted(buffer.indices.tolist())


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_fused_sgd_update_equals_torch_sgd(weight_decay):
    """The strategies' fused plain-SGD step is torch.optim.SGD's update."""
    from paralab_continual.strategies import Naive

    ours, theirs = _model(), _model()
    strategy = Naive(lr=0.1, weight_decay=weight_decay)
    strategy.setup(None, ours)
    optimizer = torch.optim.SGD(theirs.parameters(), lr=0.1, weight_decay=weight_decay)
    x, y = torch.randn(16, 64), torch.randint(0, 10, (16,))
    for _ in range(3):
        strategy.clear_gradients()
        torch.nn.functional.cross_entropy(ours(x), y).backward()
        strategy.apply_update()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(theirs(x), y).backward()
        optimizer.step()
    for mine, reference in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(mine, reference, atol=1e-6)


@pytest.mark.slow
def test_a_quantum_model_of_another_plugin_learns_a_stream():
    """The strategies train whatever model the spec names: paralab_quantum's hybrid here."""
    if "hybrid" not in paralab.get_registry().components["model"]:
        pytest.skip("paralab_quantum's hybrid model is not installed")
    spec = continual_spec({"name": "ewc", "optimizer": "adam", "lr": 0.01}, experiences=2,
                          epochs=1, shuffle_classes=False)
    spec["model"] = "hybrid"
    result = paralab.run(spec)
    matrix = result.metrics["accuracy_matrix"]
    # Trained on digits 0-4 first: well above the 0.2 of chance among five classes.
    assert matrix[0][0] > 0.3
    assert result.phases[-1]["info"]["classes"] == [5, 6, 7, 8, 9]
