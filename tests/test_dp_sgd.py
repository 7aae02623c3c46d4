"""DP-SGD under the supervised protocol: the ``dp`` middleware clips each example's gradient,
adds Gaussian noise to the sum and accounts the budget (issue 13: ``supervised`` with
``middleware = ["dp"]`` used to complete with no clipping and no noise)."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import paralab
from paralab import Phase
from paralab.host import Hooks
from paralab.methods import PerExampleGradients
from paralab.protocols.supervised import poisson_batches
from paralab.testing import isolated_registry
from paralab_federated.privacy import DPFedAvg
from tests.federated_helpers import max_difference, parameters_after

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest

EPOCHS, BATCH = 3, 32


def supervised(middleware: Any = (), **protocol: Any) -> dict[str, Any]:
    """Three epochs of SGD on iris (120 train rows) with a small MLP."""
    return {
        "name": "dp-sgd-test",
        "dataset": "iris",
        "model": {"name": "mlp", "hidden": [16]},
        "protocol": {"name": "supervised", "epochs": EPOCHS, "batch_size": BATCH, **protocol},
        "method": {"name": "sgd", "lr": 0.1},
        "middleware": list(middleware),
        "output": None,
        "device": "cpu",
        "seed": 0,
    }


def weights(middleware: Any = (), **protocol: Any) -> dict[str, torch.Tensor]:
    return parameters_after(lambda: paralab.run(supervised(middleware, **protocol)))


def dp(**options: Any) -> dict[str, Any]:
    return {"name": "dp", **options}


# ------------------------------------------------------------------------------ the effect


def test_noise_changes_the_weights() -> None:
    quiet = weights([dp(noise_multiplier=0.0, clip=1.0)])
    noisy = weights([dp(noise_multiplier=1.0, clip=1.0)])
    assert max_difference(quiet, noisy) > 1e-3


def test_the_noise_is_secret_unless_asked_to_be_reproducible() -> None:
    """By default the noise is seeded from the operating system: the same spec and run seed
    give other noise each time (noise regenerated from a public seed gives no privacy)."""
    first = weights([dp(noise_multiplier=1.0, clip=1.0)])
    second = weights([dp(noise_multiplier=1.0, clip=1.0)])
    assert max_difference(first, second) > 1e-3
    with pytest.warns(UserWarning, match="NOT private"):
        again = [weights([dp(noise_multiplier=1.0, clip=1.0, reproducible_noise=True)])
                 for _ in range(2)]
    assert max_difference(*again) == 0.0
    with pytest.warns(UserWarning, match="NOT private"):
        result = paralab.run(supervised([dp(reproducible_noise=True)]))
    assert result.metrics["privacy/noise"] == "reproducible from a seed: NOT private"
    assert paralab.run(supervised([dp()])).metrics["privacy/noise"] == (
        "seeded from the operating system")
    with pytest.raises(paralab.SpecError, match=r"seed = 3 would make the noise predictable"):
        paralab.run(supervised([dp(seed=3)]))


def test_without_noise_and_clipping_dp_sgd_is_plain_sgd() -> None:
    # Same fixed-size shuffled batches; every example's gradient below the clip; no noise: the
    # mean of the per-example gradients is the batch gradient.
    plain = weights()
    private = weights([dp(noise_multiplier=0.0, clip=1e6)], sampling="shuffle")
    assert max_difference(plain, private) < 1e-6
    assert max_difference(plain, weights(sampling="shuffle")) == 0.0  # the default path


def test_clipping_alone_changes_the_weights() -> None:
    plain = weights()
    clipped = weights([dp(noise_multiplier=0.0, clip=0.01)], sampling="shuffle")
    assert max_difference(plain, clipped) > 1e-3


# ---------------------------------------------------------------- the step, by hand


class _Run:
    """What ``OptimizerMethod.step`` reads of a run: hooks, the open phase, seed, loss terms."""

    def __init__(self, *middleware: object, sampling: dict[str, Any]) -> None:
        extra = [(f"middleware[{i}]:test", m) for i, m in enumerate(middleware)]
        self.hooks = Hooks(isolated_registry().run_manager(extra))
        self.current_phase = Phase("epoch", 0, info={"sampling": sampling})
        self.seed = 0

    def extra_loss(self, batch: Any) -> float:
        return 0.0


class _Observe:
    """An outer gradient middleware that keeps what the inner ones returned."""

    def __init__(self) -> None:
        self.seen: list[PerExampleGradients] = []

    @paralab.hookimpl(wrapper=True)
    def paralab_process_gradients(self, run: Any, gradients: PerExampleGradients) -> Any:
        gradients = yield
        self.seen.append(gradients)
        return gradients


def _by_hand(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
             clip: float) -> tuple[dict[str, torch.Tensor], list[float]]:
    """The sum of each example's cross-entropy gradient scaled to norm <= clip; the norms."""
    total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    norms = []
    for i in range(len(x)):
        grads = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]),
                                    list(model.parameters()))
        norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
        norms.append(norm)
        factor = min(1.0, clip / norm)
        for (n, _), g in zip(model.named_parameters(), grads):
            total[n] += factor * g
    return total, norms


