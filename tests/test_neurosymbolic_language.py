"""The ProbLog language in the general engine (:class:`Solver`): parity with ProbLog 2.3 on a
suite covering each construct (ProbLog computes every reference here, in the test), the
errors for unstratified programs and bad syntax, neural predicates against the batched
symbolic engine, and the support blow-up of MNIST addition at N = 15 (issue 19, item 3)."""

from __future__ import annotations

import tracemalloc

import pytest
import torch

from paralab_neurosymbolic.addition import addition_program
from paralab_neurosymbolic.logic import LogicSyntaxError, Program, ProgramError, Query, Solver

problog = pytest.importorskip("problog")

SUITE = {
    # recursion over a cyclic graph: tabling must terminate, loops must not add probability
    "reachability_with_cycles": """
        0.6::edge(a,b). 0.5::edge(b,c). 0.7::edge(c,a). 0.4::edge(b,d). 0.9::edge(c,d).
        0.3::edge(a,c). 0.8::edge(d,b).
        path(X,Y) :- edge(X,Y).
        path(X,Y) :- edge(X,Z), path(Z,Y).
        query(path(a,X)). query(path(d,a)). query(path(e,a)).""",
    # annotated disjunctions, probabilistic rules, negation in bodies, evidence
    "burglary_alarm_with_evidence": """
        person(john). person(mary).
        0.7::burglary. 0.2::earthquake.
        0.9::alarm :- burglary, earthquake.
        0.8::alarm :- burglary, \\+earthquake.
        0.1::alarm :- \\+burglary, earthquake.
        0.8::calls(X); 0.1::texts(X) :- alarm, person(X).
        0.1::calls(X) :- \\+alarm, person(X).
        evidence(calls(john), true). evidence(texts(mary), false).
        query(burglary). query(earthquake). query(calls(mary)). query(alarm).""",
    # stratified negation, over several levels
    "negation": """
        0.3::rain. 0.6::sprinkler :- \\+ rain. wet :- rain. wet :- sprinkler. dry :- \\+ wet.
        node(1). node(2). node(3). 0.5::bad(1). 0.2::bad(3).
        safe(X) :- node(X), \\+ bad(X).
        somebad :- node(X), bad(X). allsafe :- \\+ somebad.
        0.4::move(p, q). 0.7::move(q, r). 0.5::move(p, r).
        win(X) :- move(X, Y), \\+ win(Y).
        query(dry). query(safe(X)). query(allsafe). query(win(p)). query(win(q)).""",
    # lists (the lists library and user list predicates) with arithmetic and comparison
    "lists_and_arithmetic": """
        :- use_module(library(lists)).
        0.4::pick(a). 0.7::pick(b). 0.2::pick(c).
        chosen([], []).
        chosen([H|T], [H|R]) :- pick(H), chosen(T, R).
        chosen([H|T], R) :- \\+ pick(H), chosen(T, R).
        count(L, N) :- chosen(L, C), length(C, N).
        big :- count([a,b,c], N), N >= 2.
        0.5::coin(1). 0.5::coin(2). 0.5::coin(3).
        score([], 0).
        score([H|T], S) :- score(T, R), coin(H), S is R + H * 2.
        score([H|T], S) :- score(T, S), \\+ coin(H).
        odd_score(S) :- score([1,2,3], S), S mod 4 =\\= 0, between(1, 20, S).
        query(count([a,b,c], N)). query(member(b, [a,b])). query(big). query(odd_score(S)).
        query(append(X, [c], [a, b, c])).""",
    # an annotated disjunction whose heads sum to 1, with a rule over body-only variables
    "dice_and_rules": """
        1/6::die(1); 1/6::die(2); 1/6::die(3); 1/6::die(4); 1/6::die(5); 1/6::die(6).
        0.5::red(X); 0.5::blue(X) :- member_of(X).
        member_of(1). member_of(2).
        0.3::any_red :- red(X).
        high :- die(X), X > 4.
        query(high). query(any_red). query(die(3)). query(blue(2)).
        evidence(\\+ die(6)).""",
}


def problog_reference(text: str) -> dict[str, float]:
    from problog import get_evaluatable
    from problog.program import PrologString

    result = get_evaluatable().create_from(PrologString(text)).evaluate()
    return {str(term).replace(" ", ""): float(p) for term, p in result.items()}


