"""A parser for a small ProbLog/DeepProbLog-like language.

Clauses end with ``.``; ``%`` starts a comment::

    nn(digit_net, [X], Y, [0,1,2,3,4,5,6,7,8,9]) :: digit(X, Y).   % neural predicate
    0.9 :: edge(a, b).                                             % probabilistic fact
    is_a(three, odd).                                              % fact
    addition(X, Y, Z) :- digit(X, A), digit(Y, B), Z is A + B.     % rule

The neural-predicate syntax is DeepProbLog's, so its programs (without lists as data) read
unchanged. Errors name the line and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from paralab_neurosymbolic.logic.terms import Const, Expr, Struct, Term, Var


class LogicSyntaxError(ValueError):
    """A program or query that does not parse; the message names the line."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>\d+\.\d+|\d+)
    | (?P<var>[A-Z_][A-Za-z0-9_]*)
    | (?P<name>[a-z][A-Za-z0-9_]*|'[^']*')
    | (?P<op>:-|::|=:=|=\\=|=<|>=|//|\\\+|[-+*/<>=(),.\[\]|])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class NeuralDeclaration:
    """``nn(network, [inputs], output, [domain]) :: head.``"""

    network: str
    head: Struct
    inputs: tuple[Var, ...]
    output: Var
    domain: tuple[int | float | str, ...]
    line: int = 0


@dataclass(frozen=True)
class Clause:
    """A fact (``body == ()``), a rule, or a probabilistic fact (``probability`` set)."""

    head: Struct
    body: tuple[Struct, ...] = ()
    probability: float | None = None
    line: int = 0


@dataclass
class ParsedProgram:
    clauses: list[Clause] = field(default_factory=list)
    neural: list[NeuralDeclaration] = field(default_factory=list)


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("%", 1)[0] for line in text.splitlines())


