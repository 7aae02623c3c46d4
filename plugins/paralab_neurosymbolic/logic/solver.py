"""The general engine: ProbLog's semantics for the whole language, by knowledge compilation.

1. :mod:`.tabling` grounds the queries and evidence into a ground program (terminating on
   cyclic graphs);
2. the ground program is checked to be stratified: no atom may depend on its own negation
   (the error prints the cycle);
3. each query and the evidence become formulas over the independent choice variables, with
   cycles broken the standard way: an atom inside a recursive component is true when a clause
   proves it without going through an atom already on the current derivation path (which
   gives the least model of every world);
4. the formulas are compiled into one BDD (:mod:`.bdd`, ``compiler="bdd"``) or SDD (PySDD,
   :mod:`.sdd`, ``compiler="sdd"``), once per query set ("shape"); then
   ``P(q | e) = WMC(q and e) / WMC(e)`` is a pass over the circuit, in double precision for
   fixed probabilities or batched and differentiable for neural ones.

>>> solver = Solver(Program.parse('''
...     0.5::edge(a, b). 0.5::edge(b, a). 0.5::edge(b, c).
...     path(X, Y) :- edge(X, Y).
...     path(X, Y) :- edge(X, Z), path(Z, Y).
...     query(path(a, c)).'''))
>>> solver.run()
{'path(a, c)': 0.25}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paralab_neurosymbolic.logic.bdd import BDD
from paralab_neurosymbolic.logic.parser import parse_goal
from paralab_neurosymbolic.logic.program import Program, ProgramError
from paralab_neurosymbolic.logic.tabling import Grounder, GroundProgram, is_ground
from paralab_neurosymbolic.logic.terms import Struct

COMPILERS = ("bdd", "sdd")


class Solver:
    """Queries and evidence of ``program`` grounded and compiled once.

    ``queries`` and ``evidence`` default to the program's ``query(...)`` and
    ``evidence(...)``; a query with variables stands for all its ground answers.
    """

    def __init__(
        self,
        program: Program,
        queries: list[str | Struct] | None = None,
        evidence: list[tuple[str | Struct, bool]] | None = None,
        *,
        compiler: str = "bdd",
        max_atoms: int = 1_000_000,
    ) -> None:
        if compiler not in COMPILERS:
            raise ValueError(f"compiler {compiler!r} unknown; choose from {', '.join(COMPILERS)}")
        self.program = program
        goals = [program.check_goal(q) for q in (program.queries if queries is None else queries)]
        observed = program.evidence if evidence is None else [
            (program.check_goal(a) if isinstance(a, str) else a, bool(v)) for a, v in evidence
        ]
        for atom, _ in observed:
            if not is_ground(atom):
                raise ProgramError(f"evidence {atom} is not ground")
        if not goals:
            raise ProgramError("no queries: add query(atom). to the program or pass queries=")
        grounder = Grounder(program, max_atoms=max_atoms)
        self.ground: GroundProgram = grounder.ground(goals + [atom for atom, _ in observed])
        self.queries: list[Struct] = []
        for goal in goals:
            answers = grounder.call(goal) if not is_ground(goal) else [goal]
            self.queries.extend(a for a in answers if a not in self.queries)
        self.evidence = list(observed)
        self._components = _stratify(self.ground)
        self.compiler = compiler
        self._formulas: dict[tuple[Struct, frozenset[Struct]], Any] = {}
        if compiler == "sdd":
            from paralab_neurosymbolic.logic.sdd import SddBuilder

            self.manager: Any = SddBuilder(len(self.ground.choices))
        else:
            self.manager = BDD()
        manager = self.manager
        evidence_node = manager.true
        for atom, value in self.evidence:
            node = self._formula(atom, frozenset())
            evidence_node = manager.conjoin(evidence_node, node if value else manager.negate(node))
        self._roots = [manager.conjoin(self._formula(q, frozenset()), evidence_node)
                       for q in self.queries] + [evidence_node]
        if compiler == "sdd":
            self.manager.prepare(self._roots)

    @classmethod
    def parse(cls, text: str, **options: Any) -> Solver:
        return cls(Program.parse(text), **options)

    # ------------------------------------------------------------------------- inference

    @property
    def size(self) -> int:
        """Inner nodes (BDD) or elements (SDD) of the compiled circuit."""
        return self.manager.size(self._roots)

    def weights(self, probabilities: Mapping[str, Any] | None = None,
                facts: Mapping[str, Any] | None = None) -> list[Any]:
        """P(true) of every choice variable; neural ones from ``probabilities[key]`` (a
        ``(batch, domain)`` tensor per neural variable such as ``"digit(a)"``); ``facts``
        replaces the probabilities of probabilistic facts by name (``"edge(a, b)"``: a float
        or a ``(batch,)`` tensor), so learned or batched fact probabilities need no
        recompilation."""
        probabilities = probabilities or {}
        missing = [key for key in self.ground.neural if key not in probabilities]
        if missing:
            raise ProgramError(f"probabilities needed for the neural variables {missing}; "
                               f"given: {sorted(probabilities)}")
        weights: list[Any] = [c.probability for c in self.ground.choices]
        if facts:
            index = {c.name: i for i, c in enumerate(self.ground.choices) if c.kind == "fact"}
            unknown = sorted(set(facts) - set(index))
            if unknown:
                raise ProgramError(f"no probabilistic facts {unknown} in the ground program; "
                                   f"its facts: {', '.join(sorted(index))}")
            for name, p in facts.items():
                weights[index[name]] = p
        for key, group in self.ground.neural.items():
            table = probabilities[key]
            if table.shape[-1] != len(group):
                raise ValueError(f"probabilities for {key} have {table.shape[-1]} columns, "
                                 f"its domain has {len(group)} values")
            remaining = 1.0 - table.cumsum(-1) + table  # 1 - sum of the earlier values
            conditional = (table / remaining.clamp_min(1e-12)).clamp(0.0, 1.0)
            for position, index in enumerate(group):
                weights[index] = conditional[..., position]
        return weights

    def evaluate(self, probabilities: Mapping[str, Any] | None = None,
                 facts: Mapping[str, Any] | None = None) -> list[Any]:
        """P(query | evidence) for each of :attr:`queries`, floats or (batch,) tensors."""
        weights = self.weights(probabilities, facts)
        counts = self.manager.weighted_count(self._roots, weights)
        *joint, evidence = counts
        if not isinstance(evidence, float):
            if bool((evidence <= 0).any()):
                raise ProgramError("the evidence has probability 0 for some example")
        elif evidence <= 0.0:
            raise ProgramError(f"the evidence {self._evidence_text()} has probability 0")
        results = [p / evidence for p in joint]
        reference = next((w for w in weights if not isinstance(w, (float, int))), None)
        if reference is not None:  # batched: a query that no weight reaches is still (batch,)
            results = [reference.new_full(reference.shape, r) if isinstance(r, (float, int))
                       else r for r in results]
        return results

    def run(self, probabilities: Mapping[str, Any] | None = None,
            facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``{str(query): P(query | evidence)}``."""
        return {str(q): p for q, p in zip(self.queries, self.evaluate(probabilities, facts))}

    def probability(self, query: str | Struct,
                    probabilities: Mapping[str, Any] | None = None) -> Any:
        goal = parse_goal(query) if isinstance(query, str) else query
        if goal not in self.queries:
            raise ProgramError(f"{goal} is not among the compiled queries "
                               f"({', '.join(map(str, self.queries))})")
        return self.evaluate(probabilities)[self.queries.index(goal)]

    def _evidence_text(self) -> str:
        return ", ".join(f"{a}={'true' if v else 'false'}" for a, v in self.evidence)

    # ------------------------------------------------------------------------- compilation

    def _formula(self, atom: Struct, path: frozenset[Struct]) -> Any:
        """The circuit of ``atom`` given that the atoms in ``path`` (on the current derivation,
        within ``atom``'s recursive component) may not be used."""
        manager = self.manager
        if atom in path:
            return manager.false
        component = self._components.get(atom)
        key = (atom, path & component if component else frozenset())
        found = self._formulas.get(key)
        if found is not None:
            return found
        inner = key[1] | {atom} if component else frozenset()
        result = manager.false
        for body in self.ground.clauses.get(atom, {}):
            conjunction = manager.true
            for item, positive in body:
                if isinstance(item, int):
                    node = manager.literal(item, positive)
                elif positive:
                    node = self._formula(item, inner if component and item in component
                                         else frozenset())
                else:
                    node = manager.negate(self._formula(item, frozenset()))
                conjunction = manager.conjoin(conjunction, node)
                if manager.is_false(conjunction):
                    break
            result = manager.disjoin(result, conjunction)
            if manager.is_true(result):
                break
        self._formulas[key] = result
        return result


