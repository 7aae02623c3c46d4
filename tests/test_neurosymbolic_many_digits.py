"""MNIST addition beyond exact inference, up to Scallop's N = 15: top-k proofs of the observed
sum in log space (a 30-digit proof's mass underflows float32), the most-probable-world
prediction, and the checks that refuse modes which need the whole support."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import paralab
from paralab_neurosymbolic.addition import Addition, addition_query

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


def digit_tables(batch: int, count: int, seed: int, scale: float = 2.0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(batch, 10, generator=generator) * scale, 1)
            for _ in range(count)]


def test_log_probability_equals_the_log_of_topk_mass() -> None:
    query, names = addition_query(2)
    probs = digit_tables(6, 4, seed=2)
    feed = {f"digit({n})": t for n, t in zip(names, probs)}
    sums = torch.tensor([0, 17, 100, 198, 55, 3])
    for k in (1, 5, 100):
        mass = query.probability(feed, sums, mode="topk", k=k)
        log_mass = query.log_probability(feed, sums, mode="topk", k=k)
        torch.testing.assert_close(log_mass, mass.log(), rtol=0, atol=1e-5)
    # exact: the log of the exact engine's probability
    torch.testing.assert_close(query.log_probability(feed, sums),
                               query.probability(feed, sums).log())


def test_fifteen_digit_proofs_keep_a_gradient_where_the_mass_underflows() -> None:
    query, names = addition_query(15)
    logits = torch.randn(4, 30, 10, generator=torch.Generator().manual_seed(0)) * 12
    logits.requires_grad_()
    probs = torch.softmax(logits, -1)
    feed = {f"digit({n})": probs[:, i] for i, n in enumerate(names)}
    # sums of numbers read from the least probable digits: each proof has mass far below
    # float32's smallest normal (1e-38), so the probability is 0 but the log is finite
    digits = logits.detach().argmin(-1).reshape(4, 2, 15)
    place = 10 ** torch.arange(14, -1, -1)
    sums = (digits * place).sum(-1).sum(-1)
    assert bool((query.probability(feed, sums, mode="topk", k=8) == 0).all())
    log_p = query.log_probability(feed, sums, mode="topk", k=8)
    assert bool(torch.isfinite(log_p).all()) and float(log_p.detach().max()) < -87
    log_p.sum().backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0


def test_fifteen_digit_prediction_is_the_most_probable_world() -> None:
    task = Addition(digits_per_number=15, inference="topk")
    logits = torch.randn(3, 30, 10, generator=torch.Generator().manual_seed(1))
    digits = logits.argmax(-1)
    expected = [int("".join(map(str, row[:15].tolist()))) + int("".join(map(str, row[15:].tolist())))
                for row in digits]
    assert task.predict(logits).tolist() == expected
    # within the budget, the prediction is the argmax of the distribution (N = 1)
    small = Addition(digits_per_number=1)
    two = torch.randn(5, 2, 10, generator=torch.Generator().manual_seed(2))
    p = torch.softmax(two, -1)
    joint = p[:, 0, :, None] * p[:, 1, None, :]
    by_sum = torch.zeros(5, 19).index_add_(1, (torch.arange(10)[:, None] + torch.arange(10))
                                           .reshape(-1), joint.reshape(5, -1))
    assert small.predict(two).tolist() == by_sum.argmax(1).tolist()


def spec(**protocol: object) -> dict:
    return {
        "name": "many-digits",
        "dataset": "digits",
        "model": {"name": "mlp", "hidden": [64]},
        "protocol": {"name": "addition", "digits_per_number": 15, "pairs": 64,
                     "test_pairs": 16, "batch_size": 16, "inference": "topk", "top_k": 8,
                     **protocol},
        "method": {"name": "adam", "lr": 0.003},
        "output": None,
        "device": "cpu",
    }


def test_fifteen_digit_addition_trains_with_topk_proofs() -> None:
    result = paralab.run(spec(epochs=2))
    assert result.status == "completed"
    losses = [phase["metrics"]["train/loss"] for phase in result.phases]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[0] > 0
    assert 0.0 <= result.metrics["test/sum_accuracy"] <= 1.0


@pytest.mark.parametrize(("inference", "message"), [
    ("exact", "needs .* work units .* > exact_budget"),
    ("sample", "the sum can take 1,999,999,999,999,999 values .* use inference = 'topk'"),
])
def test_modes_that_need_the_support_are_refused_at_fifteen_digits(
        tmp_path: Path, inference: str, message: str) -> None:
    with pytest.raises(paralab.SpecError, match=message):
        paralab.run({**spec(inference=inference), "output": str(tmp_path)})
    assert not any(tmp_path.iterdir())



@pytest.mark.parametrize("n", [2, 3, 4])
def test_two_states_a_place_give_the_exact_probability_of_the_sum(n: int) -> None:
    """Top-k merges the proofs that reach the same partial sum and decides both numbers'
    digits of one place together, so two states (carry 0 or 1) survive each place and k = 2
    is exact, against the exact convolution engine. The beam of single proofs it replaces
    decided all of a's digits before b's and kept k proofs: at N = 2, 12 + 34 = 46 with a1
    read 3 (0.6) over 2 (0.4), its top-1 proof was 13 + 33 (mass 0.6 * 0.001); trained on
    such proofs, N = 15 from scratch settled on digits read one off (digit accuracy 0.0)."""
    query, names = addition_query(n)
    probs = digit_tables(64, 2 * n, seed=n, scale=3.0)
    feed = {f"digit({name})": t for name, t in zip(names, probs)}
    digits = torch.stack([t.multinomial(1, generator=torch.Generator().manual_seed(7))[:, 0]
                          for t in probs], 1).reshape(64, 2, n)
    sums = (digits * 10 ** torch.arange(n - 1, -1, -1)).sum(-1).sum(-1)
    exact = query.probability(feed, sums)
    for k in (2, 8):
        torch.testing.assert_close(query.probability(feed, sums, mode="topk", k=k), exact,
                                   rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(query.log_probability(feed, sums, mode="topk", k=2),
                               exact.log(), rtol=0, atol=1e-4)


def carry_probability(a: list[torch.Tensor], b: list[torch.Tensor], total: int) -> float:
    """P(a + b = total) by a plain dynamic programme over carries (digit tables, most
    significant first): the reference for N = 15, where no enumeration can run."""
    carry = {0: 1.0}
    for position in range(len(a) - 1, -1, -1):
        want = total // 10 ** (len(a) - 1 - position) % 10
        following: dict[int, float] = {}
        for c, mass in carry.items():
            for x in range(10):
                for y in range(10):
                    if (x + y + c) % 10 == want:
                        out = (x + y + c) // 10
                        following[out] = following.get(out, 0.0) + mass * float(
                            a[position][x] * b[position][y])
        carry = following
    return carry.get(total // 10 ** len(a), 0.0)


def test_fifteen_digit_sum_probability_equals_a_carry_recursion() -> None:
    query, names = addition_query(15)
    probs = digit_tables(3, 30, seed=5, scale=1.0)
    feed = {f"digit({name})": t.double() for name, t in zip(names, probs)}
    sums = torch.tensor([123456789012345, 999999999999999 + 888888888888888, 5])
    got = query.log_probability(feed, sums, mode="topk", k=2)
    for row, total in enumerate(sums.tolist()):
        reference = carry_probability([t[row] for t in probs[:15]],
                                      [t[row] for t in probs[15:]], total)
        assert float(got[row]) == pytest.approx(torch.tensor(reference).double().log().item(),
                                                abs=1e-6)


def test_fifteen_digit_addition_learns_the_digits_from_scratch() -> None:
    """Two 15-digit numbers, 600 sums, 3 epochs: the digits emerge (measured 0.958 on the
    single test digits, sum accuracy 0.26, about 0.958 ** 30). With the beam of single proofs
    the same run ended at digit accuracy 0.0, digits read one off."""
    result = paralab.run({**spec(pairs=600, test_pairs=100, epochs=3),
                          "model": {"name": "mlp", "hidden": [128]}})
    assert result.status == "completed"
    assert result.metrics["test/accuracy"] > 0.85
    assert result.metrics["test/sum_accuracy"] > 0.05
