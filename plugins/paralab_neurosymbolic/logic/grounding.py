"""Symbolic grounding: SLD resolution that keeps neural outputs as random variables.

DeepProbLog grounds every example separately and enumerates a neural predicate's values while
it resolves, so a batch of N queries builds N arithmetic circuits. Here a query *template*
(``addition(a, b, Z)`` where ``a`` and ``b`` stand for whichever images a batch holds) is
resolved once: the output of ``digit(a, A)`` becomes a :class:`RandomVar`, ``Z is A + B``
becomes the expression ``A + B``, and a comparison with a random variable becomes a
constraint. The result is a list of :class:`Proof` s that :mod:`.inference` evaluates for a
whole batch of probability tensors at once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from paralab_neurosymbolic.logic.program import Program, ProgramError
from paralab_neurosymbolic.logic.terms import (
    COMPARISONS,
    Const,
    Expr,
    RandomVar,
    Struct,
    Term,
    Var,
    is_ground,
)

Substitution = dict[Var, Term]


@dataclass(frozen=True)
class Proof:
    """One way the query holds: constraints over random variables that must all be true and
    probabilistic facts that must be true; ``answer`` binds the query's variables."""

    constraints: tuple[Expr, ...]
    facts: tuple[RandomVar, ...]
    answer: tuple[Term, ...]


def walk(term: Term, subst: Substitution) -> Term:
    while isinstance(term, Var) and term in subst:
        term = subst[term]
    return term


def resolve(term: Term, subst: Substitution) -> Term:
    """``term`` with every bound variable replaced, constants folded."""
    term = walk(term, subst)
    if isinstance(term, Struct):
        return Struct(term.functor, tuple(resolve(a, subst) for a in term.args))
    if isinstance(term, Expr):
        left, right = resolve(term.left, subst), resolve(term.right, subst)
        if isinstance(left, Const) and isinstance(right, Const):
            return Const(_apply(term.op, left.value, right.value))
        return Expr(term.op, left, right)
    return term


def _apply(op: str, left: object, right: object) -> int | float | bool:
    if not isinstance(left, (int, float)) or not isinstance(right, (int, float)):
        if op in ("==", "!="):
            return (left == right) == (op == "==")
        raise ProgramError(f"arithmetic {op} on non-numbers {left!r} and {right!r}")
    operations = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "//": lambda a, b: a // b,
        "mod": lambda a, b: a % b,
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        ">": lambda a, b: a > b,
        "=<": lambda a, b: a <= b,
        ">=": lambda a, b: a >= b,
    }
    return operations[op](left, right)


def unify(
    a: Term, b: Term, subst: Substitution, constraints: tuple[Expr, ...]
) -> tuple[Substitution, tuple[Expr, ...]] | None:
    """Unify two terms; a random variable meeting a value becomes an equality constraint."""
    a, b = walk(a, subst), walk(b, subst)
    if a == b:
        return subst, constraints
    if isinstance(a, Var):
        return {**subst, a: b}, constraints
    if isinstance(b, Var):
        return {**subst, b: a}, constraints
    symbolic = (RandomVar, Expr)
    if isinstance(a, symbolic) or isinstance(b, symbolic):
        for side, other in ((a, b), (b, a)):
            if (
                isinstance(side, RandomVar)
                and isinstance(other, Const)
                and not any(_same(other.value, v) for v in side.domain)
            ):
                return None  # the value is outside the domain: this branch cannot hold
        if isinstance(a, Struct) or isinstance(b, Struct):
            return None
        return subst, (*constraints, Expr("==", a, b))
    if isinstance(a, Const) and isinstance(b, Const):
        return (subst, constraints) if _same(a.value, b.value) else None
    if isinstance(a, Struct) and isinstance(b, Struct):
        if a.functor != b.functor or len(a.args) != len(b.args):
            return None
        state: tuple[Substitution, tuple[Expr, ...]] | None = (subst, constraints)
        for left, right in zip(a.args, b.args):
            state = unify(left, right, *state)
            if state is None:
                return None
        return state
    return None


def _same(left: object, right: object) -> bool:
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return float(left) == float(right)
    return left == right


def _rename(clause_terms: tuple[Term, ...], suffix: int) -> tuple[Term, ...]:
    def rename(term: Term) -> Term:
        if isinstance(term, Var):
            return Var(f"{term.name}#{suffix}")
        if isinstance(term, Struct):
            return Struct(term.functor, tuple(rename(a) for a in term.args))
        if isinstance(term, Expr):
            return Expr(term.op, rename(term.left), rename(term.right))
        return term

    return tuple(rename(t) for t in clause_terms)


