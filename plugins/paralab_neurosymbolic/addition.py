"""MNIST addition (Manhaeve et al. 2018): learn digits from the sums of N-digit numbers only.

An example is a tensor of ``2 * N`` *indices* into the run's shared digit dataset (digits or
MNIST), never a copy of the images; its label is the sum of the two numbers. The network is
the run's model; it never sees a digit label. Training maximises the probability of the
observed sum under the program

    nn(digit_net, [X], Y, [0..9]) :: digit(X, Y).
    number(X1, ..., XN, V) :- digit(X1, D1), ..., V is 10**(N-1)*D1 + ... + DN.
    addition(A1..AN, B1..BN, Z) :- number(A1..AN, X), number(B1..BN, Y), Z is X + Y.

with exact inference by default (a batched convolution, :mod:`.logic.inference`). The digit
accuracy that emerged is measured by evaluating the model on the single-digit test split.

The protocol trains only through the run's :class:`paralab.GradientMethod`: each batch of
examples is one ``method.step`` on their images, with :class:`SumObjective` (-log P(observed
sum)) as the objective, so the method's ``loss`` (an override included) and the spec's loss
terms decide what is minimized.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from paralab import Protocol
from paralab_neurosymbolic.logic import InferenceBudgetError, Program, Query

if TYPE_CHECKING:
    from paralab import Batch, GradientMethod, RunContext

MAX_DIGITS = 15
"""Scallop's largest MNIST sum: two 15-digit numbers (30 images, 2e15 possible sums). Beyond
about 4 digits the support is over any exact budget, so top-k inference of the observed sum
trains (merged partial sums, two a place: the exact probability, see
``Query._run_topk_observed``), and the prediction is the sum of the most probable digits
(:meth:`Addition.predict`)."""
NETWORK = "digit_net"


def require_checkpointable(run: RunContext) -> None:
    """``checkpoint_every`` needs a method whose state a checkpoint can hold."""
    if run.spec.checkpoint_every and not all(
        callable(getattr(run.method, name, None)) for name in ("state_dict", "load_state_dict")
    ):
        raise ValueError(
            f"checkpoint_every = {run.spec.checkpoint_every}: method {run.spec.method.name!r} "
            f"has no state_dict()/load_state_dict() (paralab.OptimizerMethod has both), so a "
            f"checkpoint could not hold its optimizer; set checkpoint_every = 0"
        )


def addition_program(digits_per_number: int) -> str:
    """The program text for N-digit addition (N = ``digits_per_number``)."""
    n = digits_per_number
    domain = ", ".join(str(d) for d in range(10))
    xs = ", ".join(f"X{i}" for i in range(n))
    body = ", ".join(f"digit(X{i}, D{i})" for i in range(n))
    value = " + ".join(f"{10 ** (n - 1 - i)}*D{i}" if n - 1 - i else f"D{i}" for i in range(n))
    a = ", ".join(f"A{i}" for i in range(n))
    b = ", ".join(f"B{i}" for i in range(n))
    return (
        f"nn({NETWORK}, [X], Y, [{domain}]) :: digit(X, Y).\n"
        f"number({xs}, V) :- {body}, V is {value}.\n"
        f"addition({a}, {b}, Z) :- number({a}, X), number({b}, Y), Z is X + Y.\n"
    )


def addition_query(
    digits_per_number: int, exact_budget: int = 10_000_000
) -> tuple[Query, list[str]]:
    """The grounded query and the input names ``a0..a{N-1}, b0..b{N-1}`` in example order."""
    if not 1 <= digits_per_number <= MAX_DIGITS:
        raise ValueError(
            f"addition: digits_per_number must be 1..{MAX_DIGITS}, got {digits_per_number}"
        )
    n = digits_per_number
    names = [f"a{i}" for i in range(n)] + [f"b{i}" for i in range(n)]
    program = Program.parse(addition_program(n))
    query = Query(program, f"addition({', '.join(names)}, Z)", exact_budget=exact_budget)
    return query, names


def make_examples(
    indices: torch.Tensor,
    labels: torch.Tensor,
    count: int,
    digits_per_number: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(count, 2N)`` dataset indices and their sums.

    Each pass is a random permutation of ``indices`` cut into groups of ``2N`` (every image
    used once, as DeepProbLog does); more examples than one pass holds take further passes,
    which recombine the same images into new numbers. ``count=0`` means one pass.
    """
    width = 2 * digits_per_number
    per_pass = len(indices) // width
    if per_pass == 0:
        raise ValueError(
            f"addition: {len(indices)} images cannot make one example of {width} digits"
        )
    count = count or per_pass
    groups = []
    while sum(len(g) for g in groups) < count:
        order = torch.randperm(len(indices), generator=generator)
        groups.append(indices.cpu()[order[: per_pass * width]].reshape(per_pass, width))
    examples = torch.cat(groups)[:count].to(indices.device)
    digits = labels[examples]
    place = 10 ** torch.arange(digits_per_number - 1, -1, -1, device=digits.device)
    numbers = (digits.reshape(count, 2, digits_per_number) * place).sum(-1)
    return examples, numbers.sum(-1)