def test_each_examples_gradient_is_clipped_alone() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 50.0], [0.2, 0.1, -0.3]])
    y = torch.tensor([0, 1, 1, 0])
    y[2] = 1 - int(model(x[2:3]).argmax())  # the outlier is confidently wrong: a large gradient
    clip, expected_batch = 0.9, 8.0
    summed, norms = _by_hand(model, x, y, clip)
    assert norms[2] > 10 * clip and min(norms) < clip  # the outlier is clipped, not all are
    observer = _Observe()
    run = _Run(DPFedAvg(clip=clip, noise_multiplier=0.0), observer,
               sampling={"scheme": "poisson", "sample_rate": 0.5,
                         "expected_batch_size": expected_batch})
    before = copy.deepcopy(model)
    method = paralab.SGD(lr=1.0)
    loss = method.step(run, model, x, y, torch.arange(4))
    assert loss == pytest.approx(float(F.cross_entropy(before(x), y).detach()), rel=1e-6)
    for (name, old), new in zip(before.named_parameters(), model.parameters()):
        applied = old.detach() - new.detach()  # lr = 1
        torch.testing.assert_close(applied, summed[name] / expected_batch, atol=1e-7, rtol=1e-6)
    # Each row that leaves the middleware has norm <= clip: no example moves the sum more.
    seen = observer.seen[0]
    rows = torch.cat([g.flatten(1) for g in seen.per_example.values()], dim=1)
    assert rows.norm(dim=1).max() <= clip * (1 + 1e-6)
    assert float(rows.norm(dim=1)[2]) == pytest.approx(clip, rel=1e-6)  # the outlier, at clip
    assert seen.info["dp"]["clipped"] == sum(n > clip for n in norms)


def test_noise_has_the_declared_scale() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(20, 50)
    x, y = torch.zeros(1, 20), torch.tensor([0])
    clip, sigma = 2.0, 3.0
    run = _Run(DPFedAvg(clip=clip, noise_multiplier=sigma),
               sampling={"scheme": "shuffle", "sample_rate": 0.1, "expected_batch_size": 1.0})
    before = copy.deepcopy(model)
    paralab.SGD(lr=1.0).step(run, model, x, y, torch.arange(1))
    change = (before.weight - model.weight).detach()  # x = 0: the weight's gradient is 0
    assert float(change.std()) == pytest.approx(sigma * clip, rel=0.1)  # 1,000 draws


def test_a_plain_run_computes_no_per_example_gradient() -> None:
    run = _Run(sampling={})
    assert not run.hooks.has_middleware_for("paralab_process_gradients")
    run = _Run(DPFedAvg(), sampling={})
    assert run.hooks.middleware_for("paralab_process_gradients") == ("middleware[0]:test",)


# ------------------------------------------------------------------ sampling and budget


