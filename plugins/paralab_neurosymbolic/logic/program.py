"""A checked logic program: clauses indexed by predicate, validated before any inference.

Validation catches, with the line and the valid choices named: a body that calls an unknown
predicate and two definitions of a neural predicate. Recursion is allowed (the general engine,
:mod:`.solver`, tables it); :meth:`Program.symbolic_limits` says what keeps a program out of
the batched symbolic engine (:mod:`.inference`): recursion, negation, annotated disjunctions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from paralab_neurosymbolic.logic.parser import (
    Clause,
    Disjunction,
    NeuralDeclaration,
    ParsedProgram,
    parse_goal,
    parse_program,
)
from paralab_neurosymbolic.logic.terms import BUILTINS, GENERAL_BUILTINS, Struct

LISTS = """
member(X, [X|_]).
member(X, [_|T]) :- member(X, T).
append([], L, L).
append([H|T], L, [H|R]) :- append(T, L, R).
reverse(L, R) :- reverse_(L, [], R).
reverse_([], A, A).
reverse_([H|T], A, R) :- reverse_(T, [H|A], R).
select(X, [X|T], T).
select(X, [H|T], [H|R]) :- select(X, T, R).
length([], 0).
length([_|T], N) :- length(T, M), N is M + 1.
sum_list([], 0).
sum_list([H|T], S) :- sum_list(T, R), S is R + H.
nth0(0, [X|_], X).
nth0(I, [_|T], X) :- nth0(J, T, X), I is J + 1.
last([X], X).
last([_|T], X) :- last(T, X).
"""
"""``library(lists)`` (``:- use_module(library(lists)).``), written in the language itself;
``length/2`` and ``nth0/3`` need a bound list."""


def _goals(body: tuple[Struct, ...]) -> list[Struct]:
    """Body goals with negations unwrapped (the goal under ``\\+``)."""
    found = []
    for goal in body:
        while goal.functor == "\\+" and len(goal.args) == 1 and isinstance(goal.args[0], Struct):
            goal = goal.args[0]
        found.append(goal)
    return found


class ProgramError(ValueError):
    """A program that parses but cannot be used: unknown predicates, cycles, clashes."""


def _suggest(name: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass
class Program:
    """Clauses and neural declarations, checked; build with :meth:`parse` or :meth:`load`."""

    clauses: dict[str, list[Clause]] = field(default_factory=dict)
    neural: dict[str, NeuralDeclaration] = field(default_factory=dict)
    disjunctions: list[Disjunction] = field(default_factory=list)
    queries: list[Struct] = field(default_factory=list)
    evidence: list[tuple[Struct, bool]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Program:
        """Parse and validate ``text``; raises :class:`ProgramError` or ``LogicSyntaxError``."""
        return cls.from_parsed(parse_program(text))

    @classmethod
    def load(cls, path: str | Path) -> Program:
        path = Path(path)
        try:
            return cls.parse(path.read_text("utf-8"))
        except (ProgramError, ValueError) as error:
            raise type(error)(f"{path}: {error}") from None

    @classmethod
    def from_parsed(cls, parsed: ParsedProgram) -> Program:
        if "lists" in parsed.libraries:
            library = parse_program(LISTS)
            defined = {c.head.signature for c in parsed.clauses}
            parsed = ParsedProgram(
                parsed.clauses + [c for c in library.clauses if c.head.signature not in defined],
                parsed.neural, parsed.disjunctions, parsed.queries, parsed.evidence,
            )
        unknown = parsed.libraries - {"lists"}
        if unknown:
            raise ProgramError(f"unknown library {sorted(unknown)[0]!r}; available: lists")
        clauses: dict[str, list[Clause]] = defaultdict(list)
        for clause in parsed.clauses + [
            Clause(head, d.body, None, d.line) for d in parsed.disjunctions for _, head in d.heads
        ]:
            if clause.head.signature in GENERAL_BUILTINS:
                raise ProgramError(
                    f"line {clause.line}: {clause.head.signature} is a built-in and cannot be defined"
                )
        for clause in parsed.clauses:
            clauses[clause.head.signature].append(clause)
        for disjunction in parsed.disjunctions:
            for _, head in disjunction.heads:
                clauses.setdefault(head.signature, [])
        neural: dict[str, NeuralDeclaration] = {}
        for declaration in parsed.neural:
            signature = declaration.head.signature
            if signature in neural or signature in clauses:
                raise ProgramError(
                    f"line {declaration.line}: {signature} is declared neural and defined again; "
                    "a neural predicate has one nn(...) declaration and no clauses"
                )
            neural[signature] = declaration
        program = cls(dict(clauses), neural, list(parsed.disjunctions), list(parsed.queries),
                      list(parsed.evidence))
        program.validate()
        return program

    def extend(self, text: str) -> Program:
        """A new program with the clauses of ``text`` added (facts from a knowledge base ...)."""
        parsed = parse_program(text)
        merged = ParsedProgram(
            [c for group in self.clauses.values() for c in group] + parsed.clauses,
            list(self.neural.values()) + parsed.neural,
            self.disjunctions + parsed.disjunctions,
            self.queries + parsed.queries,
            self.evidence + parsed.evidence,
            parsed.libraries,
        )
        return Program.from_parsed(merged)

    @property
    def predicates(self) -> list[str]:
        return sorted(set(self.clauses) | set(self.neural))

    def _rules(self) -> list[tuple[str, int, tuple[Struct, ...]]]:
        """(head signature, line, body) of every rule, annotated disjunctions included."""
        rules = [(s, c.line, c.body) for s, group in self.clauses.items() for c in group]
        rules += [(h.signature, d.line, d.body) for d in self.disjunctions for _, h in d.heads]
        return rules

    def dependency_graph(self):  # -> networkx.DiGraph
        """Predicate -> predicates its rules call (networkx, imported here, not at load)."""
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from(self.predicates)
        for signature, line, body in self._rules():
            for goal in _goals(body):
                if goal.signature not in GENERAL_BUILTINS:
                    graph.add_edge(signature, goal.signature, line=line)
        return graph

    def validate(self) -> None:
        """Raise :class:`ProgramError` on calls of unknown predicates (bodies, queries,
        evidence)."""
        known = self.predicates
        for signature, line, body in self._rules():
            for goal in _goals(body):
                if goal.signature in GENERAL_BUILTINS or goal.signature in known:
                    continue
                raise ProgramError(
                    f"line {line}: rule for {signature} refers to unknown predicate "
                    f"{goal.signature}{_suggest(goal.signature, known)}; known predicates: "
                    f"{', '.join(known)}"
                )
        for goal in self.queries + [atom for atom, _ in self.evidence]:
            self.check_goal(goal)

    def cycle(self) -> str | None:
        """A cycle of the predicate graph (``"path/2 -> path/2"``), or ``None``."""
        import networkx as nx

        try:
            cycle = nx.find_cycle(self.dependency_graph())
        except nx.NetworkXNoCycle:
            return None
        return " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])

    def symbolic_limits(self) -> list[str]:
        """What keeps this program out of the batched symbolic engine (empty: nothing)."""
        limits = []
        path = self.cycle()
        if path is not None:
            limits.append(f"cyclic rules: {path}")
        if self.disjunctions:
            limits.append(f"annotated disjunctions or probabilistic rules (line "
                          f"{self.disjunctions[0].line})")
        extra = [(goal.signature, line) for _, line, body in self._rules() for goal in body
                 if goal.signature in GENERAL_BUILTINS and goal.signature not in BUILTINS]
        if extra:
            limits.append(f"the built-in {extra[0][0]} (line {extra[0][1]})")
        return limits

    def check_goal(self, goal: Struct | str) -> Struct:
        """Parse a query and check that it calls a known predicate."""
        if isinstance(goal, str):
            goal = parse_goal(goal)
        if goal.signature not in self.predicates and goal.signature not in BUILTINS:
            raise ProgramError(
                f"query {goal} calls unknown predicate {goal.signature}"
                f"{_suggest(goal.signature, self.predicates)}; known predicates: "
                f"{', '.join(self.predicates)}"
            )
        return goal
