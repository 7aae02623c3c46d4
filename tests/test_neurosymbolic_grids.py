"""Path finding on small grids (the shape of Scallop's Pathfinder task, without images): cells
open with a probability each, moves between 4-neighbouring open cells, so the path relation
is recursive over a cyclic graph. The general engine (tabled grounding, SDD compilation) is
held to ProbLog 2.3 on the same program, and its batched, differentiable evaluation to
ProbLog re-run once per assignment."""

from __future__ import annotations

import pytest
import torch

from paralab_neurosymbolic.logic import Program, Solver


def grid_program(size: int, seed: int) -> tuple[str, list[str]]:
    """The program and its cells' fact names; start (0, 0) and goal opposite, both open."""
    generator = torch.Generator().manual_seed(seed)
    lines, names = [], []
    for row in range(size):
        for column in range(size):
            name = f"open(c{row}_{column})"
            corner = (row, column) in ((0, 0), (size - 1, size - 1))
            p = 1.0 if corner else round(0.2 + 0.7 * float(torch.rand(1, generator=generator)), 3)
            lines.append(f"{p}::{name}." if not corner else f"{name}.")
            if not corner:
                names.append(name)
            for d_row, d_column in ((0, 1), (1, 0)):
                r, c = row + d_row, column + d_column
                if r < size and c < size:
                    lines.append(f"adj(c{row}_{column}, c{r}_{c}). adj(c{r}_{c}, c{row}_{column}).")
    goal = f"c{size - 1}_{size - 1}"
    lines += [
        "move(X, Y) :- adj(X, Y), open(X), open(Y).",
        "path(X, Y) :- move(X, Y).",
        "path(X, Y) :- move(X, Z), path(Z, Y).",
        f"query(path(c0_0, {goal})).",
        "query(path(c0_0, c1_1)).",
    ]
    return "\n".join(lines), names


def problog_probabilities(text: str) -> dict[str, float]:
    problog = pytest.importorskip("problog")
    from problog.program import PrologString

    result = problog.get_evaluatable("sdd").create_from(PrologString(text)).evaluate()
    return {str(query).replace(" ", ""): float(p) for query, p in result.items()}


@pytest.mark.parametrize(("size", "seed"), [(2, 0), (3, 1), (3, 2)])
def test_grid_reachability_equals_problog(size: int, seed: int) -> None:
    text, _ = grid_program(size, seed)
    reference = problog_probabilities(text)
    solver = Solver(Program.parse(text), compiler="sdd")
    ours = {str(query).replace(" ", ""): float(p)
            for query, p in zip(solver.queries, solver.evaluate({}))}
    assert set(ours) == set(reference)
    for query, p in reference.items():
        assert ours[query] == pytest.approx(p, abs=1e-9), query
    assert 0.0 < reference[f"path(c0_0,c{size - 1}_{size - 1})"] < 1.0  # not a trivial grid


def test_grid_batched_evaluation_and_gradient() -> None:
    # 8 assignments of one cell's probability, evaluated in one pass, equal ProbLog re-run on
    # the program with that probability written in; the gradient is the finite difference
    text, names = grid_program(3, 1)
    cell = "open(c1_1)"
    solver = Solver(Program.parse(text), compiler="sdd")
    p = torch.linspace(0.05, 0.95, 8, dtype=torch.float64, requires_grad=True)
    goal = next(i for i, q in enumerate(solver.queries) if "c2_2" in str(q))
    reach = solver.evaluate({}, facts={cell: p})[goal]
    for value, ours in zip(p.tolist(), reach.tolist()):
        edited = "\n".join(f"{value}::{cell}." if line.endswith(f"::{cell}.") else line
                           for line in text.splitlines())
        assert ours == pytest.approx(problog_probabilities(edited)["path(c0_0,c2_2)"], abs=1e-9)
    reach.sum().backward()
    assert p.grad is not None
    # P is linear in one fact's probability: the gradient is P(p = 1) - P(p = 0)
    ends = solver.evaluate({}, facts={cell: torch.tensor([0.0, 1.0], dtype=torch.float64)})[goal]
    torch.testing.assert_close(p.grad, (ends[1] - ends[0]).expand(8))
    assert float(p.grad[0]) > 0  # an open centre cell helps reach the corner
    assert cell in names
