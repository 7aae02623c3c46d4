"""``adversarial_debiasing`` (Zhang et al. 2018): the adversary's game lowers the disparity of
the same run without it, under supervised training and composed with the bundled
``federated`` and ``continual`` protocols (named in specs, never imported)."""

from __future__ import annotations

import warnings

import pytest
import torch

import paralab
from paralab_fairness.adversarial import Adversary, positive_logit
from tests.fairness_helpers import fairness_registry

DATA = {"name": "biased_synthetic", "n": 1200, "bias": 1.5}
BASE = {"dataset": DATA, "model": {"name": "mlp", "hidden": [16]}, "device": "cpu",
        "output": None,
        "auditors": [{"name": "fairness", "bootstrap": 0, "sensitive": ["group"]}]}
SUPERVISED = {**BASE, "protocol": {"name": "supervised", "epochs": 5, "batch_size": 64},
              "method": {"name": "adam", "lr": 0.02}}
ADVERSARY = {"name": "adversarial_debiasing", "weight": 3.0, "sensitive": "group"}


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)


def last_gaps(result: paralab.Result) -> dict[str, float]:
    """The disparities of the last evaluation's (last) fairness audit."""
    audits = result.phases[-1]["audits"]
    key = sorted(k for k in audits if k.startswith("fairness"))[-1]
    return audits[key]["group"]["disparities"]


def test_adversary_reduces_the_disparity_under_supervised_training() -> None:
    with fairness_registry():
        plain = paralab.run(SUPERVISED)
        debiased = paralab.run({**SUPERVISED, "losses": [ADVERSARY]})
        odds = paralab.run({**SUPERVISED,
                            "losses": [{**ADVERSARY, "constraint": "equalized_odds"}]})
    gap = "demographic_parity_difference"
    assert last_gaps(plain)[gap] > 0.3  # the label bias is learned
    assert last_gaps(debiased)[gap] < last_gaps(plain)[gap] / 2
    assert (last_gaps(odds)["equalized_odds_difference"]
            < last_gaps(plain)["equalized_odds_difference"] / 2)
    assert debiased.metrics["test/accuracy"] > 0.65


def test_weight_zero_trains_the_run_without_the_term() -> None:
    """The adversary plays on its own seeded RNG and optimizer: at weight 0 the model is the
    plain run's exactly (the term does act through its gradient, not through side effects)."""
    with fairness_registry():
        plain = paralab.run(SUPERVISED)
        silent = paralab.run({**SUPERVISED, "losses": [{**ADVERSARY, "weight": 0.0}]})
    assert silent.metrics["test/accuracy"] == plain.metrics["test/accuracy"]
    assert last_gaps(silent) == last_gaps(plain)


def test_adversary_learns_the_group_from_an_output_that_leaks_it() -> None:
    """The adversary itself (Zhang et al.'s form) recovers a group that the logit encodes."""
    torch.manual_seed(0)
    groups = torch.randint(0, 2, (512,))
    logits = torch.stack([torch.zeros(512), 2.0 * groups - 1 + 0.3 * torch.randn(512)], 1)
    labels = torch.randint(0, 2, (512,))
    adversary = Adversary(2, with_label=False)
    optimizer = torch.optim.Adam(adversary.parameters(), lr=0.05)
    z = positive_logit(logits, 1)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(adversary(z, labels), groups)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    accuracy = (adversary(z, labels).argmax(1) == groups).float().mean()
    assert accuracy > 0.95
    torch.testing.assert_close(positive_logit(logits, 1), logits[:, 1] - logits[:, 0])


def test_adversary_under_the_federated_protocol() -> None:
    spec = {**BASE, "method": {"name": "fedavg", "lr": 0.1},
            "protocol": {"name": "federated", "clients": 4, "rounds": 5, "fraction": 1.0,
                         "local_epochs": 1, "batch_size": 32}}
    plain = paralab.run(spec)
    debiased = paralab.run({**spec, "losses": [ADVERSARY]})
    assert [p["kind"] for p in debiased.phases][-1] == "round"
    gap = "demographic_parity_difference"
    assert last_gaps(plain)[gap] > 0.3
    assert last_gaps(debiased)[gap] < last_gaps(plain)[gap] / 2


def test_adversary_under_the_continual_protocol() -> None:
    spec = {**BASE, "method": {"name": "ewc", "optimizer": "adam", "lr": 0.02}, "seed": 1,
            "protocol": {"name": "continual", "scenario": "domain_incremental",
                         "domain": "permuted", "experiences": 2, "epochs": 2,
                         "batch_size": 64}}
    plain = paralab.run(spec)
    debiased = paralab.run({**spec, "losses": [ADVERSARY]})
    assert [p["kind"] for p in debiased.phases][-1] == "experience"
    gap = "demographic_parity_difference"
    assert last_gaps(plain)[gap] > 0.3
    assert last_gaps(debiased)[gap] < last_gaps(plain)[gap] / 2
    assert debiased.metrics["exp1/accuracy"] > 0.65


@pytest.mark.parametrize(("changes", "match"), [
    ({"losses": [{**ADVERSARY, "sensitive": ["group", "age_band"]}]}, "predicts one"),
    ({"losses": [{**ADVERSARY, "adversary_lr": 0.0}]}, "adversary_lr"),
    ({"losses": [ADVERSARY], "middleware": ["dp"]}, "per-example"),
])
def test_spec_errors_name_the_problem(changes: dict, match: str) -> None:
    with pytest.raises(paralab.SpecError, match=match):
        paralab.run({**SUPERVISED, **changes})
