"""The logic language and its inference: parsing, validation errors, exactness against
brute-force enumeration and against DeepProbLog, and the measured error of the approximations."""

from __future__ import annotations

import itertools

import pytest
import torch

from paralab_neurosymbolic.addition import addition_program, addition_query
from paralab_neurosymbolic.logic import (
    InferenceBudgetError,
    LogicSyntaxError,
    Program,
    ProgramError,
    Query,
)

DIGIT = "nn(net, [X], Y, [0,1,2,3,4,5,6,7,8,9]) :: digit(X, Y).\n"


def tables(batch: int, count: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(batch, 10, generator=generator) * 2, 1) for _ in range(count)]


def brute_force_sum(probs: list[torch.Tensor], n: int) -> torch.Tensor:
    """P(sum) by looping over every digit assignment of every example (the naive reference)."""
    batch = probs[0].shape[0]
    result = torch.zeros(batch, 2 * (10**n - 1) + 1, dtype=torch.float64)
    for b in range(batch):
        for digits in itertools.product(range(10), repeat=2 * n):
            weight = 1.0
            for table, d in zip(probs, digits):
                weight *= float(table[b, d])
            a = int("".join(map(str, digits[:n])))
            c = int("".join(map(str, digits[n:])))
            result[b, a + c] += weight
    return result


def test_parser_reads_deepproblog_syntax_and_reports_bad_lines() -> None:
    program = Program.parse(addition_program(2))
    assert sorted(program.predicates) == ["addition/5", "digit/2", "number/3"]
    assert program.neural["digit/2"].domain == tuple(range(10))
    with pytest.raises(LogicSyntaxError, match="line 2"):
        Program.parse("a.\nb(X :- c.")
    with pytest.raises(LogicSyntaxError, match="lacks a final '.'"):
        Program.parse("a :- b")
    with pytest.raises(LogicSyntaxError, match="not in \\[0, 1\\]"):
        Program.parse("1.5 :: coin.")


def test_unknown_predicate_is_named_with_a_suggestion() -> None:
    with pytest.raises(ProgramError, match=r"unknown predicate digt/2.*did you mean 'digit/2'"):
        Program.parse(DIGIT + "add(X, Y, Z) :- digt(X, A), digit(Y, B), Z is A + B.")
    program = Program.parse(DIGIT)
    with pytest.raises(ProgramError, match="query .* unknown predicate sum/3"):
        Query(program, "sum(a, b, Z)")


def test_cyclic_rules_are_refused_by_the_symbolic_engine_with_the_cycle() -> None:
    text = "edge(a, b).\npath(X, Y) :- edge(X, Y).\npath(X, Y) :- edge(X, Z), path(Z, Y).\n"
    program = Program.parse(text)  # recursion is valid: the general engine tables it
    with pytest.raises(ProgramError, match="symbolic engine cannot.*cyclic rules: path/2 -> path/2"):
        Query(program, "path(a, b)")


def test_exact_budget_error_and_switch_to_approximate() -> None:
    program = Program.parse(DIGIT + "big(A, B, C, D) :- digit(A, W), digit(B, X), digit(C, Y),"
                            " digit(D, Z), W + X > Y + Z.")
    query = Query(program, "big(a, b, c, d)", exact_budget=1000)
    with pytest.raises(InferenceBudgetError, match="10,000 worlds .* exact_budget 1,000.*'auto'"):
        query.strategy("exact")
    assert query.strategy("auto") == "topk"
    assert Query(program, "big(a, b, c, d)").strategy("exact") == "enumerate"


@pytest.mark.parametrize("n", [1, 2])
def test_linear_and_enumerated_inference_equal_brute_force(n: int) -> None:
    query, names = addition_query(n)
    probs = tables(3, 2 * n)
    feed = {f"digit({name})": table for name, table in zip(names, probs)}
    expected = brute_force_sum(probs, n)
    linear = query.distribution(feed)
    assert linear.strategy == "linear"
    torch.testing.assert_close(linear.probs.double(), expected, atol=1e-6, rtol=0)
    query._linear = None  # force weighted model counting over every world
    enumerated = query.distribution(feed)
    assert enumerated.strategy == "enumerate"
    torch.testing.assert_close(enumerated.probs.double(), expected, atol=1e-6, rtol=0)


def test_four_digit_addition_is_exact_and_sums_to_one() -> None:
    query, names = addition_query(4)
    assert query.worlds == 10**8 and query.strategy() == "linear"
    probs = tables(2, 8)
    result = query.distribution({f"digit({n})": t for n, t in zip(names, probs)})
    assert result.probs.shape == (2, 19999)
    torch.testing.assert_close(result.probs.sum(1), torch.ones(2))
    # P(sum = 0) is the product of the eight P(digit = 0).
    zero = torch.stack([t[:, 0] for t in probs]).prod(0)
    torch.testing.assert_close(result.probs[:, 0], zero)


