"""Tabled grounding: the relevant ground program of a set of goals, terminating on cycles.

ProbLog grounds top-down from the queries and evidence. Plain SLD resolution loops on
``path(X, Y) :- edge(X, Z), path(Z, Y)`` over a cyclic graph; here every call (up to variable
renaming) has a *table* of its ground answers. A call that is already tabled, even one still
being evaluated, reads the answers found so far instead of recursing, and the tables are
re-evaluated until none grows (a fixpoint), so a finite ground program always terminates.

Probabilistic choices are not made during grounding: every probabilistic fact, annotated
disjunction head and neural value is taken as possible, and recorded as a boolean *choice
variable* in the ground clause's body; negated goals are recorded as negative literals. Which
worlds make an atom true is decided later by the compiled formula (:mod:`.solver`).

An annotated disjunction ``p1::h1; ...; pn::hn :- body`` (and a neural predicate, whose values
are its heads) gets, per ground instance of the clause, choice variables ``c1..cn`` with
``P(ci) = pi / (1 - p1 - ... - p(i-1))``; head i holds when ``not c1, ..., not c(i-1), ci``.
These are independent booleans, so a BDD or an SDD over them needs no exactly-one constraint,
and head i gets exactly probability ``pi``.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, field

from paralab_neurosymbolic.logic.program import Program, ProgramError
from paralab_neurosymbolic.logic.terms import Const, Expr, Struct, Term, Var

Substitution = dict[Var, Term]
Literal = tuple["Struct | int", bool]
"""A ground body literal: ``(atom, positive)`` or ``(choice variable index, positive)``."""


@dataclass(frozen=True)
class Choice:
    """A boolean choice variable: ``probability`` is P(true) given the earlier choices of its
    group were false (``None`` for a neural one: read from the network's output)."""

    name: str
    kind: str  # "fact" | "ad" | "neural"
    probability: float | None
    group: str
    index: int
    network: str = ""


@dataclass
class GroundProgram:
    """Ground clauses ``atom -> bodies`` (an atom holds when one body's literals all hold),
    the choice variables, and the neural groups (key -> variable indices, in domain order)."""

    clauses: dict[Struct, dict[tuple[Literal, ...], None]] = field(default_factory=dict)
    choices: list[Choice] = field(default_factory=list)
    neural: dict[str, list[int]] = field(default_factory=dict)
    answers: dict[Struct, dict[Struct, None]] = field(default_factory=dict)


def walk(term: Term, subst: Substitution) -> Term:
    while isinstance(term, Var) and term in subst:
        term = subst[term]
    return term


def resolve(term: Term, subst: Substitution) -> Term:
    term = walk(term, subst)
    if isinstance(term, Struct) and term.args:
        return Struct(term.functor, tuple(resolve(a, subst) for a in term.args))
    if isinstance(term, Expr):
        return Expr(term.op, resolve(term.left, subst), resolve(term.right, subst))
    return term


def _same(a: object, b: object) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return type(a) is type(b) and a == b  # Prolog: 1 and 1.0 do not unify
    return a == b


def unify(a: Term, b: Term, subst: Substitution) -> Substitution | None:
    a, b = walk(a, subst), walk(b, subst)
    if isinstance(a, Var):
        return subst if a == b else {**subst, a: b}
    if isinstance(b, Var):
        return {**subst, b: a}
    if isinstance(a, Const) and isinstance(b, Const):
        return subst if _same(a.value, b.value) else None
    if isinstance(a, Struct) and isinstance(b, Struct):
        if a.functor != b.functor or len(a.args) != len(b.args):
            return None
        for left, right in zip(a.args, b.args):
            subst = unify(left, right, subst)  # type: ignore[assignment]
            if subst is None:
                return None
        return subst
    if isinstance(a, Expr) and isinstance(b, Expr) and a.op == b.op:
        state = unify(a.left, b.left, subst)
        return None if state is None else unify(a.right, b.right, state)
    return None


def variables(term: Term) -> list[Var]:
    if isinstance(term, Var):
        return [term]
    if isinstance(term, Struct):
        return [v for a in term.args for v in variables(a)]
    if isinstance(term, Expr):
        return variables(term.left) + variables(term.right)
    return []


def substitute(term: Term, names: dict[Var, Var]) -> Term:
    """``term`` with each variable replaced once by its name in ``names`` (a renaming)."""
    if isinstance(term, Var):
        return names.get(term, term)
    if isinstance(term, Struct) and term.args:
        return Struct(term.functor, tuple(substitute(a, names) for a in term.args))
    if isinstance(term, Expr):
        return Expr(term.op, substitute(term.left, names), substitute(term.right, names))
    return term


def variant(term: Term) -> Term:
    """``term`` with its variables renamed in order of appearance: equal for variants."""
    names = {v: Var(f"_V{i}") for i, v in enumerate(dict.fromkeys(variables(term)))}
    return substitute(term, names)


def rename(terms: tuple[Term, ...], suffix: int) -> tuple[Term, ...]:
    names = {v: Var(f"{v.name}#{suffix}") for t in terms for v in variables(t)}
    return tuple(substitute(t, names) for t in terms)


def is_ground(term: Term) -> bool:
    return not variables(term)


_FUNCTIONS = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a // b if isinstance(a, int) and isinstance(b, int) and a % b == 0
    else a / b,
    "//": lambda a, b: int(a // b) if isinstance(a, int) and isinstance(b, int)
    else int(a / b), "mod": lambda a, b: a % b, "**": lambda a, b: a ** b,
    "min": min, "max": max,
}


def evaluate(term: Term, goal: Struct) -> int | float:
    """The value of a ground arithmetic expression (``is/2`` and comparisons)."""
    if isinstance(term, Const) and isinstance(term.value, (int, float)):
        return term.value
    if isinstance(term, Var):
        raise ProgramError(f"arithmetic on the unbound variable {term} in {goal}")
    if isinstance(term, Expr) and term.op in _FUNCTIONS:
        left, right = evaluate(term.left, goal), evaluate(term.right, goal)
        if term.op in ("/", "//", "mod") and right == 0:
            raise ProgramError(f"division by zero in {goal}")
        return _FUNCTIONS[term.op](left, right)
    if isinstance(term, Struct) and term.functor in ("min", "max") and len(term.args) == 2:
        return _FUNCTIONS[term.functor](*(evaluate(a, goal) for a in term.args))
    if isinstance(term, Struct) and term.functor == "abs" and len(term.args) == 1:
        return abs(evaluate(term.args[0], goal))
    raise ProgramError(f"{term} in {goal} is not an arithmetic expression (numbers, + - * / "
                       "// mod ** min max abs)")


_COMPARE = {
    "=:=": lambda a, b: a == b, "=\\=": lambda a, b: a != b, "<": lambda a, b: a < b,
    ">": lambda a, b: a > b, "=<": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
}
_BUILTIN_NAMES = {"is", "=", "\\=", "==", "\\==", "true", "fail", "false", "between",
                  *_COMPARE}


class Grounder:
    """Tabled top-down grounding of ``program`` (see the module docstring)."""

    def __init__(self, program: Program, max_atoms: int = 1_000_000) -> None:
        self.program = program
        self.max_atoms = max_atoms
        self.result = GroundProgram()
        self._counter = itertools.count()
        self._changed = False
        self._facts: dict[tuple[int, Struct], int] = {}
        self._instances: dict[tuple[int, Term], list[int]] = {}
        self._fact_clauses = {
            id(c): n for n, c in enumerate(c for g in program.clauses.values() for c in g)
        }

    def ground(self, goals: list[Struct]) -> GroundProgram:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 20_000))
        try:
            for goal in goals:
                self.call(goal)
            while True:
                self._changed = False
                for key in list(self.result.answers):
                    self._evaluate(key)
                if not self._changed:
                    return self.result
        finally:
            sys.setrecursionlimit(limit)

    def call(self, goal: Struct) -> list[Struct]:
        """The answers found so far for ``goal`` (evaluating it first if it is new)."""
        key = variant(goal)
        answers = self.result.answers.get(key)  # type: ignore[arg-type]
        if answers is None:
            self.result.answers[key] = {}  # type: ignore[index]
            self._evaluate(key)  # type: ignore[arg-type]
            answers = self.result.answers[key]  # type: ignore[index]
        return list(answers)

    # ------------------------------------------------------------------------------ tables

    def _add(self, key: Struct, atom: Struct, body: tuple[Literal, ...]) -> None:
        if not is_ground(atom):
            raise ProgramError(f"the answer {atom} of {key} is not ground; every clause must "
                               "bind the variables of its head")
        answers = self.result.answers[key]
        if atom not in answers:
            answers[atom] = None
            self._changed = True
        bodies = self.result.clauses.setdefault(atom, {})
        if body not in bodies:
            bodies[body] = None
            self._changed = True
            if len(self.result.clauses) > self.max_atoms:
                raise ProgramError(f"grounding passed {self.max_atoms:,} atoms; is a recursion "
                                   "unbounded (e.g. over growing lists or numbers)?")

    def _evaluate(self, key: Struct) -> None:
        signature = key.signature
        if signature in self.program.neural:
            self._neural(key)
            return
        for clause in self.program.clauses.get(signature, ()):
            head, *body = rename((clause.head, *clause.body), next(self._counter))
            subst = unify(head, key, {})
            if subst is None:
                continue
            for solution, literals in self._solve(tuple(body), subst, ()):  # type: ignore[arg-type]
                atom = resolve(head, solution)
                if clause.probability is not None:
                    literals = (*literals, (self._fact(clause, atom), True))  # type: ignore[arg-type]
                self._add(key, atom, literals)  # type: ignore[arg-type]
        for number, disjunction in enumerate(self.program.disjunctions):
            for position, (_, head) in enumerate(disjunction.heads):
                if head.signature != signature:
                    continue
                renamed = rename((*(h for _, h in disjunction.heads), *disjunction.body),
                                 next(self._counter))
                heads, body = renamed[: len(disjunction.heads)], renamed[len(disjunction.heads):]
                subst = unify(heads[position], key, {})
                if subst is None:
                    continue
                for solution, literals in self._solve(body, subst, ()):  # type: ignore[arg-type]
                    instance = variant(resolve(Struct("i", renamed), solution))
                    group = self._disjunction(number, instance)
                    choice = tuple((group[j], False) for j in range(position))
                    choice += ((group[position], True),)
                    self._add(key, resolve(heads[position], solution),  # type: ignore[arg-type]
                              (*literals, *choice))

    def _fact(self, clause, atom: Struct) -> int:  # noqa: ANN001
        if not is_ground(atom):
            raise ProgramError(f"line {clause.line}: probabilistic fact {atom} is not ground")
        key = (self._fact_clauses[id(clause)], atom)
        index = self._facts.get(key)
        if index is None:
            index = len(self.result.choices)
            self.result.choices.append(Choice(str(atom), "fact", clause.probability, str(atom), 0))
            self._facts[key] = index
        return index

    def _disjunction(self, number: int, instance: Term) -> list[int]:
        key = (number, instance)
        group = self._instances.get(key)
        if group is None:
            heads = self.program.disjunctions[number].heads
            group, taken = [], 0.0
            for index, (p, head) in enumerate(heads):
                conditional = min(1.0, p / (1.0 - taken)) if taken < 1.0 else 0.0
                taken += p
                group.append(len(self.result.choices))
                self.result.choices.append(
                    Choice(f"{head}@{instance}", "ad", conditional, str(instance), index)
                )
            self._instances[key] = group
        return group

    def _neural(self, key: Struct) -> None:
        declaration = self.program.neural[key.signature]
        *inputs, output = key.args
        if not all(is_ground(term) for term in inputs):
            raise ProgramError(f"neural predicate {key.signature} called with an unbound input "
                               f"in {key}; its inputs must name the example (e.g. a, b)")
        input_term = inputs[0] if len(inputs) == 1 else Struct(",", tuple(inputs))
        name = f"{key.functor}({input_term})"
        group = self.result.neural.get(name)
        if group is None:
            group = []
            for index, value in enumerate(declaration.domain):
                group.append(len(self.result.choices))
                self.result.choices.append(Choice(f"{name}={value}", "neural", None, name, index,
                                                  declaration.network))
            self.result.neural[name] = group
        for index, value in enumerate(declaration.domain):
            if unify(output, Const(value), {}) is None:
                continue
            choice = tuple((group[j], False) for j in range(index)) + ((group[index], True),)
            self._add(key, Struct(key.functor, (*inputs, Const(value))), choice)

    # ------------------------------------------------------------------------- resolution

    def _solve(self, goals: tuple[Struct, ...], subst: Substitution,
               literals: tuple[Literal, ...]):  # noqa: ANN202 - a generator of states
        if not goals:
            yield subst, literals
            return
        for state, added in self._goal(goals[0], subst):
            yield from self._solve(goals[1:], state, literals + added)

    def _goal(self, goal: Struct, subst: Substitution):  # noqa: ANN202, C901
        name, arity = goal.functor, len(goal.args)
        if name == "\\+" and arity == 1:
            inner = resolve(goal.args[0], subst)
            if isinstance(inner, Const) and isinstance(inner.value, str):
                inner = Struct(inner.value)
            if not isinstance(inner, Struct) or not is_ground(inner):
                raise ProgramError(f"negation of the non-ground goal {inner} (in {goal}); "
                                   "negation as failure needs its goal ground when called")
            if self._builtin(inner):
                if next(iter(self._goal(inner, subst)), None) is None:
                    yield subst, ()
                return
            self.call(inner)
            yield subst, ((inner, False),)
            return
        if self._builtin(goal):
            yield from ((s, ()) for s in self._builtins(goal, subst))
            return
        called = resolve(goal, subst)
        for answer in self.call(called):  # type: ignore[arg-type]
            state = unify(called, answer, subst)
            if state is not None:
                bodies = self.result.clauses.get(answer, {})
                yield state, (() if () in bodies else ((answer, True),))

    def _builtin(self, goal: Struct) -> bool:
        return (goal.functor in _BUILTIN_NAMES and f"{goal.signature}" in _SIGNATURES
                and goal.signature not in self.program.predicates)

    def _builtins(self, goal: Struct, subst: Substitution):  # noqa: ANN202
        name, args = goal.functor, goal.args
        if name == "true":
            yield subst
        elif name in ("fail", "false"):
            return
        elif name == "=":
            state = unify(args[0], args[1], subst)
            if state is not None:
                yield state
        elif name == "\\=":
            if unify(args[0], args[1], subst) is None:
                yield subst
        elif name in ("==", "\\=="):
            equal = resolve(args[0], subst) == resolve(args[1], subst)
            if equal == (name == "=="):
                yield subst
        elif name == "is":
            value = evaluate(resolve(args[1], subst), goal)
            state = unify(args[0], Const(value), subst)
            if state is not None:
                yield state
        elif name == "between":
            low = evaluate(resolve(args[0], subst), goal)
            high = evaluate(resolve(args[1], subst), goal)
            for value in range(int(low), int(high) + 1):
                state = unify(args[2], Const(value), subst)
                if state is not None:
                    yield state
        else:
            left = evaluate(resolve(args[0], subst), goal)
            right = evaluate(resolve(args[1], subst), goal)
            if _COMPARE[name](left, right):
                yield subst


_SIGNATURES = {"is/2", "=/2", "\\=/2", "==/2", "\\==/2", "true/0", "fail/0", "false/0",
               "between/3", *(f"{op}/2" for op in _COMPARE)}