def sum_distribution(
    query: Query,
    names: Sequence[str],
    logits: torch.Tensor,
    keys: Sequence[str] | None = None,
    **options: Any,
) -> torch.Tensor:
    """P(sum) for a batch: ``logits`` is ``(batch, 2N, 10)``, one row of digit logits per image
    (``keys``: the neural variables of the images, ``digit(name)`` unless given)."""
    probs = torch.softmax(logits, dim=-1)
    keys = keys or [f"digit({name})" for name in names]
    tables = {key: probs[:, position] for position, key in enumerate(keys)}
    return query.distribution(tables, **options).probs


def sum_probability(
    query: Query,
    names: Sequence[str],
    logits: torch.Tensor,
    sums: torch.Tensor,
    keys: Sequence[str] | None = None,
    **options: Any,
) -> torch.Tensor:
    """P(observed sum) for a batch (top-k: the k best proofs of that sum)."""
    probs = torch.softmax(logits, dim=-1)
    keys = keys or [f"digit({name})" for name in names]
    tables = {key: probs[:, position] for position, key in enumerate(keys)}
    return query.probability(tables, sums, **options)


@dataclass(frozen=True)
class SumObjective:
    """The task loss of one batch of addition examples, ``-mean log P(observed sum)``: what the
    protocol hands the method as ``objective`` (:meth:`paralab.GradientMethod.step`).

    The batch's rows are the examples' images, ``2N`` per example in order, and its logits
    score digits. The digit labels are never used in training, so the batch's targets are the
    network's own guesses: the objective sets ``batch.targets`` to the argmax of each image's
    logits before anything else reads them (``paralab.OptimizerMethod.loss`` computes the
    objective first, then the spec's loss terms, which therefore see those guesses)."""

    query: Query
    names: Sequence[str]
    sums: torch.Tensor
    options: Mapping[str, Any]
    keys: Sequence[str] | None = None

    def __call__(self, batch: Batch) -> torch.Tensor:
        logits = batch.logits
        batch.targets = logits.detach().argmax(dim=-1)
        logits = logits.reshape(len(self.sums), len(self.names), -1)
        if self.query.support_size() > self.query.exact_budget:
            # many digits (N > 4): top-k in log space, where the mass of a 30-digit sum
            # (1e-15 at uniform digits, far less for a confident wrong network) does not
            # vanish under a clamp
            probs = torch.softmax(logits, dim=-1)
            keys = self.keys or [f"digit({name})" for name in self.names]
            tables = {key: probs[:, position] for position, key in enumerate(keys)}
            log_p = self.query.log_probability(tables, self.sums, **self.options)
            return -log_p.clamp_min(-1e4).mean()
        likelihood = sum_probability(self.query, self.names, logits, self.sums, self.keys,
                                     **self.options)
        return -likelihood.clamp_min(1e-12).log().mean()