def _stratify(ground: GroundProgram) -> dict[Struct, frozenset[Struct]]:
    """The recursive component of each atom that has one; raises when an atom depends on its
    own negation (the program is not stratified)."""
    import networkx as nx

    graph = nx.DiGraph()
    negative: list[tuple[Struct, Struct]] = []
    for atom, bodies in ground.clauses.items():
        graph.add_node(atom)
        for body in bodies:
            for item, positive in body:
                if isinstance(item, int):
                    continue
                graph.add_edge(atom, item)
                if not positive:
                    negative.append((atom, item))
    components: dict[Struct, frozenset[Struct]] = {}
    for nodes in nx.strongly_connected_components(graph):
        if len(nodes) == 1:
            (node,) = nodes
            if not graph.has_edge(node, node):
                continue
        members = frozenset(nodes)
        for atom in members:
            components[atom] = members
    for atom, item in negative:
        if components.get(atom) is not None and item in components[atom]:
            back = nx.shortest_path(graph, item, atom)
            cycle = " -> ".join([str(atom), f"\\+ {item}", *map(str, back[1:])])
            raise ProgramError(
                f"the program is not stratified: {atom} depends on its own negation ({cycle}); "
                "negation as failure needs a stratified program (no recursion through \\+)"
            )
    return components
