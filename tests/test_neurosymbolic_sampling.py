"""Differentiable sampling inference (``inference = "sample"``): its score-function gradient
with a leave-one-out baseline agrees in expectation with the exact engine's gradient, and
training MNIST addition with it learns the digits."""

from __future__ import annotations

import pytest
import torch

import paralab
from paralab_neurosymbolic.logic import Program, Query

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest

PROGRAM = """
nn(net, [X], Y, [0, 1, 2]) :: digit(X, Y).
0.3 :: bonus.
add(X, Y, Z) :- digit(X, A), digit(Y, B), Z is A + B.
high(X, Y) :- digit(X, A), digit(Y, B), A + B >= 3.
high(X, Y) :- bonus, digit(X, 2).
"""


def logits() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return (torch.randn(4, 3, generator=generator, dtype=torch.float64).requires_grad_(),
            torch.randn(4, 3, generator=generator, dtype=torch.float64).requires_grad_())


def gradient(query: Query, observed: list[int] | None, **options: object) -> torch.Tensor:
    """d sum_b P(query_b) / d (both logit tables), flattened."""
    a, b = logits()
    feed = {"digit(a)": torch.softmax(a, 1), "digit(b)": torch.softmax(b, 1)}
    query.probability(feed, observed, **options).sum().backward()
    assert a.grad is not None and b.grad is not None
    return torch.cat([a.grad.reshape(-1), b.grad.reshape(-1)])


@pytest.mark.parametrize(("goal", "observed"), [("add(a, b, Z)", [0, 2, 3, 4]),
                                                  ("high(a, b)", None)])
def test_sample_gradient_agrees_in_expectation_with_exact(goal: str, observed: list | None) -> None:
    # the second query has two overlapping proofs and a probabilistic fact: the exact
    # reference is the SDD engine's weighted model count, differentiated by autograd
    query = Query(Program.parse(PROGRAM), goal)
    exact = gradient(query, observed, mode="sdd" if observed is None else "exact")
    assert float(exact.abs().max()) > 0.05  # a no-op gradient could not pass below
    generator = torch.Generator().manual_seed(0)
    estimates = torch.stack([gradient(query, observed, mode="sample", samples=50,
                                      generator=generator) for _ in range(300)])
    mean = estimates.mean(0)
    standard_error = estimates.std(0) / estimates.shape[0] ** 0.5
    # each coordinate within 4.5 standard errors of the exact gradient (and a small slack)
    assert bool(((mean - exact).abs() <= 4.5 * standard_error + 1e-3).all()), (mean, exact)
    # cosine similarity of the averaged estimate with the exact gradient
    cosine = float(torch.nn.functional.cosine_similarity(mean, exact, dim=0))
    assert cosine > 0.95


def test_baseline_removes_the_noise_of_a_certain_query() -> None:
    # a query true in every world has P = 1 and gradient 0; without a baseline, the score
    # function would return mean_s grad log p(x_s), which is non-zero for any finite sample
    query = Query(Program.parse(PROGRAM), "add(a, b, Z)")
    a, b = logits()
    feed = {"digit(a)": torch.softmax(a, 1), "digit(b)": torch.softmax(b, 1)}
    distribution = query.distribution(feed, mode="sample", samples=64,
                                      generator=torch.Generator().manual_seed(1))
    total = distribution.probs.sum(1)  # every world proves some sum: exactly 1
    torch.testing.assert_close(total, torch.ones_like(total))
    total.sum().backward()
    assert a.grad is not None and float(a.grad.abs().max()) < 1e-12


def test_sample_value_is_the_monte_carlo_estimate() -> None:
    # the surrogate term adds nothing to the value: it is the fraction of samples that prove it
    query = Query(Program.parse(PROGRAM), "add(a, b, Z)")
    a, b = logits()
    feed = {"digit(a)": torch.softmax(a, 1), "digit(b)": torch.softmax(b, 1)}
    with_grad = query.distribution(feed, mode="sample", samples=200,
                                   generator=torch.Generator().manual_seed(5)).probs
    without = query.distribution({k: v.detach() for k, v in feed.items()}, mode="sample",
                                 samples=200, generator=torch.Generator().manual_seed(5)).probs
    torch.testing.assert_close(with_grad.detach(), without)
    torch.testing.assert_close(without * 200, (without * 200).round())  # counts of samples


def test_training_with_sampling_inference_learns_digits() -> None:
    spec = {
        "name": "addition-sample",
        "dataset": "digits",
        "model": {"name": "mlp", "hidden": [128]},
        "protocol": {"name": "addition", "batch_size": 16, "epochs": 3, "inference": "sample",
                     "samples": 200},
        "method": {"name": "adam", "lr": 0.003},
        "output": None,
        "device": "cpu",
    }
    result = paralab.run(spec)
    assert result.status == "completed"
    losses = [phase["metrics"]["train/loss"] for phase in result.phases]
    assert losses[-1] < losses[0]
    # chance is 0.1 on single digits; exact inference reaches about 0.9 here
    assert result.metrics["test/accuracy"] >= 0.6, result.metrics