class Addition(Protocol):
    protocol_name = "addition"
    accuracy_metric = "sum_accuracy"
    """The ``addition`` protocol: epochs over sum-labelled examples; evaluation of the sum
    accuracy on test examples and of the digit accuracy on the single-digit test split.

    Options are declared (and range-checked) in the plugin's ``ProtocolSpec``; what depends
    on the data or on several options together is checked by :meth:`validate`."""

    def __init__(
        self,
        digits_per_number: int = 1,
        pairs: int = 0,
        test_pairs: int = 0,
        epochs: int = 1,
        batch_size: int = 32,
        inference: str = "exact",
        top_k: int = 64,
        samples: int = 1000,
        exact_budget: int = 10_000_000,
        train_split: str = "train",
        eval_splits: Sequence[str] = ("test",),
    ) -> None:
        self.query, self.names = addition_query(digits_per_number, exact_budget)
        self.keys: list[str] | None = None  # the neural variables per input; digit(name)
        self.n = digits_per_number
        self.pairs, self.test_pairs = pairs, test_pairs
        self.epochs, self.batch_size = epochs, batch_size
        self.options = {"mode": inference, "k": top_k, "samples": samples}
        self.train_split = train_split
        self.eval_splits = tuple(eval_splits)
        self._restored: dict[str, Any] | None = None
        self._live: dict[str, Any] = {}

    def checkpoint_state(self, run: RunContext) -> dict[str, Any]:
        """After the epochs closed so far: the model, the method's optimizer, and the
        examples drawn before the first epoch (from ``run.generator``, whose saved state is
        past them), so that a resumed run trains and tests on the same sums."""
        return {"epochs_done": self._live["epochs_done"], "model": run.model.state_dict(),
                "method": run.method.state_dict(), "train": self._live["train"],
                "tests": self._live["tests"]}

    def restore_state(self, run: RunContext, state: dict[str, Any]) -> None:
        self._restored = state

    def validate(self, run: RunContext) -> None:
        """A 10-class digit dataset, splits that exist and hold one example each, and exact
        inference within ``exact_budget`` (unless ``inference`` is approximate or auto)."""
        require_checkpointable(run)
        dataset = run.dataset
        classes = len(self.query.neural_variables[0].domain)
        if dataset.info.n_classes != classes:
            raise ValueError(
                f"the {self.protocol_name} protocol needs a {classes}-class digit dataset "
                f"(digits, mnist): its neural predicate reads {classes} values, but dataset "
                f"{dataset.name!r} has {dataset.info.n_classes} classes"
            )
        width = len(self.names)
        for option, split in dataset.check_splits(self.train_split, self.eval_splits):
            size = len(dataset.splits[split])
            if size < width:
                raise ValueError(
                    f"{option} = {split!r} has {size} images, fewer than the {width} that one "
                    f"example needs ({self.example_text()})"
                )
        mode = self.options["mode"]
        try:
            strategy = self.query.strategy(mode)
        except InferenceBudgetError as error:
            raise ValueError(
                f"inference = {mode!r}, digits_per_number = {self.n}: {error} (the mode is "
                f"this protocol's `inference` option)"
            ) from None
        size = self.query.support_size()
        if strategy in ("sample", "sdd", "enumerate") and size > self.query.exact_budget:
            raise ValueError(
                f"inference = {mode!r}, digits_per_number = {self.n}: the sum can take "
                f"{size:,} values (> exact_budget {self.query.exact_budget:,}), which "
                f"{strategy!r} inference needs as a distribution; use inference = 'topk' "
                "(top-k proofs of the observed sum) or 'auto'"
            )

    def example_text(self) -> str:
        return f"two {self.n}-digit numbers, digits_per_number = {self.n}"

    def make_examples(self, indices: torch.Tensor, labels: torch.Tensor, count: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(count, inputs)`` image indices and each example's observed output (the sum)."""
        return make_examples(indices, labels, count, self.n, generator)

    def execute(self, run: RunContext) -> None:
        method: GradientMethod = run.method
        model, dataset = run.model, run.dataset
        train = dataset.split(self.train_split)
        restored, self._restored = self._restored, None
        if restored is None:
            train_examples, train_sums = self.make_examples(
                train.indices, dataset.y, self.pairs, run.generator
            )
            tests = {}
            for split in self.eval_splits:
                view = dataset.split(split)
                tests[split] = self.make_examples(view.indices, dataset.y, self.test_pairs,
                                                  run.generator)
        else:  # paralab resume: the examples the interrupted run drew
            device = train.indices.device
            train_examples, train_sums = (t.to(device) for t in restored["train"])
            tests = {split: tuple(t.to(device) for t in pair)
                     for split, pair in restored["tests"].items()}
        start = 0 if restored is None else int(restored["epochs_done"])
        self._live = {"epochs_done": start, "train": (train_examples, train_sums),
                      "tests": tests}
        run.state["paralab_neurosymbolic"] = {
            "examples": len(train_examples), "strategy": self.query.strategy(self.options["mode"]),
        }
        model.train()
        method.setup(run, model)
        if restored is not None:
            model.load_state_dict(restored["model"])
            method.load_state_dict(restored["method"])
        epochs = range(start, self.epochs)
        for epoch in run.progress(epochs, desc="epochs", total=self.epochs, done=start):
            with run.phase("epoch", epoch, examples=len(train_examples)) as phase:
                order = torch.randperm(len(train_examples), generator=run.generator)
                total, batches = 0.0, 0
                started = time.perf_counter()
                for start in range(0, len(order), self.batch_size):
                    chosen = order[start : start + self.batch_size].to(train_examples.device)
                    total += self.step(run, method, train_examples[chosen], train_sums[chosen])
                    batches += 1
                phase.metrics["train/loss"] = total / max(batches, 1)
                phase.metrics["train/seconds"] = time.perf_counter() - started
                self.evaluate(run, tests)
                self._live["epochs_done"] = epoch + 1
        model.train()

    def step(self, run: RunContext, method: GradientMethod, examples: torch.Tensor,
             sums: torch.Tensor) -> float:
        """One method step on a batch of examples: their images are the rows, their sums the
        objective's; the targets are unknown (-1) until :class:`SumObjective` fills in the
        network's guesses. Returns the step's loss."""
        images = examples.reshape(-1)
        unknown = torch.full_like(images, -1)
        objective = SumObjective(self.query, self.names, sums, self.options, self.keys)
        return method.step(run, run.model, run.dataset.x[images], unknown, images,
                           objective=objective)

    @torch.no_grad()
    def sum_accuracy(
        self, model: torch.nn.Module, x: torch.Tensor, examples: torch.Tensor, sums: torch.Tensor,
        batch_size: int = 1000,
    ) -> float:
        """Fraction of examples whose most probable sum is the true sum."""
        correct = 0
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            logits = model(x[chunk.reshape(-1)]).reshape(len(chunk), len(self.names), -1)
            predicted = self.predict(logits)
            correct += int((predicted == sums[start : start + batch_size].to(predicted.device))
                           .sum())
        return correct / max(len(examples), 1)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """The predicted sum per example: the most probable value of P(sum) when the
        support fits ``exact_budget``; else (N > 4) the sum of the two numbers read from
        each image's most probable digit, the most probable world, which is the top-1 proof
        that top-k decoding returns (a distribution over 2e15 sums cannot be held)."""
        if self.query.support_size() <= self.query.exact_budget:
            p = sum_distribution(self.query, self.names, logits, self.keys, **self.options)
            values = torch.tensor([float(v) for v in self.query.values], device=p.device)
            return values[p.argmax(dim=1)]
        # int64: float64 holds integers exactly only up to 2**53 (9e15; two 15-digit sums
        # reach 2e15, so exact here, but int64 needs no such argument)
        digits = logits.argmax(dim=-1).reshape(len(logits), 2, self.n)
        place = 10 ** torch.arange(self.n - 1, -1, -1, device=digits.device)
        return (digits * place).sum(-1).sum(-1)

    def evaluate(self, run: RunContext, tests: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        model = run.model
        model.eval()
        for split, (examples, sums) in tests.items():
            started = time.perf_counter()
            accuracy = self.sum_accuracy(model, run.dataset.x, examples, sums)
            run.record(f"{split}/sum_seconds", time.perf_counter() - started)
            run.record(f"{split}/{self.accuracy_metric}", accuracy)
            run.evaluate(split)  # digit accuracy that emerged, on single digits
        model.train()