@pytest.mark.parametrize("compiler", ["bdd", "sdd"])
@pytest.mark.parametrize("name", sorted(SUITE))
def test_exact_inference_equals_problog(name: str, compiler: str) -> None:
    if compiler == "sdd":
        pytest.importorskip("pysdd")
    text = SUITE[name]
    solver = Solver(Program.parse(text), compiler=compiler)
    assert solver.size > 0
    ours = {key.replace(" ", ""): p for key, p in solver.run().items()}
    reference = problog_reference(text)
    assert set(ours) == set(reference)
    for key, p in reference.items():
        assert ours[key] == pytest.approx(p, abs=1e-9), key
    assert any(0.0 < p < 1.0 for p in reference.values())  # a suite that tests something


def test_cyclic_graph_terminates_and_loops_add_nothing() -> None:
    # a -> b -> a is a loop: P(path(a, c)) is only through b -> c
    solver = Solver.parse("0.5::e(a,b). 0.5::e(b,a). 0.5::e(b,c).\n"
                          "p(X,Y) :- e(X,Y).\np(X,Y) :- e(X,Z), p(Z,Y).\nquery(p(a,c)).")
    assert solver.run() == {"p(a, c)": pytest.approx(0.25)}


def test_unstratified_negation_is_an_error_naming_the_cycle() -> None:
    program = Program.parse("0.5::q. p :- q, \\+ r. r :- \\+ p. query(p).")
    with pytest.raises(ProgramError, match=r"not stratified: .*\((p -> \\\+ r -> p|r -> \\\+ p -> r)\)"):
        Solver(program)
    with pytest.raises(ProgramError, match="non-ground goal"):
        Solver.parse("n(1). f(X) :- \\+ n(X). query(f(1)). query(f(Y)).", queries=["f(Y)"])


def test_parse_errors_name_line_and_column() -> None:
    with pytest.raises(LogicSyntaxError, match=r"line 3, column 13: expected '\)'"):
        Program.parse("a.\nb :- a.\nc(X) :- a(X :- b.")
    with pytest.raises(LogicSyntaxError, match=r"line 2, column 8: cannot read '\$"):
        Program.parse("a.\nb :- a $ c.")
    with pytest.raises(LogicSyntaxError, match="sum to 1.2 > 1"):
        Program.parse("0.6::a; 0.6::b.")
    with pytest.raises(LogicSyntaxError, match="unsupported directive"):
        Program.parse(":- dynamic(foo/1).")


def test_evidence_of_probability_zero_is_an_error() -> None:
    with pytest.raises(ProgramError, match="evidence a=true has probability 0"):
        Solver.parse("0.5::b. a :- b, \\+ b. evidence(a). query(b).").run()


def test_neural_predicates_match_the_symbolic_engine_with_gradients() -> None:
    text = addition_program(1)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 10, generator=generator, requires_grad=True)
    a, b = torch.softmax(logits, -1)
    symbolic = Query(Program.parse(text), "addition(a, b, Z)")
    expected = symbolic.distribution({"digit(a)": a, "digit(b)": b}).probs  # (5, 19)
    solver = Solver(Program.parse(text), queries=["addition(a, b, Z)"])
    assert [str(q) for q in solver.queries] == [f"addition(a, b, {s})" for s in range(19)]
    ours = torch.stack(solver.evaluate({"digit(a)": a, "digit(b)": b}), dim=1)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    (grad_ours,) = torch.autograd.grad(ours[:, 7].log().sum(), logits, retain_graph=True)
    (grad_ref,) = torch.autograd.grad(expected[:, 7].log().sum(), logits)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-4, atol=1e-6)
    assert grad_ours.abs().sum() > 0


