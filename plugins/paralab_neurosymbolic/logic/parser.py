"""A parser for the ProbLog / DeepProbLog language.

Clauses end with ``.``; ``%`` starts a comment::

    nn(digit_net, [X], Y, [0,1,2,3,4,5,6,7,8,9]) :: digit(X, Y).   % neural predicate
    0.9 :: edge(a, b).                                             % probabilistic fact
    0.3 :: heads(C); 0.7 :: tails(C) :- coin(C).                   % annotated disjunction
    0.8 :: alarm :- burglary.                                      % probabilistic rule
    is_a(three, odd).                                              % fact
    safe(X) :- node(X), \\+ danger(X).                              % negation as failure
    len([_|T], N) :- len(T, M), N is M + 1.                        % lists, arithmetic
    query(safe(X)).   evidence(alarm, true).                       % queries and evidence
    :- use_module(library(lists)).                                 % member/2, append/3 ...

The syntax is ProbLog 2's, so its programs read unchanged. Errors name the line and column
of the offending token and what was expected there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from paralab_neurosymbolic.logic.terms import (
    NIL,
    Const,
    Expr,
    Struct,
    Term,
    Var,
    list_items,
    make_list,
)


class LogicSyntaxError(ValueError):
    """A program or query that does not parse; the message names the line and column."""


_TOKEN = re.compile(
    r"""(?P<space>\s+|%[^\n]*)
    | (?P<number>\d+\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+)
    | (?P<var>[A-Z_][A-Za-z0-9_]*)
    | (?P<name>[a-z][A-Za-z0-9_]*|'[^'\n]*')
    | (?P<op>:-|::|=:=|=\\=|\\==|\\=|==|=<|>=|//|\\\+|\*\*|[-+*/<>=(),.\[\]|;])
    """,
    re.VERBOSE,
)
_COMPARE = ("is", "=", "\\=", "==", "\\==", "=:=", "=\\=", "<", ">", "=<", ">=")


@dataclass(frozen=True)
class Token:
    kind: str
    value: str
    line: int
    column: int


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
    """A fact (``body == ()``), a rule, or a probabilistic fact (``probability`` set, no body).
    A body goal ``\\+ G`` is ``Struct("\\\\+", (G,))``."""

    head: Struct
    body: tuple[Struct, ...] = ()
    probability: float | None = None
    line: int = 0


@dataclass(frozen=True)
class Disjunction:
    """An annotated disjunction ``p1::h1; ...; pn::hn :- body`` (a probabilistic rule is one
    with a single head): for each ground instance of the clause whose body holds, at most one
    head is chosen, head i with probability ``pi``, none with ``1 - sum(p)``."""

    heads: tuple[tuple[float, Struct], ...]
    body: tuple[Struct, ...] = ()
    line: int = 0


@dataclass
class ParsedProgram:
    clauses: list[Clause] = field(default_factory=list)
    neural: list[NeuralDeclaration] = field(default_factory=list)
    disjunctions: list[Disjunction] = field(default_factory=list)
    queries: list[Struct] = field(default_factory=list)
    evidence: list[tuple[Struct, bool]] = field(default_factory=list)
    libraries: set[str] = field(default_factory=set)


def tokenize(text: str, first_line: int = 1) -> list[Token]:
    """Every token of ``text`` with its line and column (1-based); comments dropped."""
    tokens: list[Token] = []
    position, line, line_start = 0, first_line, 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            snippet = text[position : position + 20].split("\n", 1)[0]
            raise LogicSyntaxError(
                f"line {line}, column {position - line_start + 1}: cannot read {snippet!r}"
            )
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind != "space":
            tokens.append(Token(kind, value, line, position - line_start + 1))
        newlines = value.count("\n")
        if newlines:
            line += newlines
            line_start = position + value.rindex("\n") + 1
        position = match.end()
    return tokens


def _split_clauses(tokens: list[Token], text: str) -> list[list[Token]]:
    """Clauses as token lists: a ``.`` token followed by white space, a comment or the end."""
    clauses, current = [], []
    offsets = _offsets(text)
    for token in tokens:
        if token.value == "." and token.kind == "op":
            end = offsets[token.line - 1] + token.column  # index just after the '.'
            following = text[end : end + 1]
            if following == "" or following.isspace() or following == "%":
                if not current:
                    raise LogicSyntaxError(
                        f"line {token.line}, column {token.column}: an empty clause"
                    )
                clauses.append(current)
                current = []
                continue
        current.append(token)
    if current:
        source = " ".join(t.value for t in current)
        raise LogicSyntaxError(
            f"line {current[0].line}: clause {source!r} lacks a final '.'"
        )
    return clauses


def _offsets(text: str) -> list[int]:
    offsets, total = [], 0
    for line in text.split("\n"):
        offsets.append(total)
        total += len(line) + 1
    return offsets


class _Reader:
    """Recursive descent over one clause's tokens."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.position = 0
        self.source = " ".join(t.value for t in tokens)

    @property
    def line(self) -> int:
        return self.tokens[0].line if self.tokens else 1

    def where(self) -> str:
        if self.position < len(self.tokens):
            token = self.tokens[self.position]
            return f"line {token.line}, column {token.column}"
        last = self.tokens[-1]
        return f"line {last.line}, column {last.column + len(last.value)}"

    def error(self, expected: str) -> LogicSyntaxError:
        found = self.tokens[self.position].value if self.position < len(self.tokens) else "the end"
        return LogicSyntaxError(
            f"{self.where()}: expected {expected} but found {found!r} in {self.source!r}"
        )

    def peek(self, ahead: int = 0) -> str | None:
        index = self.position + ahead
        return self.tokens[index].value if index < len(self.tokens) else None

    def take(self, value: str | None = None) -> Token:
        if self.position >= len(self.tokens):
            raise self.error(repr(value) if value else "more")
        token = self.tokens[self.position]
        if value is not None and token.value != value:
            raise self.error(repr(value))
        self.position += 1
        return token

    def done(self) -> bool:
        return self.position >= len(self.tokens)

    # term := sum; sum := product (('+'|'-') product)*;
    # product := power (('*'|'/'|'//'|mod) power)*; power := unary ('**' unary)?
    def term(self) -> Term:
        left = self.product()
        while self.peek() in ("+", "-"):
            op = self.take().value
            left = Expr(op, left, self.product())
        return left

    def product(self) -> Term:
        left = self.power()
        while self.peek() in ("*", "/", "//", "mod"):
            op = self.take().value
            left = Expr(op, left, self.power())
        return left

    def power(self) -> Term:
        left = self.unary()
        if self.peek() == "**":
            self.take()
            return Expr("**", left, self.unary())
        return left

    def unary(self) -> Term:
        if self.peek() == "-":
            self.take()
            if self.position < len(self.tokens) and self.tokens[self.position].kind == "number":
                return Const(-_number(self.take().value))
            return Expr("-", Const(0), self.unary())
        return self.primary()

    def arguments(self) -> list[Term]:
        self.take("(")
        args = [self.term()]
        while self.peek() == ",":
            self.take()
            args.append(self.term())
        self.take(")")
        return args

    def primary(self) -> Term:
        if self.done():
            raise self.error("a term")
        token = self.take()
        kind, value = token.kind, token.value
        if kind == "number":
            return Const(_number(value))
        if kind == "var":
            return Var(value)
        if value == "(":
            inner = self.term()
            self.take(")")
            return inner
        if value == "[":
            items: list[Term] = []
            tail: Term = NIL
            if self.peek() != "]":
                items.append(self.term())
                while self.peek() == ",":
                    self.take()
                    items.append(self.term())
                if self.peek() == "|":
                    self.take()
                    tail = self.term()
            self.take("]")
            return make_list(items, tail)
        if kind == "name":
            name = value[1:-1] if value.startswith("'") else value
            if self.peek() == "(":
                return Struct(name, tuple(self.arguments()))
            return Const(name)
        if value == "\\+":  # \+ goal inside a term: evidence(\+ a)
            return Struct("\\+", (self.term(),))
        self.position -= 1
        raise self.error("a term")

    def goal(self) -> Struct:
        if self.peek() == "\\+":
            self.take()
            return Struct("\\+", (self.goal(),))
        start = self.position
        left = self.term()
        operator = self.peek()
        if operator in _COMPARE:
            self.take()
            return Struct(operator, (left, self.term()))
        if isinstance(left, Const) and isinstance(left.value, str) and left != NIL:
            return Struct(left.value)
        if not isinstance(left, Struct) or left.functor == ".":
            self.position = start
            raise LogicSyntaxError(
                f"{self.where()}: {left} is not a goal (a predicate call or a comparison)"
            )
        if left.functor == "not" and len(left.args) == 1:
            return Struct("\\+", (_as_goal(left.args[0], self),))
        if left.functor == "\\+" and len(left.args) == 1:
            return Struct("\\+", (_as_goal(left.args[0], self),))
        return left

    def body(self) -> tuple[Struct, ...]:
        goals = [self.goal()]
        while self.peek() == ",":
            self.take()
            goals.append(self.goal())
        return tuple(goals)

    def annotated(self) -> tuple[Term, Struct]:
        start = self.position
        first = self.term()
        if self.peek() != "::":
            self.position = start
            raise self.error("'::' after a probability")
        self.take("::")
        return first, self.goal()


def _as_goal(term: Term, reader: _Reader) -> Struct:
    if isinstance(term, Const) and isinstance(term.value, str):
        return Struct(term.value)
    if isinstance(term, Struct):
        return term
    raise LogicSyntaxError(f"{reader.where()}: {term} is not a goal")


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def _probability(term: Term, head: Struct, line: int) -> float:
    if isinstance(term, Expr) and term.op == "/" and all(
        isinstance(side, Const) and isinstance(side.value, (int, float))
        for side in (term.left, term.right)
    ):
        term = Const(term.left.value / term.right.value)  # type: ignore[union-attr, operator]
    if not (isinstance(term, Const) and isinstance(term.value, (int, float))):
        raise LogicSyntaxError(
            f"line {line}: before '::' expected a probability or nn(...), got {term}"
        )
    if not 0.0 <= float(term.value) <= 1.0:
        raise LogicSyntaxError(f"line {line}: probability {term.value} of {head} is not in [0, 1]")
    return float(term.value)


def parse_program(text: str) -> ParsedProgram:
    """Parse a whole program into clauses, disjunctions, neural declarations, queries and
    evidence."""
    program = ParsedProgram()
    for tokens in _split_clauses(tokenize(text), text):
        _parse_clause(_Reader(tokens), program)
    return program


def _parse_clause(reader: _Reader, program: ParsedProgram) -> None:
    line = reader.line
    if reader.peek() == ":-":  # a directive
        reader.take()
        directive = reader.goal()
        if not reader.done():
            raise reader.error("the end of the directive")
        library = directive.args[0] if directive.args else None
        if (directive.functor == "use_module" and isinstance(library, Struct)
                and library.functor == "library" and len(library.args) == 1):
            program.libraries.add(str(library.args[0]))
            return
        raise LogicSyntaxError(
            f"line {line}: unsupported directive {directive}; supported: "
            ":- use_module(library(lists))."
        )
    if "::" in (token.value for token in reader.tokens):
        heads = [reader.annotated()]
        while reader.peek() == ";":
            reader.take()
            heads.append(reader.annotated())
        body: tuple[Struct, ...] = ()
        if reader.peek() == ":-":
            reader.take()
            body = reader.body()
        if not reader.done():
            raise reader.error("';', ':-' or the end of the clause")
        first, head = heads[0]
        if isinstance(first, Struct) and first.functor == "nn":
            if len(heads) != 1 or body:
                raise LogicSyntaxError(
                    f"line {line}: a neural predicate nn(...) :: head. has one head and no body"
                )
            program.neural.append(_neural(first, head, line))
            return
        annotated = tuple((_probability(p, h, line), h) for p, h in heads)
        if len(annotated) == 1 and not body:
            program.clauses.append(Clause(head, (), annotated[0][0], line))
            return
        total = sum(p for p, _ in annotated)
        if total > 1.0 + 1e-9:
            raise LogicSyntaxError(
                f"line {line}: the probabilities of an annotated disjunction sum to {total:g} > 1"
            )
        program.disjunctions.append(Disjunction(annotated, body, line))
        return
    head = reader.goal()
    body = ()
    if reader.peek() == ":-":
        reader.take(":-")
        body = reader.body()
    if not reader.done():
        raise reader.error("',' or the end of the clause")
    if head.functor in ("query", "evidence") and not body:
        _directive(head, line, program)
        return
    program.clauses.append(Clause(head, body, None, line))


def _directive(head: Struct, line: int, program: ParsedProgram) -> None:
    usage = "query(atom). or evidence(atom). / evidence(atom, true|false)."
    if not head.args or len(head.args) > (1 if head.functor == "query" else 2):
        raise LogicSyntaxError(f"line {line}: {head} is not {usage}")
    target = head.args[0]
    if isinstance(target, Const) and isinstance(target.value, str):
        target = Struct(target.value)
    if not isinstance(target, Struct):
        raise LogicSyntaxError(f"line {line}: {head} must name an atom ({usage})")
    if head.functor == "query":
        program.queries.append(target)
        return
    value = True
    if target.functor == "\\+" and len(target.args) == 1:
        target, value = target.args[0], False  # type: ignore[assignment]
    if len(head.args) == 2:
        flag = head.args[1]
        if flag not in (Const("true"), Const("false")):
            raise LogicSyntaxError(f"line {line}: the value in {head} must be true or false")
        value = value == (flag == Const("true"))
    program.evidence.append((target, value))  # type: ignore[arg-type]


def _neural(declaration: Struct, head: Struct, line: int) -> NeuralDeclaration:
    usage = "nn(network, [X], Y, [v1, v2, ...]) :: predicate(X, Y)"
    if len(declaration.args) != 4:
        raise LogicSyntaxError(f"line {line}: a neural predicate is declared as {usage}")
    network, inputs, output, domain = declaration.args
    if not (isinstance(network, Const) and isinstance(network.value, str)):
        raise LogicSyntaxError(f"line {line}: the network name {network} must be an atom ({usage})")
    input_items = list_items(inputs)
    if not input_items:
        raise LogicSyntaxError(f"line {line}: the inputs {inputs} must be a list of variables")
    if not all(isinstance(item, Var) for item in input_items) or not isinstance(output, Var):
        raise LogicSyntaxError(f"line {line}: inputs and output of {head} must be variables")
    domain_items = list_items(domain)
    if not domain_items:
        raise LogicSyntaxError(f"line {line}: the domain {domain} must be a non-empty list")
    values = []
    for item in domain_items:
        if not isinstance(item, Const):
            raise LogicSyntaxError(f"line {line}: domain value {item} must be a constant")
        values.append(item.value)
    if len(set(values)) != len(values):
        raise LogicSyntaxError(f"line {line}: the domain of {head} repeats a value")
    expected = (*input_items, output)
    if head.args != expected:
        raise LogicSyntaxError(
            f"line {line}: the head {head} must take the inputs then the output, "
            f"({', '.join(str(a) for a in expected)})"
        )
    return NeuralDeclaration(
        network.value, head, tuple(input_items), output, tuple(values), line  # type: ignore[arg-type]
    )


def parse_goal(text: str) -> Struct:
    """Parse a query such as ``addition(a, b, Z)`` (a final ``.`` is optional)."""
    tokens = tokenize(text)
    if tokens and tokens[-1].value == ".":
        tokens = tokens[:-1]
    if not tokens:
        raise LogicSyntaxError("line 1, column 1: expected a goal but found the end")
    reader = _Reader(tokens)
    goal = reader.goal()
    if not reader.done():
        raise reader.error("the end of the query")
    return goal
