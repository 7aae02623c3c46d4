"""The ``logic`` protocol: a task written as a program file, trained from its queries' labels.

The spec names the program (``program = "path/to/task.pl"`` or a built-in such as
``"mnist_addition"``), its query template (``query(addition(a, b, Z)).`` in the file, or the
``query`` option), the network the spec's model implements (``network``, the name in the
program's ``nn(...)``), and how an example's label follows from its inputs' classes
(``label``, an arithmetic expression over the upper-cased input names: ``"A + B"``). Each
example is (inputs: dataset images bound to the template's input constants, query: the
template, label: the observed value of its output variable); training maximises
``P(query, output = label)`` through the logic engine, as DeepProbLog does, and evaluation
reports the accuracy of the most probable output and the accuracy the network reached on the
single images. MNIST addition is then the spec of ``mnist_addition.pl`` with ``label = "A + B"``
(the ``addition`` protocol is its specialised form with N-digit numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from paralab_neurosymbolic.addition import Addition
from paralab_neurosymbolic.logic import InferenceBudgetError, LogicSyntaxError, Program, Query
from paralab_neurosymbolic.logic.parser import parse_goal
from paralab_neurosymbolic.logic.program import ProgramError
from paralab_neurosymbolic.logic.tabling import evaluate, resolve
from paralab_neurosymbolic.logic.terms import Const, Struct, Var

BUILTIN_PROGRAMS = {"mnist_addition": Path(__file__).with_name("data") / "mnist_addition.pl"}
"""Programs shipped with the plugin, by name (the ``program`` option takes these or a path)."""


def load_program(program: str) -> Program:
    path = BUILTIN_PROGRAMS.get(program, Path(program))
    if not path.is_file():
        raise ValueError(f"program = {program!r}: no such file; give a .pl path or a built-in "
                         f"program ({', '.join(sorted(BUILTIN_PROGRAMS))})")
    try:
        return Program.load(path)
    except (ProgramError, LogicSyntaxError) as error:
        raise ValueError(f"program = {program!r}: {error}") from None


class LogicTask(Addition):
    """The ``logic`` protocol (see the module docstring); the epochs, steps, checkpoints and
    evaluation are :class:`.addition.Addition`'s, over this program's examples."""

    protocol_name = "logic"
    accuracy_metric = "query_accuracy"

    def __init__(
        self,
        program: str = "mnist_addition",
        label: str = "A + B",
        query: str = "",
        network: str = "",
        examples: int = 0,
        test_examples: int = 0,
        epochs: int = 1,
        batch_size: int = 32,
        inference: str = "exact",
        top_k: int = 64,
        samples: int = 1000,
        exact_budget: int = 10_000_000,
        train_split: str = "train",
        eval_splits: Sequence[str] = ("test",),
    ) -> None:
        super().__init__(1, examples, test_examples, epochs, batch_size, inference, top_k,
                         samples, exact_budget, train_split, eval_splits)
        self.program_name, self.template, self.network = program, query, network
        self.label, self.exact_budget = label, exact_budget
        self._prepared = False

    def prepare(self) -> None:
        """Load the program and check the query, network and label (``ValueError`` naming
        the option); called by :meth:`validate`, before anything runs."""
        if self._prepared:
            return
        program, query, network, label = (self.program_name, self.template, self.network,
                                          self.label)
        exact_budget = self.exact_budget
        parsed = load_program(program)
        if query:
            try:
                goal = parse_goal(query)
            except LogicSyntaxError as error:
                raise ValueError(f"query = {query!r}: {error}") from None
        elif len(parsed.queries) == 1:
            goal = parsed.queries[0]
        else:
            raise ValueError(f"query: program = {program!r} has {len(parsed.queries)} query(...) "
                             "directives; give the template as the query option")
        try:
            self.query = Query(parsed, goal, exact_budget=exact_budget)
        except (ProgramError, LogicSyntaxError) as error:
            raise ValueError(f"query = {str(goal)!r}: {error}") from None
        if self.query.output is None:
            raise ValueError(f"query = {str(goal)!r} has no output variable to label")
        networks = sorted({v.network for v in self.query.neural_variables})
        if len(networks) != 1:
            raise ValueError(f"program = {program!r}: the query uses networks {networks}; the "
                             "logic protocol trains one network, the spec's model")
        if network and network != networks[0]:
            raise ValueError(f"network = {network!r}: the program's neural predicates use "
                             f"{networks[0]!r}; name that one")
        self.names = [str(v.input) for v in self.query.neural_variables]
        self.keys = [v.key for v in self.query.neural_variables]
        try:
            self._label_term = parse_goal(f"label_is({label})").args[0]
        except LogicSyntaxError as error:
            raise ValueError(f"label = {label!r}: {error}") from None
        known = {Var(name.upper()) for name in self.names}
        unknown = sorted(str(v) for v in _vars(self._label_term) if v not in known)
        if unknown:
            raise ValueError(f"label = {label!r} uses {', '.join(unknown)}; its variables are the "
                             f"upper-cased inputs of the query: "
                             f"{', '.join(sorted(str(v) for v in known))}")
        self._prepared = True

    def example_text(self) -> str:
        return f"the inputs {', '.join(self.names)} of {self.query.goal}"

    def validate(self, run) -> None:  # noqa: ANN001 - paralab.RunContext
        self.prepare()
        super().validate(run)
        try:
            self.query.values  # noqa: B018 - the support must be countable within the budget
        except InferenceBudgetError as error:
            raise ValueError(f"program = {self.program_name!r}: {error}") from None

    def execute(self, run) -> None:  # noqa: ANN001 - paralab.RunContext
        self.prepare()
        super().execute(run)

    def make_examples(self, indices: torch.Tensor, labels: torch.Tensor, count: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Disjoint groups of images (one per input of the query, as in DeepProbLog's
        datasets), each labelled by the ``label`` expression over their classes."""
        width = len(self.names)
        per_pass = len(indices) // width
        count = count or per_pass
        groups = []
        while sum(len(g) for g in groups) < count:
            order = torch.randperm(len(indices), generator=generator)
            groups.append(indices.cpu()[order[: per_pass * width]].reshape(per_pass, width))
        examples = torch.cat(groups)[:count]
        classes = labels.cpu()[examples].tolist()
        values = []
        for row in classes:
            binding = {Var(name.upper()): Const(int(c)) for name, c in zip(self.names, row)}
            values.append(evaluate(resolve(self._label_term, binding), Struct("label", ())))
        dtype = torch.long if all(isinstance(v, int) for v in values) else torch.float64
        return examples.to(indices.device), torch.tensor(values, dtype=dtype,
                                                         device=indices.device)


def _vars(term) -> list[Var]:  # noqa: ANN001
    from paralab_neurosymbolic.logic.tabling import variables

    return variables(term)
