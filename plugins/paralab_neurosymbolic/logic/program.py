"""A checked logic program: clauses indexed by predicate, validated before any inference.

Validation catches, with the line and the valid choices named: a body that calls an unknown
predicate, two definitions of a neural predicate, and cycles in the rules (the grounding is
top-down without tabling, so the semantics it computes need an acyclic predicate graph; the
cycle is printed).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from paralab_neurosymbolic.logic.parser import (
    Clause,
    NeuralDeclaration,
    ParsedProgram,
    parse_goal,
    parse_program,
)
from paralab_neurosymbolic.logic.terms import BUILTINS, Struct


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
        clauses: dict[str, list[Clause]] = defaultdict(list)
        for clause in parsed.clauses:
            if clause.head.signature in BUILTINS:
                raise ProgramError(
                    f"line {clause.line}: {clause.head.signature} is a built-in and cannot be defined"
                )
            clauses[clause.head.signature].append(clause)
        neural: dict[str, NeuralDeclaration] = {}
        for declaration in parsed.neural:
            signature = declaration.head.signature
            if signature in neural or signature in clauses:
                raise ProgramError(
                    f"line {declaration.line}: {signature} is declared neural and defined again; "
                    "a neural predicate has one nn(...) declaration and no clauses"
                )
            neural[signature] = declaration
        program = cls(dict(clauses), neural)
        program.validate()
        return program

    def extend(self, text: str) -> Program:
        """A new program with the clauses of ``text`` added (facts from a knowledge base ...)."""
        parsed = parse_program(text)
        merged = ParsedProgram(
            [c for group in self.clauses.values() for c in group] + parsed.clauses,
            list(self.neural.values()) + parsed.neural,
        )
        return Program.from_parsed(merged)

    @property
    def predicates(self) -> list[str]:
        return sorted(set(self.clauses) | set(self.neural))

    def dependency_graph(self):  # -> networkx.DiGraph
        """Predicate -> predicates its rules call (networkx, imported here, not at load)."""
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from(self.predicates)
        for signature, group in self.clauses.items():
            for clause in group:
                for goal in clause.body:
                    if goal.signature not in BUILTINS:
                        graph.add_edge(signature, goal.signature, line=clause.line)
        return graph

    def validate(self) -> None:
        """Raise :class:`ProgramError` on unknown predicates or cyclic rules."""
        known = self.predicates
        for signature, group in self.clauses.items():
            for clause in group:
                for goal in clause.body:
                    if goal.signature in BUILTINS or goal.signature in known:
                        continue
                    raise ProgramError(
                        f"line {clause.line}: rule for {signature} refers to unknown predicate "
                        f"{goal.signature}{_suggest(goal.signature, known)}; known predicates: "
                        f"{', '.join(known)}"
                    )
        import networkx as nx

        graph = self.dependency_graph()
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            return
        path = " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])
        raise ProgramError(
            f"cyclic rules: {path}; exact grounding here needs an acyclic program "
            "(rewrite the recursion over a bounded depth, e.g. path1/path2/path3)"
        )

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
