"""Terms of the logic language: variables, constants, compound terms and symbolic values.

Besides the usual Prolog terms there are two symbolic ones that make batched inference
possible: :class:`RandomVar` stands for the (unknown) output of a neural predicate or the truth
of a probabilistic fact, and :class:`Expr` for arithmetic or a comparison over such values.
Grounding keeps them symbolic instead of enumerating their values, so a query is grounded once
per *shape* of example and then evaluated for a whole batch of tensors at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Var:
    """A logic variable (a name starting with an upper-case letter or ``_``)."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Const:
    """An integer, a float or an atom (a lower-case name or a quoted string)."""

    value: int | float | str

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class Struct:
    """A compound term ``functor(arg, ...)``; atoms in predicate position are ``Struct`` with no
    arguments."""

    functor: str
    args: tuple[Term, ...] = ()

    @property
    def signature(self) -> str:
        return f"{self.functor}/{len(self.args)}"

    def __str__(self) -> str:
        if self.functor == "." and len(self.args) == 2:
            items, tail = [], self
            while isinstance(tail, Struct) and tail.functor == "." and len(tail.args) == 2:
                items.append(str(tail.args[0]))
                tail = tail.args[1]
            rest = "" if tail == NIL else f"|{tail}"
            return f"[{', '.join(items)}{rest}]"
        if not self.args:
            return self.functor
        return f"{self.functor}({', '.join(str(a) for a in self.args)})"


@dataclass(frozen=True)
class RandomVar:
    """A random variable: the value a neural predicate gives its input (``kind="neural"``,
    values ``domain``) or the truth of a probabilistic fact (``kind="fact"``, values 0/1)."""

    kind: str
    key: str
    domain: tuple[int | float | str, ...]
    network: str = ""
    input: Term | None = None
    probability: float = 1.0

    def __str__(self) -> str:
        return f"<{self.key}>"


@dataclass(frozen=True)
class Expr:
    """Symbolic arithmetic or comparison: ``op`` is one of ``+ - * // mod`` or
    ``== != < > =< >=``."""

    op: str
    left: Term
    right: Term

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


Term = Union[Var, Const, Struct, RandomVar, Expr]  # noqa: UP007 - a runtime alias on 3.10

NIL = Const("[]")
"""The empty list; a non-empty list is ``Struct(".", (head, tail))``, as in Prolog."""


def make_list(items: list[Term] | tuple[Term, ...], tail: Term = NIL) -> Term:
    """The list term ``[items... | tail]``."""
    for item in reversed(items):
        tail = Struct(".", (item, tail))
    return tail


def list_items(term: Term) -> list[Term] | None:
    """The items of a proper list term, or ``None`` when ``term`` is not one."""
    items: list[Term] = []
    while isinstance(term, Struct) and term.functor == "." and len(term.args) == 2:
        items.append(term.args[0])
        term = term.args[1]
    return items if term == NIL else None


ARITHMETIC = ("+", "-", "*", "//", "mod")
COMPARISONS = {"=:=": "==", "=\\=": "!=", "<": "<", ">": ">", "=<": "=<", ">=": ">="}
BUILTINS = {"is/2", "=/2", "=:=/2", "=\\=/2", "</2", ">/2", "=</2", ">=/2"}
"""The built-ins the symbolic (batched) engine evaluates."""

GENERAL_BUILTINS = BUILTINS | {"\\=/2", "==/2", "\\==/2", "true/0", "fail/0", "false/0",
                               "between/3", "\\+/1"}
"""The built-ins of the general (tabled) engine: also ``\\=``, ``==``, ``\\==``, ``true``,
``fail``, ``between/3`` and negation as failure ``\\+``."""


def random_vars(term: Term) -> list[RandomVar]:
    """The random variables inside ``term``, in first-seen order."""
    found: list[RandomVar] = []

    def visit(node: Term) -> None:
        if isinstance(node, RandomVar):
            if node not in found:
                found.append(node)
        elif isinstance(node, Expr):
            visit(node.left)
            visit(node.right)
        elif isinstance(node, Struct):
            for arg in node.args:
                visit(arg)

    visit(term)
    return found


def is_ground(term: Term) -> bool:
    """True when ``term`` holds no logic variable."""
    if isinstance(term, Var):
        return False
    if isinstance(term, Struct):
        return all(is_ground(arg) for arg in term.args)
    if isinstance(term, Expr):
        return is_ground(term.left) and is_ground(term.right)
    return True
