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

ARITHMETIC = ("+", "-", "*", "//", "mod")
COMPARISONS = {"=:=": "==", "=\\=": "!=", "<": "<", ">": ">", "=<": "=<", ">=": ">="}
BUILTINS = {"is/2", "=/2", "=:=/2", "=\\=/2", "</2", ">/2", "=</2", ">=/2"}


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