def test_mnist_addition_at_15_digits_costs_no_memory_before_the_budget() -> None:
    """Issue 19 item 3: the support of a 15-digit sum (2e15 values) is counted from its
    bounds, never built; constructing the query and the top-k path stay small in memory."""
    n = 15
    names = [f"a{i}" for i in range(n)] + [f"b{i}" for i in range(n)]
    program = Program.parse(addition_program(n))
    tracemalloc.start()
    try:
        query = Query(program, f"addition({', '.join(names)}, Z)")
        assert query.support_size() == 2 * (10**n - 1) + 1
        generator = torch.Generator().manual_seed(0)
        probs = {f"digit({name})": torch.softmax(torch.randn(2, 10, generator=generator), 1)
                 for name in names}
        sums = torch.tensor([123456789012345 + 987654321098765, 10**15], dtype=torch.long)
        p = query.probability(probs, sums, mode="topk", k=16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert p.shape == (2,) and bool((p > 0).all()) and bool((p <= 1).all())
    assert query.strategy("auto") == "topk"


def test_sdd_is_compiled_once_and_reevaluated_differentiably() -> None:
    """``inference = "sdd"``: the query's SDD is built on the first batch and only
    re-evaluated on the next; values and gradients equal the exact convolution."""
    pytest.importorskip("pysdd")
    query = Query(Program.parse(addition_program(1)), "addition(a, b, Z)")
    generator = torch.Generator().manual_seed(1)
    solvers = []
    for batch in (3, 6):
        logits = torch.randn(2, batch, 10, generator=generator, requires_grad=True)
        a, b = torch.softmax(logits, -1)
        feed = {"digit(a)": a, "digit(b)": b}
        sums = torch.randint(0, 19, (batch,), generator=generator)
        ours = query.probability(feed, sums, mode="sdd")
        exact = query.probability(feed, sums, mode="exact")
        torch.testing.assert_close(ours, exact, rtol=1e-5, atol=1e-7)
        (grad_ours,) = torch.autograd.grad(ours.log().sum(), logits, retain_graph=True)
        (grad_exact,) = torch.autograd.grad(exact.log().sum(), logits)
        torch.testing.assert_close(grad_ours, grad_exact, rtol=1e-4, atol=1e-6)
        solvers.append(query._solver)
    assert solvers[0] is solvers[1] and solvers[0].compiler == "sdd"
    assert query.strategy("sdd") == "sdd"


@pytest.mark.parametrize("compiler", ["bdd", "sdd"])
def test_fact_probabilities_are_reevaluated_batched_and_differentiable(compiler: str) -> None:
    """One compiled circuit, a batch of edge probabilities: equal to ProbLog on each
    assignment; the gradient of the multilinear P equals P(edge true) - P(edge false)."""
    if compiler == "sdd":
        pytest.importorskip("pysdd")
    rules = "path(X,Y) :- edge(X,Y).\npath(X,Y) :- edge(X,Z), path(Z,Y).\nquery(path(a,d)).\n"
    edges = ["edge(a,b)", "edge(b,c)", "edge(c,a)", "edge(c,d)", "edge(b,d)"]
    text = "".join(f"0.5::{e}. " for e in edges) + "\n" + rules
    solver = Solver(Program.parse(text), compiler=compiler)
    settings = torch.tensor([[0.2, 0.9, 0.4, 0.7, 0.1], [0.6, 0.3, 0.8, 0.5, 0.95]],
                            dtype=torch.float64, requires_grad=True)
    names = {c.name.replace(" ", ""): c.name for c in solver.ground.choices}
    facts = {names[e]: settings[:, i] for i, e in enumerate(edges)}
    (p,) = solver.evaluate(facts=facts)
    for b, row in enumerate(settings.detach().tolist()):
        program = "".join(f"{value}::{e}. " for value, e in zip(row, edges))
        assert float(p[b].detach()) == pytest.approx(problog_reference(program + rules)["path(a,d)"],
                                            abs=1e-12)
    (gradient,) = torch.autograd.grad(p[0], settings)
    values = settings.detach()[0].tolist()
    for i, edge in enumerate(edges):
        ends = []
        for value in (1.0, 0.0):
            changed = values[:i] + [value] + values[i + 1:]
            program = "".join(f"{v}::{e}. " for v, e in zip(changed, edges))
            ends.append(problog_reference(program + rules)["path(a,d)"])
        assert float(gradient[0, i]) == pytest.approx(ends[0] - ends[1], abs=1e-9), edge
    with pytest.raises(ProgramError, match="no probabilistic facts"):
        solver.evaluate(facts={"edge(x, y)": 0.5})