def ground(program: Program, goal: Struct, max_proofs: int = 100_000) -> list[Proof]:
    """Every proof of ``goal``; raises :class:`ProgramError` past ``max_proofs``."""
    query_vars = tuple(dict.fromkeys(_vars(goal)))
    counter = itertools.count()
    proofs: list[Proof] = []
    stack: list[tuple[tuple[Struct, ...], Substitution, tuple[Expr, ...], tuple[RandomVar, ...]]]
    stack = [((goal,), {}, (), ())]
    while stack:
        goals, subst, constraints, facts = stack.pop()
        if not goals:
            resolved = tuple(resolve(c, subst) for c in constraints)
            if any(isinstance(c, Const) and not c.value for c in resolved):
                continue
            kept = tuple(c for c in resolved if isinstance(c, Expr))
            answer = tuple(resolve(v, subst) for v in query_vars)
            proofs.append(Proof(kept, facts, answer))
            if len(proofs) > max_proofs:
                raise ProgramError(f"query {goal} has more than {max_proofs} proofs")
            continue
        first, rest = goals[0], goals[1:]
        for state in reversed(list(_step(program, first, subst, constraints, facts, counter))):
            new_subst, new_constraints, new_facts, new_goals = state
            stack.append((new_goals + rest, new_subst, new_constraints, new_facts))
    return proofs


def _vars(term: Term) -> list[Var]:
    if isinstance(term, Var):
        return [term]
    if isinstance(term, Struct):
        return [v for a in term.args for v in _vars(a)]
    if isinstance(term, Expr):
        return _vars(term.left) + _vars(term.right)
    return []


def _step(program, goal, subst, constraints, facts, counter):  # noqa: ANN001, ANN202
    """The states one resolution step on ``goal`` leads to."""
    signature = goal.signature
    if signature == "is/2":
        value = resolve(goal.args[1], subst)
        if not is_ground(value):
            raise ProgramError(f"arithmetic on an unbound variable in {resolve(goal, subst)}")
        state = unify(goal.args[0], value, subst, constraints)
        if state is not None:
            yield (*state, facts, ())
        return
    if signature == "=/2":
        state = unify(goal.args[0], goal.args[1], subst, constraints)
        if state is not None:
            yield (*state, facts, ())
        return
    if goal.functor in COMPARISONS and len(goal.args) == 2:
        left, right = resolve(goal.args[0], subst), resolve(goal.args[1], subst)
        if not (is_ground(left) and is_ground(right)):
            raise ProgramError(f"comparison on an unbound variable in {resolve(goal, subst)}")
        op = COMPARISONS[goal.functor]
        if isinstance(left, Const) and isinstance(right, Const):
            if _apply(op, left.value, right.value):
                yield subst, constraints, facts, ()
            return
        yield subst, (*constraints, Expr(op, left, right)), facts, ()
        return
    declaration = program.neural.get(signature)
    if declaration is not None:
        *inputs, output = goal.args
        inputs = [resolve(term, subst) for term in inputs]
        if not all(is_ground(term) for term in inputs):
            raise ProgramError(
                f"neural predicate {signature} called with an unbound input in "
                f"{resolve(goal, subst)}; its inputs must name the example (e.g. a, b)"
            )
        input_term = inputs[0] if len(inputs) == 1 else Struct(",", tuple(inputs))
        variable = RandomVar(
            "neural",
            f"{goal.functor}({input_term})",
            declaration.domain,
            declaration.network,
            input_term,
        )
        state = unify(output, variable, subst, constraints)
        if state is not None:
            yield (*state, facts, ())
        return
    for clause in program.clauses.get(signature, ()):
        head, *body = _rename((clause.head, *clause.body), next(counter))
        state = unify(head, goal, subst, constraints)
        if state is None:
            continue
        if clause.probability is not None:
            fact = resolve(head, state[0])
            if not is_ground(fact):
                raise ProgramError(f"line {clause.line}: probabilistic fact {fact} is not ground")
            variable = RandomVar("fact", str(fact), (0, 1), probability=clause.probability)
            yield (*state, (*facts, variable) if variable not in facts else facts, ())
        else:
            yield (*state, facts, tuple(body))