def test_matches_deepproblog_exact_engine() -> None:
    pytest.importorskip("deepproblog")
    from paralab_neurosymbolic import peers

    table = tables(8, 1, seed=3)[0]
    queries = [(0, 1, 5), (2, 3, 9), (4, 5, 0), (6, 7, 18), (1, 6, 11)]
    reference = peers.query_probabilities(table, queries)
    query, _ = addition_query(1)
    a, b, s = (torch.tensor(column) for column in zip(*queries))
    ours = query.probability({"digit(a0)": table[a], "digit(b0)": table[b]}, s)
    torch.testing.assert_close(ours, torch.tensor(reference), atol=1e-6, rtol=0)
    # The same image twice is one random variable in both engines: P(sum = 18) = p(9).
    same = Query(Program.parse(addition_program(1)), "addition(a, a, Z)")
    ours_same = same.probability({"digit(a)": table[1:2]}, [18])
    reference_same = peers.query_probabilities(table, [(1, 1, 18)])
    torch.testing.assert_close(ours_same, torch.tensor(reference_same), atol=1e-6, rtol=0)


def test_deepproblog_harness_trains_through_its_circuit_cache() -> None:
    """The benchmark's DeepProbLog side queries as DeepProbLog's MNIST example does (tensor
    placeholders in a substitution): queries of one sum share one compiled circuit, and
    training moves the network. With the tensors written into the query every query compiled
    anew, which made DeepProbLog look ~3x slower than it is."""
    pytest.importorskip("deepproblog")
    import contextlib
    import io

    from paralab_neurosymbolic import peers

    examples = torch.tensor([[0, 1], [2, 3], [4, 5], [6, 7]])
    sums = torch.tensor([3, 3, 3, 3])
    query = peers.addition_dataset("train", examples, sums).to_query(1)
    assert str(query.query) == "addition(p0,p1,3)"
    assert {str(k): str(v) for k, v in query.substitution.items()} == {
        "p0": "tensor(train(2))", "p1": "tensor(train(3))"}
    torch.manual_seed(0)
    network = torch.nn.Linear(4, 10)
    before = network.weight.detach().clone()
    model = peers.addition_model(network, torch.randn(8, 4), lr=0.1)
    dataset = peers.addition_dataset("train", examples, sums)
    with contextlib.redirect_stdout(io.StringIO()):
        peers.train_epoch(model, dataset, 2)
        accuracy = peers.sum_accuracy(model, dataset)
    assert not torch.equal(before, network.weight.detach())
    assert 0.0 <= accuracy <= 1.0


def test_approximations_error_against_exact_is_measured() -> None:
    query, names = addition_query(2)
    probs = tables(16, 4, seed=1)
    feed = {f"digit({n})": t for n, t in zip(names, probs)}
    exact = query.distribution(feed).probs
    total_variation = {}
    for k in (1, 10, 100, 1000):
        approx = query.distribution(feed, mode="topk", k=k).probs
        assert bool((approx <= exact + 1e-6).all())  # top-k proofs give a lower bound
        total_variation[k] = float(0.5 * (exact - approx).abs().sum(1).mean())
    assert total_variation[1000] < total_variation[100] < total_variation[10] < total_variation[1]
    assert total_variation[1000] < 0.1
    generator = torch.Generator().manual_seed(0)
    sampled = query.distribution(feed, mode="sample", samples=4000, generator=generator).probs
    assert float(0.5 * (exact - sampled).abs().sum(1).mean()) < 0.2
    # all 10**4 worlds in the beam: top-k is exact
    full = query.distribution(feed, mode="topk", k=10**4).probs
    torch.testing.assert_close(full, exact, atol=1e-5, rtol=0)


def test_topk_is_differentiable() -> None:
    query, names = addition_query(1)
    logits = torch.randn(4, 2, 10, requires_grad=True)
    probs = torch.softmax(logits, -1)
    p = query.probability({"digit(a0)": probs[:, 0], "digit(b0)": probs[:, 1]},
                          torch.tensor([3, 5, 7, 9]), mode="topk", k=20)
    p.clamp_min(1e-12).log().sum().backward()  # as the addition protocol does
    assert logits.grad is not None
    assert bool(torch.isfinite(logits.grad).all()) and float(logits.grad.abs().sum()) > 0