def test_poisson_batches_sample_each_row_with_the_rate() -> None:
    view = paralab.load_dataset("digits").split("train")  # 1,437 rows
    generator = torch.Generator().manual_seed(0)
    sizes = [len(index) for _, _, index in poisson_batches(view, 32, generator)]
    assert len(sizes) == math.ceil(len(view) / 32)
    assert len(set(sizes)) > 1  # sizes vary, as Poisson sampling does
    assert sum(sizes) / len(sizes) == pytest.approx(32, rel=0.1)


def test_epsilon_is_dp_accountings_for_the_steps_taken() -> None:
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant

    sigma, delta = 1.1, 1e-5
    result = paralab.run(supervised([dp(noise_multiplier=sigma, clip=1.0, delta=delta)]))
    n = 120  # iris' train split
    q, per_epoch = BATCH / n, math.ceil(n / BATCH)
    info = result.phases[0]["info"]["sampling"]
    assert info == {"scheme": "poisson", "sample_rate": q, "expected_batch_size": float(BATCH)}
    epsilons = []
    for epoch, phase in enumerate(result.phases):
        steps = per_epoch * (epoch + 1)
        accountant = rdp_privacy_accountant.RdpAccountant()
        accountant.compose(dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps))
        assert phase["metrics"]["privacy/steps"] == steps
        assert phase["metrics"]["privacy/epsilon"] == pytest.approx(
            accountant.get_epsilon(delta), rel=1e-12)
        assert phase["metrics"]["privacy/delta"] == delta
        epsilons.append(phase["metrics"]["privacy/epsilon"])
    assert epsilons == sorted(epsilons) and epsilons[0] > 0
    assert result.spec["middleware"][0]["name"] == "dp"


def test_the_pld_accountant_is_tighter() -> None:
    options = {"noise_multiplier": 1.1, "clip": 1.0}
    rdp = paralab.run(supervised([dp(**options)])).metrics["privacy/epsilon"]
    pld = paralab.run(supervised([dp(accountant="pld", **options)])).metrics["privacy/epsilon"]
    assert 0 < pld < rdp


# --------------------------------------------------------------------------- rejected specs


def test_secure_aggregation_under_supervised_is_a_spec_error(tmp_path) -> None:
    spec = {**supervised(["secure_aggregation"]), "output": str(tmp_path)}
    with pytest.raises(paralab.SpecError, match=r"middleware\[0\] = 'secure_aggregation'.*"
                                                r"protocol 'supervised'.*never calls"):
        paralab.run(spec)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_noise_is_a_spec_error(value: float, tmp_path) -> None:
    spec = {**supervised([dp(noise_multiplier=value)]), "output": str(tmp_path)}
    with pytest.raises(paralab.SpecError, match=r"middleware\[0\]\.noise_multiplier = "):
        paralab.run(spec)
    assert list(tmp_path.iterdir()) == []


class _BatchNormPlugin:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_models(self):
        def factory(info):
            return torch.nn.Sequential(torch.nn.Linear(info.n_features, 8),
                                       torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                       torch.nn.Linear(8, info.n_classes))

        return [paralab.ModelSpec("batchnorm_mlp", factory, "An MLP with batch norm (tests).")]


def test_batch_norm_under_dp_sgd_is_a_spec_error(tmp_path) -> None:
    registry = isolated_registry(("dp_test_models", _BatchNormPlugin()), discover=True)
    spec = {**supervised([dp()]), "model": "batchnorm_mlp", "output": str(tmp_path)}
    with pytest.raises(paralab.SpecError, match="BatchNorm1d layers, which mix the examples"):
        paralab.run(spec, registry=registry)
    assert list(tmp_path.iterdir()) == []
    spec["middleware"] = []
    assert paralab.run({**spec, "output": None}, registry=registry).status == "completed"


