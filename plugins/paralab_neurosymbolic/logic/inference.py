"""Batched probabilistic inference over a grounded query, on the probabilities' device.

A :class:`Query` is grounded once (:mod:`.grounding`); then, for a batch of probability tensors
(one ``(batch, domain)`` tensor per neural random variable), it computes the probability of
each value of the query's output variable. Strategies:

* ``linear`` (exact): one proof whose output is ``c1*A1 + c2*A2 + ... + c0`` over independent
  integer-valued variables, e.g. the sum of two N-digit numbers. The distribution is a chain of
  shifted adds (a convolution), linear in the support size instead of exponential in the
  number of digits: N = 4 addition costs about 10**6 operations, not 10**8 worlds.
* ``enumerate`` (exact): every joint assignment (a "world") of the random variables as a grid;
  the query's truth per world is batch-independent, so P = worlds(batch, W) @ truth(W, values):
  weighted model counting as one matrix product. Overlapping proofs are counted once.
* ``topk`` (approximate, differentiable): a beam keeps the ``k`` most probable joint
  assignments; P is the mass of those among them that prove each value, a lower bound.
* ``sample`` (approximate, unbiased, differentiable): Monte Carlo over worlds; its gradient
  is the score-function estimate with a leave-one-out baseline (unbiased for ``grad P``).
* ``sdd`` (exact, differentiable): the general engine (:class:`.solver.Solver`) compiles the
  query's ground answers into one SDD with PySDD, once, and re-evaluates it for each batch;
  grounding is value by value (as ProbLog/DeepProbLog do), so it suits small supports.

``mode="exact"`` raises :class:`InferenceBudgetError` when the exact strategy would exceed
``exact_budget`` work units; ``mode="auto"`` switches to ``topk`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from paralab_neurosymbolic.logic.grounding import Proof, ground
from paralab_neurosymbolic.logic.program import Program, ProgramError
from paralab_neurosymbolic.logic.terms import Const, Expr, RandomVar, Struct, Term, Var

MODES = ("exact", "auto", "topk", "sample", "sdd")


class InferenceBudgetError(ValueError):
    """Exact inference of a query would exceed the budget; the message says how to proceed."""


@dataclass
class Distribution:
    """``probs[b, j]`` = P(the output variable equals ``values[j]``) for example ``b``
    (a single column ``values == [True]`` for a query without an output variable)."""

    values: list[Any]
    probs: torch.Tensor
    strategy: str

    def probability_of(self, observed: torch.Tensor | Sequence[Any]) -> torch.Tensor:
        """P(output = observed[b]) for each example ``b`` (0 for values outside the support)."""
        first = self.values[0] if self.values else None
        if (isinstance(observed, torch.Tensor) and not observed.is_floating_point()
                and isinstance(first, int) and not isinstance(first, bool)
                and self.values == list(range(first, first + len(self.values)))):
            # integer support without gaps (sums): the column is the value's offset, on the
            # device, no Python round trip (a training step of MNIST addition is ~0.6 ms)
            offset = observed.to(self.probs.device) - first
            inside = (offset >= 0) & (offset < len(self.values))
            picked = self.probs.gather(1, offset.clamp(0, len(self.values) - 1)[:, None])[:, 0]
            return picked * inside
        column = {value: j for j, value in enumerate(self.values)}
        if isinstance(observed, torch.Tensor):
            observed = observed.tolist()
        index = torch.tensor(
            [column.get(_key(v), -1) for v in observed], device=self.probs.device
        )
        padded = torch.cat([self.probs, self.probs.new_zeros(len(self.probs), 1)], dim=1)
        return padded.gather(1, torch.where(index < 0, self.probs.shape[1], index)[:, None])[:, 0]

    def most_probable(self) -> list[Any]:
        return [self.values[j] for j in self.probs.argmax(dim=1).tolist()]


def _key(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _is_int_domain(variable: RandomVar) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in variable.domain)


def _numeric_domain(variable: RandomVar) -> bool:
    return all(isinstance(v, (int, float)) for v in variable.domain)


class Query:
    """A query grounded against a program once, evaluated for batches of probabilities.

    >>> program = Program.parse('''
    ...     nn(net, [X], Y, [0, 1, 2]) :: digit(X, Y).
    ...     add(X, Y, Z) :- digit(X, A), digit(Y, B), Z is A + B.''')
    >>> query = Query(program, "add(a, b, Z)")
    >>> p = torch.tensor([[0.5, 0.5, 0.0]])
    >>> query.distribution({"digit(a)": p, "digit(b)": p}).probs
    tensor([[0.2500, 0.5000, 0.2500, 0.0000, 0.0000]])
    """

    def __init__(
        self,
        program: Program,
        goal: str | Struct,
        *,
        exact_budget: int = 10_000_000,
        max_proofs: int = 100_000,
    ) -> None:
        self.program = program
        self.goal = program.check_goal(goal)
        limits = program.symbolic_limits()
        if limits:
            raise ProgramError(
                f"query {self.goal}: the batched symbolic engine cannot run this program ("
                f"{'; '.join(limits)}); use the general engine, "
                "paralab_neurosymbolic.logic.Solver (tabled, with negation and disjunctions)"
            )
        if exact_budget < 1:
            raise ValueError(f"exact_budget must be >= 1, got {exact_budget}")
        self.exact_budget = exact_budget
        self.proofs: list[Proof] = ground(program, self.goal, max_proofs=max_proofs)
        free = _free_vars(self.goal)
        if len(free) > 1:
            raise ProgramError(
                f"query {self.goal} has {len(free)} free variables ({', '.join(map(str, free))}); "
                "bind all but one (the output whose distribution is computed)"
            )
        self.output = free[0] if free else None
        variables: dict[str, RandomVar] = {}
        for proof in self.proofs:
            for term in (*proof.answer, *proof.constraints, *proof.facts):
                for variable in _random_vars(term):
                    variables.setdefault(variable.key, variable)
        self.variables = list(variables.values())
        # The output's support is built on first use, not here: for MNIST addition of two
        # N-digit numbers it has 2 * 10**N - 1 values, which top-k inference of an observed
        # sum never needs (and which cannot be held at all for N = 15).
        self._values: list[Any] | None = None
        self._column_index: dict[Any, int] | None = None
        self._linear = self._linear_form()
        self._scatter_targets: dict[tuple[torch.device, int], torch.Tensor] = {}

    # ------------------------------------------------------------------------ description

    @property
    def neural_variables(self) -> list[RandomVar]:
        """The neural random variables, in the order their probabilities are expected."""
        return [v for v in self.variables if v.kind == "neural"]

    @property
    def worlds(self) -> int:
        """How many joint assignments exact enumeration would visit."""
        return math.prod(len(v.domain) for v in self.variables)

    def cost(self, strategy: str) -> int:
        """Work units of an exact strategy (per example): worlds for ``enumerate``, shifted
        adds times support size for ``linear``."""
        if strategy == "linear" and self._linear is not None:
            _, terms = self._linear
            low = high = total = 0
            for coefficient, variable in terms:
                values = [coefficient * v for v in variable.domain]
                low, high = low + min(values), high + max(values)
                total += (high - low + 1) * len(variable.domain)
            return total
        return self.worlds * max(1, len(self.proofs))

    def strategy(self, mode: str = "exact") -> str:
        """The strategy ``mode`` resolves to; raises when exact inference is over budget."""
        if mode not in MODES:
            raise ValueError(f"inference mode {mode!r} unknown; choose from {', '.join(MODES)}")
        if mode in ("topk", "sample", "sdd"):
            return mode
        exact = "linear" if self._linear is not None else "enumerate"
        cost = self.cost(exact)
        if cost <= self.exact_budget:
            return exact
        if mode == "auto":
            return "topk"
        raise InferenceBudgetError(
            f"exact inference of {self.goal} needs {cost:,} work units ({self.worlds:,} worlds "
            f"over {len(self.variables)} random variables) > exact_budget {self.exact_budget:,}; "
            "raise exact_budget, or use mode='auto' (switch to top-k when over budget), "
            "'topk' or 'sample' (approximate)"
        )

    # ------------------------------------------------------------------------- inference

    def distribution(
        self,
        probabilities: Mapping[str, torch.Tensor],
        *,
        mode: str = "exact",
        k: int = 64,
        samples: int = 1000,
        generator: torch.Generator | None = None,
    ) -> Distribution:
        """P(output = each value) for a batch; ``probabilities`` maps each neural variable's
        key (``"digit(a)"``) to a ``(batch, domain)`` tensor whose rows sum to 1."""
        tables = self._tables(probabilities)
        strategy = self.strategy(mode)
        if strategy == "linear":
            probs = self._run_linear(tables)
        elif strategy == "enumerate":
            probs = self._run_enumerate(tables)
        elif strategy == "sdd":
            probs = self._run_sdd(probabilities)
        elif strategy == "topk":
            if k < 1:
                raise ValueError(f"top-k inference needs k >= 1, got {k}")
            probs = self._run_topk(tables, k)
        else:
            if samples < 1:
                raise ValueError(f"sampling inference needs samples >= 1, got {samples}")
            probs = self._run_sample(tables, samples, generator)
        return Distribution(list(self.values), probs, strategy)

    def log_probability(
        self, probabilities: Mapping[str, torch.Tensor], observed: Any = None, **options: Any
    ) -> torch.Tensor:
        """log P(query) per example, as :meth:`probability`; top-k proofs of an observed
        value sum their masses in log space, so a 30-digit proof of mass 1e-60 (below float32's
        range) still has a finite log and a gradient."""
        if (
            self.output is not None
            and observed is not None
            and self._linear is not None
            and self.strategy(options.get("mode", "exact")) == "topk"
        ):
            return self._run_topk_observed(self._tables(probabilities), observed,
                                           options.get("k", 64), log_space=True)
        return self.probability(probabilities, observed, **options).log()

    def probability(
        self, probabilities: Mapping[str, torch.Tensor], observed: Any = None, **options: Any
    ) -> torch.Tensor:
        """P(query) per example: of ``observed[b]`` for the output variable, or of the query
        being true when it has no output variable."""
        if self.output is not None and observed is None:
            raise ValueError(f"query {self.goal} has output {self.output}: pass observed values")
        if (
            self.output is not None
            and self._linear is not None
            and self.strategy(options.get("mode", "exact")) == "topk"
        ):
            return self._run_topk_observed(self._tables(probabilities), observed,
                                           options.get("k", 64))
        result = self.distribution(probabilities, **options)
        if self.output is None:
            return result.probs[:, 0]
        return result.probability_of(observed)

    def evaluate(
        self,
        networks: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
        inputs: Mapping[str, torch.Tensor],
        **options: Any,
    ) -> Distribution:
        """Run each network once on all the inputs it is asked about (one batched forward
        pass per network), softmax, then :meth:`distribution`."""
        by_network: dict[str, list[RandomVar]] = {}
        for variable in self.neural_variables:
            by_network.setdefault(variable.network, []).append(variable)
        probabilities: dict[str, torch.Tensor] = {}
        for network, variables in by_network.items():
            if network not in networks:
                raise ProgramError(
                    f"query {self.goal} uses network {network!r}; networks given: "
                    f"{', '.join(sorted(networks)) or 'none'}"
                )
            names = [str(v.input) for v in variables]
            missing = [n for n in names if n not in inputs]
            if missing:
                raise ProgramError(
                    f"query {self.goal} needs inputs {missing}; inputs given: {sorted(inputs)}"
                )
            batch = torch.cat([inputs[n] for n in names])
            probs = torch.softmax(networks[network](batch), dim=-1)
            for variable, chunk in zip(variables, probs.chunk(len(variables))):
                probabilities[variable.key] = chunk
        return self.distribution(probabilities, **options)

    # -------------------------------------------------------------------------- internals

    def _tables(self, probabilities: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """One ``(batch, domain)`` table per random variable, facts broadcast."""
        neural = self.neural_variables
        missing = [v.key for v in neural if v.key not in probabilities]
        if missing:
            raise ProgramError(
                f"query {self.goal} needs probabilities for {missing}; given: "
                f"{sorted(probabilities)}"
            )
        reference = probabilities[neural[0].key] if neural else None
        batch = reference.shape[0] if reference is not None else 1
        device = reference.device if reference is not None else torch.device("cpu")
        dtype = reference.dtype if reference is not None else torch.float32
        tables = []
        for variable in self.variables:
            if variable.kind == "neural":
                table = probabilities[variable.key]
                if table.shape != (batch, len(variable.domain)):
                    raise ValueError(
                        f"probabilities for {variable.key} have shape {tuple(table.shape)}, "
                        f"expected ({batch}, {len(variable.domain)})"
                    )
            else:
                p = variable.probability
                table = torch.tensor([[1.0 - p, p]], device=device, dtype=dtype).expand(batch, 2)
            tables.append(table)
        return tables

    @property
    def values(self) -> list[Any]:
        """The output's possible values, in the order of a distribution's columns."""
        if self._values is None:
            size = self.support_size()
            if size > self.exact_budget:
                raise InferenceBudgetError(
                    f"the output {self.output} of {self.goal} can take {size:,} values, more "
                    f"than exact_budget {self.exact_budget:,}: a distribution over all of them "
                    "cannot be computed; ask for the probability of observed values "
                    "(Query.probability(..., observed=..., mode='topk')) instead"
                )
            self._values = self._support()
        return self._values

    @property
    def _column(self) -> dict[Any, int]:
        if self._column_index is None:
            self._column_index = {value: j for j, value in enumerate(self.values)}
        return self._column_index

    def support_size(self) -> int:
        """An upper bound of how many values the output can take, counted without building
        them (integer ranges are counted from their bounds)."""
        if self.output is None:
            return 1
        total = 0
        for proof in self.proofs:
            answer = proof.answer[0]
            if isinstance(answer, Expr):
                low, high = _bounds(answer)
                total += int(high) - int(low) + 1
            elif isinstance(answer, RandomVar):
                total += len(answer.domain)
            else:
                total += 1
        return total

    def _support(self) -> list[Any]:
        if self.output is None:
            return [True]
        values: set[Any] = set()
        for proof in self.proofs:
            answer = proof.answer[0]
            if isinstance(answer, Const):
                values.add(_key(answer.value))
            elif isinstance(answer, RandomVar):
                values.update(_key(v) for v in answer.domain)
            elif isinstance(answer, Expr):
                low, high = _bounds(answer)
                values.update(range(int(low), int(high) + 1))
            else:
                raise ProgramError(f"query {self.goal}: output {self.output} is bound to {answer}")
        try:
            return sorted(values)
        except TypeError:
            return sorted(values, key=str)

    def _linear_form(self) -> tuple[int, list[tuple[int, RandomVar]]] | None:
        if self.output is None or len(self.proofs) != 1:
            return None
        proof = self.proofs[0]
        if proof.constraints or proof.facts:
            return None
        form = _linear(proof.answer[0])
        if form is None:
            return None
        constant, coefficients = form
        variables = {v.key: v for v in self.variables}
        terms = [(c, variables[key]) for key, c in coefficients.items() if c != 0]
        if not all(_is_int_domain(v) for _, v in terms):
            return None
        return constant, terms

    def _run_linear(self, tables: list[torch.Tensor]) -> torch.Tensor:
        assert self._linear is not None
        constant, terms = self._linear
        by_key = {v.key: table for v, table in zip(self.variables, tables)}
        reference = tables[0]
        current = reference.new_ones(reference.shape[0], 1)
        low = constant
        for position, (coefficient, variable) in enumerate(terms):
            table = by_key[variable.key]
            shifts = [coefficient * v for v in variable.domain]
            new_low = low + min(shifts)
            width = current.shape[1] + max(shifts) - min(shifts)
            # P(new = i + shift_k) += P(current = i) * P(variable = k): one outer product and
            # one scatter-add per variable (a batched convolution with a strided kernel). The
            # scatter index depends on the program alone: built once per device.
            key = (current.device, position)
            target = self._scatter_targets.get(key)
            if target is None:
                # a normal tensor even under inference_mode: training saves it for backward
                with torch.inference_mode(False):
                    offsets = torch.tensor([low + shift - new_low for shift in shifts],
                                           device=current.device)
                    target = (torch.arange(current.shape[1], device=current.device)[:, None]
                              + offsets[None, :]).reshape(1, -1)
                self._scatter_targets[key] = target
            outer = (current[:, :, None] * table[:, None, :]).reshape(current.shape[0], -1)
            current = current.new_zeros(current.shape[0], width).scatter_add(
                1, target.expand(current.shape[0], -1), outer
            )
            low = new_low
        # Place the support [low, low + width) into self.values' columns.
        start = self._column[low]
        end = len(self.values) - start - current.shape[1]
        return torch.nn.functional.pad(current, (start, end)) if start or end else current

    def _grid(self, device: torch.device) -> list[torch.Tensor]:
        """For each random variable, its domain index in every world (first one slowest)."""
        sizes = [len(v.domain) for v in self.variables]
        worlds = torch.arange(math.prod(sizes), device=device)
        indices, stride = [], math.prod(sizes)
        for size in sizes:
            stride //= size
            indices.append((worlds // stride) % size)
        return indices

    def _truth(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """``(..., n_values)`` booleans: world proves each output value (any proof)."""
        shape = indices[0].shape if indices else torch.Size([1])
        device = indices[0].device if indices else torch.device("cpu")
        values = {v.key: (v, i) for v, i in zip(self.variables, indices)}
        truth = torch.zeros(*shape, len(self.values) + 1, dtype=torch.bool, device=device)
        for proof in self.proofs:
            holds = torch.ones(shape, dtype=torch.bool, device=device)
            for fact in proof.facts:
                holds = holds & (values[fact.key][1] == 1)
            for constraint in proof.constraints:
                holds = holds & _evaluate(constraint, values, shape, device).bool()
            if self.output is None:
                column = torch.zeros(shape, dtype=torch.long, device=device)
            else:
                column = self._columns(proof.answer[0], values, shape, device)
            column = torch.where(holds & (column >= 0), column, len(self.values))
            truth.scatter_(-1, column.unsqueeze(-1), True)
        return truth[..., :-1]

    def _columns(self, answer: Term, values: dict, shape: torch.Size, device: Any) -> torch.Tensor:
        if isinstance(answer, Const):
            column = self._column.get(_key(answer.value), -1)
            return torch.full(shape, column, dtype=torch.long, device=device)
        if isinstance(answer, RandomVar) and not _numeric_domain(answer):
            lookup = torch.tensor(
                [self._column.get(_key(v), -1) for v in answer.domain], device=device
            )
            return lookup[values[answer.key][1]]
        result = _evaluate(answer, values, shape, device)
        if not all(isinstance(v, (int, float)) for v in self.values):
            raise ProgramError(f"query {self.goal}: output mixes numbers and symbols")
        table = torch.tensor([float(v) for v in self.values], device=device)
        position = torch.searchsorted(table, result.contiguous()).clamp(max=len(table) - 1)
        return torch.where(table[position] == result, position, -1)

    def _run_sdd(self, probabilities: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """P(each output value) from the SDD of the query's ground answers (compiled on the
        first call, then only re-evaluated)."""
        from paralab_neurosymbolic.logic.solver import Solver
        from paralab_neurosymbolic.logic.tabling import unify, walk

        if getattr(self, "_solver", None) is None:
            solver = Solver(self.program, queries=[self.goal], compiler="sdd")
            columns = []
            for answer in solver.queries:
                if self.output is None:
                    columns.append(0)
                    continue
                value = walk(self.output, unify(self.goal, answer, {}) or {})
                column = self._column.get(_key(value.value), -1) if isinstance(value, Const) \
                    else -1
                if column < 0:
                    raise ProgramError(f"query {self.goal}: the answer {answer} lies outside "
                                       "the support computed from the program")
                columns.append(column)
            self._solver, self._sdd_columns = solver, columns
        reference = next(iter(probabilities.values()), None)
        batch = reference.shape[0] if reference is not None else 1
        probs = (reference.new_zeros(batch, len(self.values)) if reference is not None
                 else torch.zeros(1, len(self.values)))
        for column, p in zip(self._sdd_columns, self._solver.evaluate(probabilities)):
            probs[:, column] = probs[:, column] + p
        return probs

    def _run_enumerate(self, tables: list[torch.Tensor]) -> torch.Tensor:
        if not tables:  # a deterministic query: one world
            return self._truth([]).float().reshape(1, -1)
        device = tables[0].device
        indices = self._grid(device)
        truth = self._truth(indices).to(tables[0].dtype)  # (W, V), the same for every example
        worlds = tables[0]
        for table in tables[1:]:
            worlds = (worlds[:, :, None] * table[:, None, :]).reshape(worlds.shape[0], -1)
        return worlds @ truth

    def _run_topk(self, tables: list[torch.Tensor], k: int) -> torch.Tensor:
        batch = tables[0].shape[0]
        logs = [table.clamp_min(1e-30).log() for table in tables]
        score = tables[0].new_zeros(batch, 1)
        chosen = torch.zeros(batch, 1, 0, dtype=torch.long, device=tables[0].device)
        with torch.no_grad():
            for log in logs:
                size = log.shape[1]
                candidates = (score[:, :, None] + log[:, None, :]).reshape(batch, -1)
                keep = min(k, candidates.shape[1])
                score, flat = candidates.topk(keep, dim=1)
                parent, value = flat // size, flat % size
                chosen = torch.cat(
                    [chosen.gather(1, parent[:, :, None].expand(-1, -1, chosen.shape[2])),
                     value[:, :, None]],
                    dim=2,
                )
        indices = [chosen[:, :, i] for i in range(len(tables))]
        # Recompute the beam's probabilities with gradients flowing to the tables.
        weight = torch.stack(
            [log.gather(1, index) for log, index in zip(logs, indices)]
        ).sum(0).exp()
        truth = self._truth(indices).to(weight.dtype)  # (batch, K, V)
        return torch.einsum("bk,bkv->bv", weight, truth)

    def _run_topk_observed(
        self, tables: list[torch.Tensor], observed: Any, k: int, log_space: bool = False
    ) -> torch.Tensor:
        """P(``output = observed``) for a linear query from the top-k *partial sums*: a beam
        over the terms, smallest place value first (:func:`_place_groups`), that keeps only
        partial sums that can still reach the observed value (exact pruning by the reachable
        sums of the remaining terms) and merges the proofs that reach the same partial sum
        (their masses add: what is left to decide does not depend on how the sum was made).

        For MNIST addition a partial sum after each place is the observed value's low digits
        plus a carry of 0 or 1, so two states survive each place and any ``k >= 2`` gives the
        exact probability at every N (a dynamic programme over carries, 30 places for N = 15).
        Where more partial sums survive than ``k`` (Scallop's sum of N single digits keeps up
        to 9N + 1), the k most probable are kept: a differentiable lower bound. Without the
        merge, a beam of *proofs* (the version before) kept a handful of the 1e15 proofs of a
        15-digit sum; trained on them, MNIST sum N = 15 settled on digits read one off."""
        assert self._linear is not None
        if k < 1:
            raise ValueError(f"top-k inference needs k >= 1, got {k}")
        constant, terms = self._linear
        by_key = {v.key: table for v, table in zip(self.variables, tables)}
        device = tables[0].device
        # Integer sums in int64: float32 holds integers exactly only up to 2**24, and the
        # sums of two 9-digit numbers reach 2e9.
        target = torch.as_tensor(
            [round(float(v)) for v in (observed.tolist() if isinstance(observed, torch.Tensor)
                                       else observed)], dtype=torch.long, device=device
        ) - int(constant)
        groups = _place_groups(terms)
        reachable: list[_Reachable] = []  # what the groups after each one can still add
        sums = _Reachable.zero(device)
        for group in reversed(groups):
            reachable.append(sums)
            for coefficient, variable in group:
                sums = sums.plus(coefficient, [int(v) for v in variable.domain],
                                 self.exact_budget)
        reachable.reverse()
        batch = tables[0].shape[0]
        partial = torch.zeros(batch, 1, dtype=torch.long, device=device)
        score = tables[0].new_zeros(batch, 1)  # log-mass of each state, with gradients
        for group, reach in zip(groups, reachable):
            # the group's joint assignments: their values and log-masses
            values = torch.zeros(1, dtype=torch.long, device=device)
            log = tables[0].new_zeros(batch, 1)
            for coefficient, variable in group:
                own = torch.tensor([coefficient * int(v) for v in variable.domain],
                                   dtype=torch.long, device=device)
                values = (values[:, None] + own[None, :]).reshape(-1)
                log = (log[:, :, None] + by_key[variable.key].clamp_min(1e-30).log()
                       [:, None, :]).reshape(batch, -1)
            candidate_sum = (partial[:, :, None] + values[None, None, :]).reshape(batch, -1)
            candidate = (score[:, :, None] + log[:, None, :]).reshape(batch, -1)
            feasible = reach.contains(target[:, None] - candidate_sum)
            candidate = candidate.masked_fill(~feasible, float("-inf"))
            merged = _merge_states(candidate_sum, candidate, feasible, reach)
            if merged is not None:
                candidate_sum, candidate = merged
            keep = min(k, candidate.shape[1])
            with torch.no_grad():
                chosen = candidate.topk(keep, dim=1).indices
            partial = candidate_sum.gather(1, chosen)
            score = candidate.gather(1, chosen)
        valid = torch.isfinite(score)
        found = valid.any(dim=1)
        # rows without any proof: -inf (probability 0), with no NaN in the backward pass
        safe = torch.where(found[:, None], score, torch.zeros_like(score))
        log_p = torch.logsumexp(safe.masked_fill(~valid & found[:, None], float("-inf")), dim=1)
        log_p = log_p.masked_fill(~found, float("-inf"))
        return log_p if log_space else log_p.exp()

    def _run_sample(
        self, tables: list[torch.Tensor], samples: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Monte Carlo over worlds, differentiable by the score function (REINFORCE) with a
        leave-one-out baseline.

        The forward value is the plain estimate ``mean_s f(x_s)``; the surrogate term
        ``mean_s (f(x_s) - b_s) * (log p(x_s) - log p(x_s).detach())`` is zero in value, and
        its gradient is ``mean_s (f(x_s) - b_s) * grad log p(x_s)``, an unbiased estimate of
        ``grad P`` because the baseline ``b_s`` (the mean of the *other* samples' truths) does
        not depend on ``x_s``. The baseline cuts the variance: a query true in every world gets
        a zero gradient, not a noisy one. ``samples = 1`` has no other sample: no baseline."""
        with torch.no_grad():
            indices = [
                torch.multinomial(table.detach().float().cpu(), samples, replacement=True,
                                  generator=generator).to(table.device)
                for table in tables
            ]
        truth = self._truth(indices).to(tables[0].dtype)  # (batch, S, V), no gradient
        estimate = truth.mean(dim=1)
        if not any(table.requires_grad for table in tables):
            return estimate
        log_p = torch.stack(
            [table.clamp_min(1e-30).log().gather(1, index) for table, index in zip(tables, indices)]
        ).sum(0)  # (batch, S): log-probability of each sampled world
        if samples > 1:
            baseline = (truth.sum(dim=1, keepdim=True) - truth) / (samples - 1)
        else:
            baseline = torch.zeros_like(truth)
        score = (log_p - log_p.detach())[:, :, None]
        return estimate + ((truth - baseline) * score).mean(dim=1)


