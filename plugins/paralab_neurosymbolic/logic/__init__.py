"""The ProbLog language whose atoms may be neural predicates, with two engines.

:class:`Query` is the batched symbolic engine (neural predicates, arithmetic, acyclic rules:
MNIST addition); :class:`Solver` runs the whole language (recursion, negation, annotated
disjunctions, lists, evidence) by tabled grounding and knowledge compilation.

>>> from paralab_neurosymbolic.logic import Program, Query
>>> program = Program.parse("nn(net, [X], Y, [0, 1]) :: bit(X, Y). both(X, Y) :- bit(X, 1), bit(Y, 1).")
>>> Query(program, "both(a, b)").worlds
4
"""

from paralab_neurosymbolic.logic.inference import (
    MODES,
    Distribution,
    InferenceBudgetError,
    Query,
)
from paralab_neurosymbolic.logic.parser import LogicSyntaxError, parse_goal, parse_program
from paralab_neurosymbolic.logic.program import Program, ProgramError
from paralab_neurosymbolic.logic.solver import Solver

__all__ = [
    "MODES",
    "Distribution",
    "InferenceBudgetError",
    "LogicSyntaxError",
    "Program",
    "ProgramError",
    "Query",
    "Solver",
    "parse_goal",
    "parse_program",
]
