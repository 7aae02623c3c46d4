"""Path finding on grids of digit images (the shape of Scallop's Pathfinder and of the
visual grid tasks): every inner cell of a ``size x size`` grid is a digit image, a cell is open
when its digit is at least 5 (a wall below), and an example's label is whether the opposite
corners are connected through 4-neighbouring open cells. The network only ever sees that bit.

The program is the recursive reachability of ``tests/test_neurosymbolic_grids.py`` with the
cells' ``open`` facts read from the network: ``P(open(c)) = sum_{d >= 5} P(digit(c) = d)``.
It is compiled once (the general engine, SDD) for the grid's shape and evaluated batched,
differentiably, on every example's cell probabilities, so training is exact likelihood.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from paralab import Protocol

OPEN_FROM = 5
"""A cell is open when its digit is >= 5."""


def cells(size: int) -> list[tuple[int, int]]:
    """The inner cells (all but the two corners, which are always open), row-major."""
    return [(r, c) for r in range(size) for c in range(size)
            if (r, c) not in ((0, 0), (size - 1, size - 1))]


def grid_program(size: int) -> str:
    """Reachability between the corners; each inner cell an ``open`` fact (probability 0.5
    here, replaced by the network's at evaluation)."""
    lines = ["open(c0_0).", f"open(c{size - 1}_{size - 1})."]
    lines += [f"0.5::open(c{r}_{c})." for r, c in cells(size)]
    for row in range(size):
        for column in range(size):
            for d_row, d_column in ((0, 1), (1, 0)):
                r, c = row + d_row, column + d_column
                if r < size and c < size:
                    lines.append(f"adj(c{row}_{column}, c{r}_{c}). adj(c{r}_{c}, c{row}_{column}).")
    lines += [
        "move(X, Y) :- adj(X, Y), open(X), open(Y).",
        "path(X, Y) :- move(X, Y).",
        "path(X, Y) :- move(X, Z), path(Z, Y).",
        f"query(path(c0_0, c{size - 1}_{size - 1})).",
    ]
    return "\n".join(lines) + "\n"


def connected(open_cells: torch.Tensor, size: int) -> torch.Tensor:
    """``(batch,)`` bool: the corners connected, by breadth-first search; ``open_cells`` is
    ``(batch, len(cells(size)))`` bool (the symbolic labeller, independent of the program)."""
    inner = cells(size)
    result = []
    for row in open_cells.tolist():
        free = {(0, 0), (size - 1, size - 1)} | {cell for cell, o in zip(inner, row) if o}
        seen, frontier = {(0, 0)}, [(0, 0)]
        while frontier:
            r, c = frontier.pop()
            for nxt in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if nxt in free and nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        result.append((size - 1, size - 1) in seen)
    return torch.tensor(result)


class GridSolver:
    """The compiled program of one grid size: ``probability(p_open)`` maps ``(batch, cells)``
    open probabilities to P(path) per example, differentiably."""

    def __init__(self, size: int) -> None:
        from paralab_neurosymbolic.logic import Program, Solver

        self.size = size
        self.names = [f"open(c{r}_{c})" for r, c in cells(size)]
        self.solver = Solver(Program.parse(grid_program(size)), compiler="sdd")

    def probability(self, p_open: torch.Tensor) -> torch.Tensor:
        facts = {name: p_open[:, i] for i, name in enumerate(self.names)}
        return self.solver.evaluate({}, facts=facts)[0]


def open_probability(logits: torch.Tensor) -> torch.Tensor:
    """P(digit >= 5) per image from its digit logits."""
    return torch.softmax(logits, dim=-1)[..., OPEN_FROM:].sum(-1)


@dataclass(frozen=True)
class PathObjective:
    """``-mean log P(label)`` of a batch of grids (the protocol's objective; the images'
    targets become the network's own guesses, as in MNIST addition)."""

    solver: GridSolver
    labels: torch.Tensor

    def __call__(self, batch: Any) -> torch.Tensor:
        logits = batch.logits
        batch.targets = logits.detach().argmax(dim=-1)
        p_open = open_probability(logits).reshape(len(self.labels), -1).double()
        p = self.solver.probability(p_open).clamp(1e-9, 1 - 1e-9)
        likelihood = torch.where(self.labels, p, 1 - p)
        return -likelihood.log().mean().float()


class GridPath(Protocol):
    """The ``grid_path`` protocol (see the module docstring): epochs over grids labelled
    connected or not; records ``<split>/path_accuracy`` (P(path) > 0.5 against the truth),
    ``<split>/cell_accuracy`` (each image read open or wall correctly) and the run's metrics
    on single images (``<split>/accuracy``, the digit identity, which the task does not
    teach beyond the open/wall split)."""

    protocol_name = "grid_path"

    def __init__(self, size: int = 3, examples: int = 600, test_examples: int = 200,
                 epochs: int = 5, batch_size: int = 16, train_split: str = "train",
                 eval_splits: Sequence[str] = ("test",)) -> None:
        self.size, self.examples, self.test_examples = size, examples, test_examples
        self.epochs, self.batch_size = epochs, batch_size
        self.train_split, self.eval_splits = train_split, tuple(eval_splits)

    def validate(self, run: Any) -> None:
        """A 10-class digit dataset whose splits hold one grid's images."""
        dataset = run.dataset
        if dataset.info.n_classes != 10:
            raise ValueError(f"the grid_path protocol needs a 10-class digit dataset (digits, "
                             f"mnist); {dataset.name!r} has {dataset.info.n_classes} classes")
        width = len(cells(self.size))
        for option, split in dataset.check_splits(self.train_split, self.eval_splits):
            if len(dataset.splits[split]) < width:
                raise ValueError(f"{option} = {split!r} has fewer than the {width} images of "
                                 f"one {self.size}x{self.size} grid")

    def make_grids(self, indices: torch.Tensor, labels: torch.Tensor, count: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(count, cells)`` image indices (random, with replacement across grids) and
        whether each grid's corners are connected."""
        width = len(cells(self.size))
        chosen = torch.randint(len(indices), (count, width), generator=generator)
        images = indices.cpu()[chosen]
        return images.to(indices.device), connected(labels.cpu()[images] >= OPEN_FROM,
                                                    self.size).to(indices.device)

    def execute(self, run: Any) -> None:
        method, model, dataset = run.method, run.model, run.dataset
        solver = GridSolver(self.size)
        train = dataset.split(self.train_split)
        grids, truth = self.make_grids(train.indices, dataset.y, self.examples, run.generator)
        tests = {split: self.make_grids(dataset.split(split).indices, dataset.y,
                                        self.test_examples, run.generator)
                 for split in self.eval_splits}
        model.train()
        method.setup(run, model)
        for epoch in run.progress(range(self.epochs), desc="epochs", total=self.epochs):
            with run.phase("epoch", epoch, examples=len(grids)) as phase:
                order = torch.randperm(len(grids), generator=run.generator)
                total, steps = 0.0, 0
                for start in range(0, len(order), self.batch_size):
                    chosen = order[start : start + self.batch_size].to(grids.device)
                    images = grids[chosen].reshape(-1)
                    objective = PathObjective(solver, truth[chosen])
                    total += method.step(run, model, dataset.x[images],
                                         torch.full_like(images, -1), images,
                                         objective=objective)
                    steps += 1
                phase.metrics["train/loss"] = total / max(steps, 1)
                self.evaluate(run, solver, tests)
        model.train()

    @torch.no_grad()
    def evaluate(self, run: Any, solver: GridSolver,
                 tests: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        model, dataset = run.model, run.dataset
        model.eval()
        for split, (grids, truth) in tests.items():
            p_open = open_probability(model(dataset.x[grids.reshape(-1)])).reshape(len(grids), -1)
            p = solver.probability(p_open.double())
            run.record(f"{split}/path_accuracy", float(((p > 0.5) == truth).float().mean()))
            view = dataset.split(split)
            images = view.indices
            read = open_probability(model(dataset.x[images])) > 0.5
            run.record(f"{split}/cell_accuracy",
                       float((read == (dataset.y[images] >= OPEN_FROM)).float().mean()))
            run.evaluate(split)
        model.train()