def _tokens(text: str, line: int) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            snippet = text[position : position + 20].strip()
            raise LogicSyntaxError(f"line {line}: cannot read {snippet!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Reader:
    """Recursive descent over one clause's tokens."""

    def __init__(self, tokens: list[tuple[str, str]], line: int, source: str) -> None:
        self.tokens = tokens
        self.position = 0
        self.line = line
        self.source = source

    def error(self, expected: str) -> LogicSyntaxError:
        found = self.tokens[self.position][1] if self.position < len(self.tokens) else "the end"
        return LogicSyntaxError(
            f"line {self.line}: expected {expected} but found {found!r} in {self.source.strip()!r}"
        )

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise self.error(repr(value) if value else "more")
        token = self.tokens[self.position]
        if value is not None and token[1] != value:
            raise self.error(repr(value))
        self.position += 1
        return token

    def done(self) -> bool:
        return self.position >= len(self.tokens)

    # term := sum; sum := product (('+'|'-') product)*; product := primary (('*'|'//'|mod) primary)*
    def term(self) -> Term:
        left = self.product()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            left = Expr(op, left, self.product())
        return left

    def product(self) -> Term:
        left = self.primary()
        while self.peek() in ("*", "//", "mod"):
            op = self.take()[1]
            left = Expr(op, left, self.primary())
        return left

    def primary(self) -> Term:
        kind, value = self.take()
        if kind == "number":
            return Const(float(value) if "." in value else int(value))
        if kind == "var":
            return Var(value)
        if value == "-" and self.peek() is not None and self.tokens[self.position][0] == "number":
            number = self.take()[1]
            return Const(-(float(number) if "." in number else int(number)))
        if value == "(":
            inner = self.term()
            self.take(")")
            return inner
        if value == "[":
            items: list[Term] = []
            if self.peek() != "]":
                items.append(self.term())
                while self.peek() == ",":
                    self.take()
                    items.append(self.term())
            self.take("]")
            return Struct("[]", tuple(items))
        if kind == "name":
            name = value.strip("'")
            if self.peek() == "(":
                self.take("(")
                args = [self.term()]
                while self.peek() == ",":
                    self.take()
                    args.append(self.term())
                self.take(")")
                return Struct(name, tuple(args))
            return Const(name)
        self.position -= 1
        raise self.error("a term")

    def goal(self) -> Struct:
        left = self.term()
        operator = self.peek()
        if operator in ("is", "=", "=:=", "=\\=", "<", ">", "=<", ">="):
            self.take()
            return Struct(operator, (left, self.term()))
        if isinstance(left, Const) and isinstance(left.value, str):
            return Struct(left.value)
        if not isinstance(left, Struct) or left.functor == "[]":
            raise LogicSyntaxError(
                f"line {self.line}: {left} is not a goal (a predicate call or a comparison)"
            )
        return left

    def body(self) -> tuple[Struct, ...]:
        goals = [self.goal()]
        while self.peek() == ",":
            self.take()
            goals.append(self.goal())
        return tuple(goals)


def _split_clauses(text: str) -> list[tuple[int, str]]:
    """Clauses with their starting line; a ``.`` ends a clause unless it is inside a number."""
    clauses: list[tuple[int, str]] = []
    current, start, line = [], 1, 1
    for index, char in enumerate(text):
        if char == "\n":
            line += 1
        if char == "." and not (
            index + 1 < len(text) and text[index + 1].isdigit() and index and text[index - 1].isdigit()
        ):
            clause = "".join(current).strip()
            if clause:
                clauses.append((start, clause))
            current, start = [], line
            continue
        if not "".join(current).strip() and not char.isspace():
            start = line
        current.append(char)
    if "".join(current).strip():
        raise LogicSyntaxError(f"line {start}: clause {''.join(current).strip()!r} lacks a final '.'")
    return clauses


def parse_program(text: str) -> ParsedProgram:
    """Parse a whole program into clauses and neural declarations."""
    program = ParsedProgram()
    for line, source in _split_clauses(_strip_comments(text)):
        reader = _Reader(_tokens(source, line), line, source)
        if "::" in (token for _, token in reader.tokens):
            first = reader.term()
            reader.take("::")
            head = reader.goal()
            if not reader.done():
                raise reader.error("the end of the clause")
            if isinstance(first, Struct) and first.functor == "nn":
                program.neural.append(_neural(first, head, line))
            elif isinstance(first, Const) and isinstance(first.value, (int, float)):
                if not 0.0 <= float(first.value) <= 1.0:
                    raise LogicSyntaxError(
                        f"line {line}: probability {first.value} of {head} is not in [0, 1]"
                    )
                program.clauses.append(Clause(head, (), float(first.value), line))
            else:
                raise LogicSyntaxError(
                    f"line {line}: before '::' expected a probability or nn(...), got {first}"
                )
            continue
        head = reader.goal()
        body: tuple[Struct, ...] = ()
        if reader.peek() == ":-":
            reader.take(":-")
            body = reader.body()
        if not reader.done():
            raise reader.error("',' or the end of the clause")
        program.clauses.append(Clause(head, body, None, line))
    return program


def _neural(declaration: Struct, head: Struct, line: int) -> NeuralDeclaration:
    usage = "nn(network, [X], Y, [v1, v2, ...]) :: predicate(X, Y)"
    if len(declaration.args) != 4:
        raise LogicSyntaxError(f"line {line}: a neural predicate is declared as {usage}")
    network, inputs, output, domain = declaration.args
    if not (isinstance(network, Const) and isinstance(network.value, str)):
        raise LogicSyntaxError(f"line {line}: the network name {network} must be an atom ({usage})")
    if not (isinstance(inputs, Struct) and inputs.functor == "[]" and inputs.args):
        raise LogicSyntaxError(f"line {line}: the inputs {inputs} must be a list of variables")
    if not all(isinstance(item, Var) for item in inputs.args) or not isinstance(output, Var):
        raise LogicSyntaxError(f"line {line}: inputs and output of {head} must be variables")
    if not (isinstance(domain, Struct) and domain.functor == "[]" and domain.args):
        raise LogicSyntaxError(f"line {line}: the domain {domain} must be a non-empty list")
    values = []
    for item in domain.args:
        if not isinstance(item, Const):
            raise LogicSyntaxError(f"line {line}: domain value {item} must be a constant")
        values.append(item.value)
    if len(set(values)) != len(values):
        raise LogicSyntaxError(f"line {line}: the domain of {head} repeats a value")
    expected = (*inputs.args, output)
    if head.args != expected:
        raise LogicSyntaxError(
            f"line {line}: the head {head} must take the inputs then the output, "
            f"({', '.join(str(a) for a in expected)})"
        )
    return NeuralDeclaration(
        network.value, head, tuple(inputs.args), output, tuple(values), line  # type: ignore[arg-type]
    )


def parse_goal(text: str) -> Struct:
    """Parse a query such as ``addition(a, b, Z)`` (a final ``.`` is optional)."""
    text = _strip_comments(text).strip().rstrip(".")
    reader = _Reader(_tokens(text, 1), 1, text)
    goal = reader.goal()
    if not reader.done():
        raise reader.error("the end of the query")
    return goal