@dataclass(frozen=True)
class _Reachable:
    """The sums a set of integer variables can reach, for top-k pruning: an arithmetic
    progression ``low, low + step, ..., high`` when it is one (the place values of MNIST
    addition always are: digits 0..9 fill each gap of 10), else an explicit boolean table over
    ``[low, high]``, refused beyond ``budget`` entries instead of exhausting memory (two
    15-digit numbers reach 2e15 sums, which no table holds)."""

    low: int
    high: int
    step: int
    table: torch.Tensor | None = None

    @classmethod
    def zero(cls, device: torch.device) -> _Reachable:
        return cls(0, 0, 1, None)

    def values(self) -> torch.Tensor:
        if self.table is not None:
            return self.table.nonzero()[:, 0] + self.low
        return torch.arange(self.low, self.high + 1, self.step)

    def plus(self, coefficient: int, domain: list[int], budget: int) -> _Reachable:
        """This set plus ``coefficient * d`` for each ``d`` in ``domain``."""
        shifts = sorted({coefficient * d for d in domain})
        if self.table is None:
            span = self.high - self.low
            progression = _progression(shifts)
            if progression is not None:
                first, last, step = progression
                if self.low == self.high:  # a single point plus a progression
                    return _Reachable(self.low + first, self.low + last, step)
                if step % self.step == 0 and step <= span + self.step:
                    return _Reachable(self.low + first, self.high + last, self.step)
                if self.step % step == 0 and self.step <= last - first + step:
                    return _Reachable(self.low + first, self.high + last, step)
                if last == first:
                    return _Reachable(self.low + first, self.high + first, self.step)
        # Not a progression: an explicit table, within the budget.
        low, high = self.low + shifts[0], self.high + shifts[-1]
        if high - low + 1 > budget:
            raise InferenceBudgetError(
                f"top-k pruning would need a table of {high - low + 1:,} reachable sums "
                f"(> exact_budget {budget:,}); raise exact_budget or simplify the query"
            )
        current = self.values()
        table = torch.zeros(high - low + 1, dtype=torch.bool)
        for shift in shifts:
            table[current + shift - low] = True
        return _Reachable(low, high, 1, table)

    def contains(self, rest: torch.Tensor) -> torch.Tensor:
        """Which of the integer tensor ``rest`` the variables can still add."""
        inside = (rest >= self.low) & (rest <= self.high)
        offset = (rest - self.low).clamp(0, self.high - self.low)
        if self.table is not None:
            return inside & self.table.to(rest.device)[offset]
        return inside & (offset % self.step == 0)