class _Bypass(paralab.GradientMethod):
    """A gradient method that steps on the batch gradient itself, never on per-example ones."""

    def __init__(self, lr: float = 0.1) -> None:
        self.lr = lr

    def setup(self, run, model) -> None:
        self.optimizer = torch.optim.SGD(model.parameters(), lr=self.lr)

    def loss(self, run, batch):
        return F.cross_entropy(batch.logits, batch.targets)

    def step(self, run, model, x, y, indices, objective=None) -> float:
        loss = F.cross_entropy(model(x), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


class _BypassPlugin:
    PARALAB_API = "1.0"

    @paralab.hookimpl
    def paralab_methods(self):
        return [paralab.MethodSpec("bypass", _Bypass, "Skips gradient middleware (tests).",
                                   {"lr": 0.1}, protocols=("supervised",))]


def test_a_method_that_skips_the_gradient_hook_fails_instead_of_claiming_privacy() -> None:
    registry = isolated_registry(("dp_test_bypass", _BypassPlugin()), discover=True)
    spec = {**supervised([dp()]), "method": "bypass"}
    with pytest.raises(paralab.RunError, match="without passing its gradients through "
                                               "paralab_process_gradients") as caught:
        paralab.run(spec, registry=registry)
    assert caught.value.result.phases == []  # failed at its first step, before any epoch closed
    assert paralab.run({**spec, "middleware": []}, registry=registry).status == "completed"


def test_loss_terms_act_inside_the_clipped_per_example_gradient() -> None:
    if "semantic_loss" not in paralab.get_registry().components.get("loss", {}):
        pytest.skip("the neurosymbolic plugin's semantic_loss is not installed")
    term = {"name": "semantic_loss", "constraint": "exactly_one", "weight": 1.0}

    def with_losses(losses: list, middleware: list, **protocol: Any) -> dict[str, torch.Tensor]:
        spec = {**supervised(middleware, **protocol), "losses": losses}
        return parameters_after(lambda: paralab.run(spec))

    quiet = [dp(noise_multiplier=0.0, clip=1e6)]
    private = with_losses([term], quiet, sampling="shuffle")
    assert max_difference(private, with_losses([], quiet, sampling="shuffle")) > 1e-4
    # A term that is a mean over examples gives the same gradient one example at a time.
    assert max_difference(private, with_losses([term], [])) < 1e-5


def test_an_empty_poisson_batch_still_takes_its_noisy_step() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    run = _Run(DPFedAvg(clip=1.0, noise_multiplier=1.0),
               sampling={"scheme": "poisson", "sample_rate": 0.01, "expected_batch_size": 4.0})
    before = copy.deepcopy(model)
    loss = paralab.SGD(lr=1.0).step(run, model, torch.zeros(0, 3), torch.zeros(0, dtype=torch.long),
                                   torch.zeros(0, dtype=torch.long))
    assert loss == 0.0
    change = (before.weight - model.weight).detach()
    assert float(change.abs().min()) > 0  # noise / expected batch size, on every coordinate
    # Without noise an empty batch moves nothing.
    quiet = _Run(DPFedAvg(clip=1.0, noise_multiplier=0.0),
                 sampling={"scheme": "poisson", "sample_rate": 0.01, "expected_batch_size": 4.0})
    still = copy.deepcopy(model)
    paralab.SGD(lr=1.0).step(quiet, still, torch.zeros(0, 3), torch.zeros(0, dtype=torch.long),
                             torch.zeros(0, dtype=torch.long))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), still.parameters()))


def test_poisson_sampling_without_dp_and_a_plain_run_record_what_they_did() -> None:
    poisson = paralab.run(supervised(sampling="poisson"))
    assert poisson.phases[0]["info"]["sampling"]["scheme"] == "poisson"
    assert not any(key.startswith("privacy/") for key in poisson.metrics)
    plain = paralab.run(supervised())
    assert plain.phases[0]["info"] == {}  # the default path records nothing new


def test_dp_without_noise_says_it_gives_no_privacy():
    spec = {"dataset": "iris", "model": {"name": "mlp", "hidden": [8]}, "output": None,
            "protocol": {"name": "supervised", "epochs": 1},
            "middleware": [{"name": "dp", "noise_multiplier": 0.0}]}
    with pytest.warns(UserWarning, match="noise_multiplier = 0 adds no noise"):
        result = paralab.run(spec)
    assert result.metrics["privacy/epsilon"] == float("inf")
