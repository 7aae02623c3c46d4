"""A reduced ordered binary decision diagram (ROBDD): the knowledge-compilation target of the
general engine when PySDD is not chosen.

A BDD is a deterministic, decomposable circuit, so weighted model counting over it is one pass
in topological order: ``value(node) = w(var) * value(high) + (1 - w(var)) * value(low)``. The
pass is written with plain arithmetic, so the weights may be Python floats (exact parity runs
in double precision) or ``(batch,)`` tensors (one compiled circuit evaluated for a whole batch
of neural probabilities, differentiably).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

FALSE = 0
TRUE = 1


class BDD:
    """Nodes are integers; 0 and 1 are the terminals. Children always have smaller ids than
    their parents, so ascending id order is a topological order."""

    def __init__(self) -> None:
        self.var: list[int] = [-1, -1]
        self.low: list[int] = [0, 1]
        self.high: list[int] = [0, 1]
        self._unique: dict[tuple[int, int, int], int] = {}
        self._memo: dict[tuple[str, int, int], int] = {}
        self._not: dict[int, int] = {}

    false = FALSE
    true = TRUE

    def __len__(self) -> int:
        return len(self.var)

    def is_false(self, u: int) -> bool:
        return u == FALSE

    def is_true(self, u: int) -> bool:
        return u == TRUE

    def size(self, roots: Sequence[int]) -> int:
        return len(self.reachable(roots))

    def node(self, var: int, low: int, high: int) -> int:
        if low == high:
            return low
        key = (var, low, high)
        found = self._unique.get(key)
        if found is None:
            found = len(self.var)
            self.var.append(var)
            self.low.append(low)
            self.high.append(high)
            self._unique[key] = found
        return found

    def literal(self, var: int, positive: bool = True) -> int:
        return self.node(var, FALSE, TRUE) if positive else self.node(var, TRUE, FALSE)

    def negate(self, u: int) -> int:
        if u <= TRUE:
            return 1 - u
        found = self._not.get(u)
        if found is None:
            found = self.node(self.var[u], self.negate(self.low[u]), self.negate(self.high[u]))
            self._not[u] = found
        return found

    def conjoin(self, u: int, v: int) -> int:
        return self._apply("and", u, v)

    def disjoin(self, u: int, v: int) -> int:
        return self._apply("or", u, v)

    def _apply(self, op: str, u: int, v: int) -> int:
        if op == "and":
            if u == FALSE or v == FALSE:
                return FALSE
            if u == TRUE:
                return v
            if v == TRUE or u == v:
                return u
        else:
            if u == TRUE or v == TRUE:
                return TRUE
            if u == FALSE:
                return v
            if v == FALSE or u == v:
                return u
        if u > v:
            u, v = v, u
        key = (op, u, v)
        found = self._memo.get(key)
        if found is not None:
            return found
        top = min(self.var[u], self.var[v])
        u0, u1 = (self.low[u], self.high[u]) if self.var[u] == top else (u, u)
        v0, v1 = (self.low[v], self.high[v]) if self.var[v] == top else (v, v)
        found = self.node(top, self._apply(op, u0, v0), self._apply(op, u1, v1))
        self._memo[key] = found
        return found

    def reachable(self, roots: Sequence[int]) -> list[int]:
        """The inner nodes under ``roots``, in ascending (topological) order."""
        seen: set[int] = set()
        stack = [r for r in roots if r > TRUE]
        while stack:
            u = stack.pop()
            if u in seen:
                continue
            seen.add(u)
            stack.extend(c for c in (self.low[u], self.high[u]) if c > TRUE)
        return sorted(seen)

    def weighted_count(self, roots: Sequence[int], weights: Sequence[Any]) -> list[Any]:
        """WMC of each root: ``weights[var]`` = P(var true), floats or tensors."""
        values: dict[int, Any] = {FALSE: 0.0, TRUE: 1.0}
        for u in self.reachable(roots):
            w = weights[self.var[u]]
            values[u] = w * values[self.high[u]] + (1 - w) * values[self.low[u]]
        return [values[r] for r in roots]
