"""Knowledge compilation to sentential decision diagrams (SDDs) with PySDD, as ProbLog does.

The general engine (:mod:`.solver`) builds its formulas through a small manager interface
(``literal``, ``negate``, ``conjoin``, ``disjoin``); this module gives that interface over a
PySDD ``SddManager``, so ``Solver(..., compiler="sdd")`` compiles each query (and the evidence)
into an SDD once, and its evaluation plan into index tensors once (:class:`_Levels`).
Weighted model counting is then a pass over the SDD's levels: a literal is its weight, a
decision node ``sum(prime * sub)`` over its elements, one gather / multiply / index-add per
level for the whole batch. Because every variable's two weights sum to one, no smoothing is
needed; the pass takes floats (double precision) or ``(batch,)`` tensors on any device
(batched, differentiable), and is re-run, not recompiled, for each new set of probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _pysdd():  # noqa: ANN202 - imported only when an SDD is asked for
    try:
        from pysdd.sdd import SddManager, Vtree
    except ImportError as error:  # pragma: no cover - pysdd is a declared dependency
        raise ImportError("compiler='sdd' needs PySDD (pip install pysdd)") from error
    return SddManager, Vtree


class SddBuilder:
    """The manager interface of :class:`.bdd.BDD`, over a PySDD manager of ``variables``
    boolean variables (choice variable ``i`` is SDD variable ``i + 1``)."""

    def __init__(self, variables: int, vtree: str = "balanced") -> None:
        manager_class, vtree_class = _pysdd()
        count = max(1, variables)
        self._vtree = vtree_class(count, list(range(1, count + 1)), vtree)
        self.manager = manager_class.from_vtree(self._vtree)
        self.false = self.manager.false()
        self.true = self.manager.true()

    def is_false(self, node: Any) -> bool:
        return bool(node.is_false())

    def is_true(self, node: Any) -> bool:
        return bool(node.is_true())

    def literal(self, var: int, positive: bool = True) -> Any:
        return self.manager.literal(var + 1 if positive else -(var + 1))

    def negate(self, node: Any) -> Any:
        return self.manager.negate(node)

    def conjoin(self, left: Any, right: Any) -> Any:
        return self.manager.conjoin(left, right)

    def disjoin(self, left: Any, right: Any) -> Any:
        return self.manager.disjoin(left, right)

    def _order(self, roots: Sequence[Any]) -> list[Any]:
        """Every node under ``roots``, children before parents."""
        order, seen = [], set()
        for root in roots:
            stack = [(root, False)]
            while stack:
                node, expanded = stack.pop()
                if node.id in seen:
                    continue
                if expanded or not node.is_decision():
                    seen.add(node.id)
                    order.append(node)
                    continue
                stack.append((node, True))
                for prime, sub in node.elements():
                    stack.extend(((sub, False), (prime, False)))
        return order

    def size(self, roots: Sequence[Any]) -> int:
        return sum(int(node.size()) for node in self._order(roots) if node.is_decision())

    def plan(self, roots: Sequence[Any]) -> list[tuple[int, str, Any]]:
        """The evaluation order of the circuit under ``roots`` as plain tuples, built once:
        ``(id, "const", value)``, ``(id, "literal", signed var)``, ``(id, "decision",
        [(prime id, sub id), ...])``."""
        steps: list[tuple[int, str, Any]] = []
        for node in self._order(roots):
            if node.is_true() or node.is_false():
                steps.append((node.id, "const", 1.0 if node.is_true() else 0.0))
            elif node.is_literal():
                steps.append((node.id, "literal", node.literal))
            else:
                steps.append((node.id, "decision",
                              [(prime.id, sub.id) for prime, sub in node.elements()]))
        return steps

    def prepare(self, roots: Sequence[Any]) -> None:
        """Build the evaluation plan of ``roots`` (once; part of compilation)."""
        key = tuple(root.id for root in roots)
        if getattr(self, "_plan_key", None) != key:
            self._plan_key, self._levels = key, _Levels(self.plan(roots), key)

    def weighted_count(self, roots: Sequence[Any], weights: Sequence[Any]) -> list[Any]:
        """WMC of each root: ``weights[i]`` = P(choice variable ``i`` true), floats or
        ``(batch,)`` tensors; one batched gather / multiply / index-add per level of the SDD
        (:class:`_Levels`), so a batch costs a few tensor operations per level, not per node."""
        import torch

        self.prepare(roots)
        batched = [w for w in weights if isinstance(w, torch.Tensor)]
        if batched:
            reference = batched[0]
            table = torch.stack([w.to(reference.dtype) if isinstance(w, torch.Tensor)
                                 else reference.new_full(reference.shape, float(w))
                                 for w in weights]) if weights else reference[None]
        else:
            table = torch.tensor([[float(w)] for w in weights],
                                 dtype=torch.float64).reshape(len(weights), 1)
        values = self._levels.evaluate(table)
        if batched:
            return list(values)
        return [float(v[0]) for v in values]


class _Levels:
    """An SDD's evaluation plan as index tensors: row 0 is false, row 1 true, then one row per
    literal node, then the decision nodes level by level (a level's children all lie in
    earlier levels)."""

    def __init__(self, plan: list[tuple[int, str, Any]], roots: tuple[int, ...]) -> None:
        import torch

        row: dict[int, int] = {}
        literal_vars, literal_signs = [], []
        depth: dict[int, int] = {}
        decisions = []
        for node, kind, data in plan:
            if kind == "const":
                row[node] = 1 if data else 0
                depth[node] = 0
            elif kind == "literal":
                row[node] = 2 + len(literal_vars)
                literal_vars.append(abs(data) - 1)
                literal_signs.append(data > 0)
                depth[node] = 0
            else:
                depth[node] = 1 + max(max(depth[p], depth[q]) for p, q in data)
                decisions.append((depth[node], node, data))
        self.literal_vars = torch.tensor(literal_vars, dtype=torch.long)
        self.literal_signs = torch.tensor(literal_signs, dtype=torch.bool)
        decisions.sort(key=lambda item: item[0])
        next_row = 2 + len(literal_vars)
        for _, node, _ in decisions:
            row[node] = next_row
            next_row += 1
        self.rows = next_row
        self.levels: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        by_level: dict[int, list[tuple[int, int, int]]] = {}
        for level, node, data in decisions:
            by_level.setdefault(level, []).extend((row[p], row[q], row[node]) for p, q in data)
        for level in sorted(by_level):
            primes, subs, parents = zip(*by_level[level])
            self.levels.append((torch.tensor(primes), torch.tensor(subs), torch.tensor(parents)))
        self.roots = torch.tensor([row[r] for r in roots], dtype=torch.long)

    def evaluate(self, weights: Any) -> Any:
        """``(roots, batch)`` WMCs from ``(variables, batch)`` weights."""
        import torch

        device = weights.device
        batch = weights.shape[1]
        constants = torch.stack([weights.new_zeros(batch), weights.new_ones(batch)])
        if len(self.literal_vars):
            w = weights[self.literal_vars.to(device)]
            literals = torch.where(self.literal_signs.to(device)[:, None], w, 1 - w)
        else:
            literals = weights.new_zeros(0, batch)
        values = torch.cat([constants, literals,
                            weights.new_zeros(self.rows - 2 - len(literals), batch)])
        for primes, subs, parents in self.levels:
            primes, subs, parents = primes.to(device), subs.to(device), parents.to(device)
            values = values.index_add(0, parents, values[primes] * values[subs])
        return values[self.roots.to(device)]