def _merge_states(
    sums: torch.Tensor, logs: torch.Tensor, feasible: torch.Tensor, reach: _Reachable,
    limit: int = 65_536,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Candidate states with equal partial sums merged (log-masses added by log-sum-exp),
    or ``None`` when a row's feasible partial sums spread over more than ``limit`` slots.

    A feasible partial sum is the target minus what the rest can add, so for a progression
    of step ``s`` it is congruent to the target mod ``s``: slot ``(sum - base) // s`` (base:
    the row's smallest feasible sum) is unique within a row. For MNIST addition 2 slots
    survive each place, and 1 after the last (the observed sum itself)."""
    step = reach.step if reach.table is None else 1
    big = torch.iinfo(sums.dtype).max
    with torch.no_grad():
        base = sums.masked_fill(~feasible, big).min(dim=1, keepdim=True).values
        base = torch.where(base == big, torch.zeros_like(base), base)
        top = sums.masked_fill(~feasible, -big).max(dim=1, keepdim=True).values
        spread = int(((top - base).clamp_min(0) // step).max()) + 1 if sums.numel() else 1
    if spread > limit or spread >= sums.shape[1]:
        return None
    batch = sums.shape[0]
    slot = ((sums - base) // step).clamp(0, spread - 1)
    with torch.no_grad():  # the log-sum-exp shift: any constant per slot is exact
        shift = torch.full((batch, spread), float("-inf"), dtype=logs.dtype,
                           device=logs.device)
        shift = shift.scatter_reduce(1, slot, logs.detach(), reduce="amax")
        shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    total = logs.new_zeros(batch, spread).scatter_add(
        1, slot, (logs - shift.gather(1, slot)).exp())
    empty = total == 0
    merged = (total + empty.to(total.dtype)).log().masked_fill(empty, float("-inf")) + shift
    representative = base + step * torch.arange(spread, device=sums.device)[None, :]
    return representative, merged


def _place_groups(
    terms: list[tuple[int, RandomVar]], joint_limit: int = 1024
) -> list[list[tuple[int, RandomVar]]]:
    """The top-k beam's steps for a linear query: terms sorted by place value (smallest
    first, ties in the program's order), those of one place value decided together, at most
    ``joint_limit`` joint assignments a step (Scallop's sum of N single digits has one place
    value for all N: chunks of three digits).

    The observed value prunes a step only when every term of that place value is decided: the
    units of a + b must match the sum's last digit, which a0 alone cannot. Deciding a's digits
    before b's (the program's order) kept a as the network guessed and forced b to fit, a
    biased proof that MNIST sum N = 15 trained into digits read one off."""
    groups: list[list[tuple[int, RandomVar]]] = []
    joint = 0
    for term in sorted(terms, key=lambda t: abs(t[0])):
        size = len(term[1].domain)
        if groups and abs(groups[-1][0][0]) == abs(term[0]) and joint * size <= joint_limit:
            groups[-1].append(term)
            joint *= size
        else:
            groups.append([term])
            joint = size
    return groups


def _progression(values: list[int]) -> tuple[int, int, int] | None:
    """``(first, last, step)`` when the sorted ``values`` are evenly spaced, else None."""
    if len(values) == 1:
        return values[0], values[0], 1
    step = values[1] - values[0]
    if all(b - a == step for a, b in zip(values, values[1:])):
        return values[0], values[-1], step
    return None


def _free_vars(goal: Struct) -> list[Var]:
    found: list[Var] = []

    def visit(term: Term) -> None:
        if isinstance(term, Var) and term not in found and not term.name.startswith("_"):
            found.append(term)
        elif isinstance(term, Struct):
            for arg in term.args:
                visit(arg)

    visit(goal)
    return found


def _random_vars(term: Term) -> list[RandomVar]:
    if isinstance(term, RandomVar):
        return [term]
    if isinstance(term, Expr):
        return _random_vars(term.left) + _random_vars(term.right)
    if isinstance(term, Struct):
        return [v for a in term.args for v in _random_vars(a)]
    return []


def _bounds(term: Term) -> tuple[float, float]:
    """Interval bounds of an integer expression over its variables' domains."""
    if isinstance(term, Const):
        if not isinstance(term.value, (int, float)):
            raise ProgramError(f"{term} is not a number")
        return float(term.value), float(term.value)
    if isinstance(term, RandomVar):
        if not _numeric_domain(term):
            raise ProgramError(f"arithmetic on {term.key}, whose domain is not numeric")
        return float(min(term.domain)), float(max(term.domain))  # type: ignore[type-var]
    if isinstance(term, Expr):
        (a, b), (c, d) = _bounds(term.left), _bounds(term.right)
        if term.op == "+":
            return a + c, b + d
        if term.op == "-":
            return a - d, b - c
        if term.op == "*":
            products = [a * c, a * d, b * c, b * d]
            return min(products), max(products)
        if term.op == "mod":
            return 0.0, max(abs(c), abs(d)) - 1
        if term.op == "//":
            if c <= 0 <= d:
                raise ProgramError(f"{term} may divide by zero")
            quotients = [a // c, a // d, b // c, b // d]
            return min(quotients), max(quotients)
        return 0.0, 1.0
    raise ProgramError(f"cannot bound {term}")


def _linear(term: Term) -> tuple[int, dict[str, int]] | None:
    """``term`` as ``constant + sum(coefficient * variable)``, or ``None`` if not linear."""
    if isinstance(term, Const):
        return (term.value, {}) if isinstance(term.value, int) else None
    if isinstance(term, RandomVar):
        return 0, {term.key: 1}
    if not isinstance(term, Expr):
        return None
    left, right = _linear(term.left), _linear(term.right)
    if left is None or right is None:
        return None
    if term.op in ("+", "-"):
        sign = 1 if term.op == "+" else -1
        merged = dict(left[1])
        for key, c in right[1].items():
            merged[key] = merged.get(key, 0) + sign * c
        return left[0] + sign * right[0], merged
    if term.op == "*":
        if not left[1]:
            return left[0] * right[0], {k: left[0] * c for k, c in right[1].items()}
        if not right[1]:
            return left[0] * right[0], {k: right[0] * c for k, c in left[1].items()}
    return None


def _evaluate(term: Term, values: dict, shape: torch.Size, device: Any) -> torch.Tensor:
    """``term`` at every world (or beam entry): a float tensor of shape ``shape``."""
    if isinstance(term, Const):
        return torch.full(shape, float(term.value), device=device)  # type: ignore[arg-type]
    if isinstance(term, RandomVar):
        variable, index = values[term.key]
        if not _numeric_domain(variable):
            raise ProgramError(f"arithmetic on {term.key}, whose domain is not numeric")
        domain = torch.tensor([float(v) for v in variable.domain], device=device)
        return domain[index]
    if not isinstance(term, Expr):
        raise ProgramError(f"cannot evaluate {term}")
    if term.op in ("==", "!="):
        symbolic = _symbol_compare(term, values, device)
        if symbolic is not None:
            return symbolic.float()
    left = _evaluate(term.left, values, shape, device)
    right = _evaluate(term.right, values, shape, device)
    operations = {
        "+": lambda: left + right,
        "-": lambda: left - right,
        "*": lambda: left * right,
        "//": lambda: torch.div(left, right, rounding_mode="floor"),
        "mod": lambda: torch.remainder(left, right),
        "==": lambda: (left == right).float(),
        "!=": lambda: (left != right).float(),
        "<": lambda: (left < right).float(),
        ">": lambda: (left > right).float(),
        "=<": lambda: (left <= right).float(),
        ">=": lambda: (left >= right).float(),
    }
    return operations[term.op]()


def _symbol_compare(term: Expr, values: dict, device: Any) -> torch.Tensor | None:
    """Equality of a symbol-valued random variable with a constant or another variable."""
    left, right = term.left, term.right
    if isinstance(right, RandomVar) and not isinstance(left, RandomVar):
        left, right = right, left
    if not isinstance(left, RandomVar) or _numeric_domain(left):
        return None
    index = values[left.key][1]
    if isinstance(right, Const):
        position = left.domain.index(right.value) if right.value in left.domain else -1
        equal = index == position
    elif isinstance(right, RandomVar):
        other = values[right.key][1]
        mapping = torch.tensor(
            [right.domain.index(v) if v in right.domain else -1 for v in left.domain],
            device=device,
        )
        equal = mapping[index] == other
    else:
        return None
    return equal if term.op == "==" else ~equal
