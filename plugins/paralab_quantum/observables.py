"""Observables: Pauli strings and their weighted sums (Hamiltonians), as researchers write them.

An :class:`Observable` is a real-weighted sum of Pauli strings, parsed from text such as
``"Z0 Z1"``, ``"0.5*X0 Y2 - 0.25*Z1 + 1"`` or ``"Z0@Z1"`` (a factor is a Pauli letter and a wire;
factors of one term are separated by spaces, ``@`` or ``*``; a bare number is a multiple of the
identity). The same record is measured by the torch simulator
(:mod:`paralab_quantum.expectations`: expectation and variance, batched, differentiable), by
PennyLane (``qml.expval`` / ``qml.var`` of the same Hamiltonian) and by Qiskit
(``SparsePauliOp``), so the three compare directly.

:class:`ObservablesOption` declares a model option holding a list of observables: a string that
does not parse is a ``SpecError`` at validation, naming the option and quoting the grammar.

Pure Python: importing this module costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from paralab import Option

GRAMMAR = ("a sum of Pauli terms such as '0.5*Z0 Z1 - X2 + 1' (a term: an optional "
           "coefficient and '*', then factors X<wire>, Y<wire>, Z<wire>, I<wire>)")


class ObservableError(ValueError):
    """An observable that does not parse or does not fit the circuit; the message says why."""


@dataclass(frozen=True)
class PauliTerm:
    """``coefficient`` times the Pauli string ``paulis`` (``(wire, letter)`` pairs, sorted by
    wire, identities left out: an empty string is the identity)."""

    coefficient: float
    paulis: tuple[tuple[int, str], ...] = ()

    @property
    def diagonal(self) -> bool:
        return all(letter == "Z" for _, letter in self.paulis)

    def word(self, n_qubits: int) -> str:
        """The dense Pauli word over ``n_qubits`` wires (wire 0 first), ``I`` where trivial."""
        letters = ["I"] * n_qubits
        for wire, letter in self.paulis:
            letters[wire] = letter
        return "".join(letters)


@dataclass(frozen=True)
class Observable:
    """A Hermitian observable: the sum of its real-weighted :class:`PauliTerm` s."""

    terms: tuple[PauliTerm, ...]
    text: str = ""

    def __post_init__(self) -> None:
        if not self.terms:
            raise ObservableError(f"observable {self.text!r} has no terms")

    @property
    def max_wire(self) -> int:
        """The highest wire a term acts on (-1 for a multiple of the identity)."""
        return max((wire for term in self.terms for wire, _ in term.paulis), default=-1)

    @property
    def diagonal(self) -> bool:
        return all(term.diagonal for term in self.terms)

    def check(self, n_qubits: int, where: str = "observable") -> None:
        """:raises ObservableError: a term acts on a wire the circuit lacks."""
        if self.max_wire >= n_qubits:
            raise ObservableError(
                f"{where} {self.text or self!r} acts on wire {self.max_wire} but the circuit has "
                f"{n_qubits} qubit(s) (wires 0..{n_qubits - 1})")

    def __str__(self) -> str:
        return self.text or " + ".join(
            f"{t.coefficient!r}*" + " ".join(f"{p}{w}" for w, p in t.paulis) for t in self.terms)

    @classmethod
    def pauli_z(cls, wire: int) -> Observable:
        return cls((PauliTerm(1.0, ((wire, "Z"),)),), f"Z{wire}")

    @classmethod
    def from_terms(cls, terms: Iterable[tuple[float, str]]) -> Observable:
        """From ``(coefficient, dense word)`` pairs, e.g. ``[(0.5, "ZZI"), (-1.0, "IXY")]``."""
        parsed = []
        for coefficient, word in terms:
            if set(word) - set("IXYZ"):
                raise ObservableError(f"Pauli word {word!r}: letters must be I, X, Y or Z")
            paulis = tuple((w, p) for w, p in enumerate(word) if p != "I")
            parsed.append(PauliTerm(float(coefficient), paulis))
        return cls(tuple(parsed), " + ".join(f"{c!r}*{w}" for c, w in terms))


_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_FACTOR = re.compile(r"([IXYZ])\s*(\d+)")


def parse(text: str) -> Observable:
    """The observable ``text`` describes (see the module docstring for the grammar).

    :raises ObservableError: quoting the part that does not parse.
    """
    if not isinstance(text, str) or not text.strip():
        raise ObservableError(f"observable {text!r} is empty; expected {GRAMMAR}")
    source = text.strip()
    pieces = re.split(r"(?<![eE])\s*([+-])\s*", source)  # not the sign of an exponent
    # re.split with a group: [first, sign, term, sign, term, ...]; a leading sign gives ''.
    signed: list[tuple[float, str]] = []
    sign = 1.0
    for index, piece in enumerate(pieces):
        if index % 2 == 1:
            sign = -1.0 if piece == "-" else 1.0
            continue
        if not piece:
            if index == 0:
                continue
            raise ObservableError(f"observable {source!r}: an empty term; expected {GRAMMAR}")
        signed.append((sign, piece))
    terms: list[PauliTerm] = []
    for sign, piece in signed:
        coefficient = sign
        match = re.match(rf"^({_NUMBER})\s*(\*|$|\s)\s*", piece)
        rest = piece
        if match:
            coefficient *= float(match.group(1))
            rest = piece[match.end():]
        factors: dict[int, str] = {}
        position = 0
        rest = rest.strip()
        while position < len(rest):
            found = _FACTOR.match(rest, position)
            if not found:
                raise ObservableError(
                    f"observable {source!r}: cannot read {rest[position:]!r}; expected {GRAMMAR}")
            letter, wire = found.group(1), int(found.group(2))
            if wire in factors:
                raise ObservableError(
                    f"observable {source!r}: wire {wire} appears twice in one term (write the "
                    "product of the two Paulis instead)")
            if letter != "I":
                factors[wire] = letter
            position = found.end()
            separator = re.compile(r"\s*[@*]\s*|\s+").match(rest, position)
            if separator and separator.end() > position:
                position = separator.end()
        if not match and not rest:
            raise ObservableError(f"observable {source!r}: an empty term; expected {GRAMMAR}")
        terms.append(PauliTerm(coefficient, tuple(sorted(factors.items()))))
    return Observable(tuple(terms), source)


def as_observable(value: Any) -> Observable:
    """An :class:`Observable` from itself or its text."""
    return value if isinstance(value, Observable) else parse(value)


def as_observables(values: Sequence[Any] | None) -> tuple[Observable, ...]:
    return tuple(as_observable(v) for v in values or ())


class ObservablesOption(Option):
    """A list of observables (strings in the :data:`GRAMMAR`); each is parsed at validation."""

    def problem(self, value: Any) -> str | None:
        problem = super().problem(value)
        if problem or not isinstance(value, (list, tuple)):
            return problem
        for position, item in enumerate(value):
            if not isinstance(item, str):
                return f"entry [{position}] expected str, got {type(item).__name__} {item!r}"
            try:
                parse(item)
            except ObservableError as error:
                return f"entry [{position}]: {error}"
        return None

    def constraint(self) -> str:
        return f"{super().constraint()}; each: {GRAMMAR}"


__all__ = ["GRAMMAR", "Observable", "ObservableError", "ObservablesOption", "PauliTerm",
           "as_observable", "as_observables", "parse"]