def test_probabilistic_facts_and_overlapping_proofs() -> None:
    program = Program.parse(
        "0.3 :: rain.\n0.6 :: sprinkler.\nwet :- rain.\nwet :- sprinkler.\n"
        "0.5 :: edge(a, b).\n0.5 :: edge(b, c).\n0.2 :: edge(a, c).\n"
        "path2(X, Y) :- edge(X, Y).\npath2(X, Y) :- edge(X, Z), edge(Z, Y).\n"
    )
    wet = Query(program, "wet").probability({})
    torch.testing.assert_close(wet, torch.tensor([1 - 0.7 * 0.4]))
    path = Query(program, "path2(a, c)").probability({})
    torch.testing.assert_close(path, torch.tensor([1 - (1 - 0.2) * (1 - 0.25)]))


def test_symbolic_domains_and_knowledge_rules() -> None:
    program = Program.parse(
        "nn(net, [X], C, [cat, dog, car]) :: label(X, C).\n"
        "is_a(cat, animal). is_a(dog, animal). is_a(car, vehicle).\n"
        "kind(X, K) :- label(X, C), is_a(C, K).\n"
    )
    p = torch.tensor([[0.2, 0.5, 0.3]])
    animal = Query(program, "kind(x, animal)").probability({"label(x)": p})
    torch.testing.assert_close(animal, torch.tensor([0.7]))
    kinds = Query(program, "kind(x, K)").distribution({"label(x)": p})
    assert kinds.values == ["animal", "vehicle"]
    torch.testing.assert_close(kinds.probs, torch.tensor([[0.7, 0.3]]))


def test_topk_proofs_of_an_observed_sum_converge_to_exact() -> None:
    # Top-k keeps the k most probable *partial sums* (proofs reaching one merged): a sum of
    # two 2-digit numbers has two after the units (carry 0 or 1), so k = 1 is a lower bound
    # and k >= 2 is exact.
    query, names = addition_query(2)
    probs = tables(8, 4, seed=2)
    feed = {f"digit({n})": t for n, t in zip(names, probs)}
    sums = torch.tensor([0, 17, 99, 100, 101, 150, 198, 64])
    exact = query.probability(feed, sums)
    one = query.probability(feed, sums, mode="topk", k=1)
    assert bool((one <= exact + 1e-6).all()) and bool((one > 0).all())
    assert float((exact - one).max()) > 1e-3  # a carry dropped somewhere
    for k in (2, 5, 100):
        torch.testing.assert_close(query.probability(feed, sums, mode="topk", k=k), exact)


@pytest.mark.parametrize("digits", [6, 9, 15])
def test_addition_of_long_numbers_grounds_small_and_scores_observed_sums(digits) -> None:
    # The output's support (2 * 10**N - 1 sums) is never built: N = 9 used to raise
    # MemoryError while constructing the query, N = 15 passed 3 GB.
    from paralab_neurosymbolic.logic.inference import Query as Grounded
    from paralab_neurosymbolic.logic.program import Program

    names = [f"a{i}" for i in range(digits)] + [f"b{i}" for i in range(digits)]
    query = Grounded(Program.parse(addition_program(digits)),
                     f"addition({', '.join(names)}, Z)")
    assert query.support_size() == 2 * 10**digits - 1
    assert query.strategy("auto") == "topk"
    generator = torch.Generator().manual_seed(digits)
    numbers = torch.randint(0, 10, (3, 2 * digits), generator=generator)
    # Confident digit networks: each digit has probability 0.9 on its true value.
    probs = torch.full((3, 2 * digits, 10), 0.1 / 9).scatter_(2, numbers[:, :, None], 0.9)
    feed = {f"digit({n})": probs[:, i] for i, n in enumerate(names)}
    place = torch.tensor([10 ** (digits - 1 - i) for i in range(digits)])
    sums = (numbers[:, :digits] * place).sum(1) + (numbers[:, digits:] * place).sum(1)
    p = query.probability(feed, sums, mode="topk", k=8)
    # The true digits are one proof of the observed sum, of probability 0.9 ** (2N); others add.
    assert bool((p >= 0.9 ** (2 * digits) * (1 - 1e-4)).all()) and bool((p <= 1).all())
    wrong = query.probability(feed, sums + 1, mode="topk", k=8)
    assert bool((wrong < p).all())
    if query.support_size() > query.exact_budget:  # N = 9, 15: no distribution over all sums
        with pytest.raises(InferenceBudgetError, match="can take"):
            query.distribution(feed, mode="topk")


def test_reachable_sums_prune_exactly_like_a_full_table() -> None:
    from paralab_neurosymbolic.logic.inference import _Reachable

    digits = list(range(10))
    for coefficients in ([1, 1], [10, 1, 10, 1], [100, 10, 1], [1, 100], [3, 5], [1000, 1000]):
        reach, exact = _Reachable.zero(torch.device("cpu")), {0}
        for c in coefficients:
            reach = reach.plus(c, digits, 10**6)
            exact = {s + c * d for s in exact for d in digits}
            probe = torch.arange(-5, max(exact) + 6)
            assert reach.contains(probe).tolist() == [int(v) in exact for v in probe], coefficients
