"""Path finding on grids of digit images (issue 19, item 5, the image form of the grid task):
the compiled reachability program's batched evaluation equals ProbLog 2.3 (which computes
the reference here) and a breadth-first search; the network learns walls from connectivity
labels alone."""

from __future__ import annotations

import pytest
import torch

import paralab
from paralab_neurosymbolic import gridpath

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


@pytest.mark.parametrize("size", [2, 3])
def test_batched_reachability_equals_problog_and_search(size: int) -> None:
    from problog import get_evaluatable
    from problog.program import PrologString

    solver = gridpath.GridSolver(size)
    generator = torch.Generator().manual_seed(size)
    width = len(gridpath.cells(size))
    p_open = (torch.rand(5, width, generator=generator, dtype=torch.float64) * 1e6).round() / 1e6
    ours = solver.probability(p_open)
    text = gridpath.grid_program(size)
    for row in range(5):
        edited = text
        for name, p in zip(solver.names, p_open[row].tolist()):
            edited = edited.replace(f"0.5::{name}.", f"{p}::{name}.")
        reference = get_evaluatable().create_from(PrologString(edited)).evaluate()
        assert float(ours[row]) == pytest.approx(float(next(iter(reference.values()))), abs=1e-9)
    # at 0/1 probabilities the program is the breadth-first search of the labeller
    worlds = torch.cartesian_prod(*[torch.tensor([0.0, 1.0], dtype=torch.float64)] * width)
    worlds = worlds.reshape(-1, width)
    torch.testing.assert_close(solver.probability(worlds),
                               gridpath.connected(worlds > 0.5, size).double())


def test_walls_are_learnt_from_connectivity_alone() -> None:
    """3x3 grids of embedded digits, 600 grids, 10 epochs: the open/wall reading emerges
    (measured cell accuracy 0.967, path accuracy 0.955; chance about 0.5). The digits
    themselves are not taught (only digit >= 5 or not)."""
    spec = {"name": "grid", "dataset": "digits", "model": {"name": "mlp", "hidden": [64]},
            "protocol": {"name": "grid_path", "size": 3, "examples": 600, "epochs": 10},
            "method": {"name": "adam", "lr": 0.003}, "output": None, "device": "cpu"}
    result = paralab.run(spec)
    assert result.status == "completed"
    assert result.metrics["test/cell_accuracy"] > 0.85
    assert result.metrics["test/path_accuracy"] > 0.8


def test_a_non_digit_dataset_is_a_spec_error() -> None:
    with pytest.raises(paralab.SpecError, match="grid_path protocol needs a 10-class digit"):
        paralab.run({"name": "grid", "dataset": "iris", "model": {"name": "mlp"},
                     "protocol": {"name": "grid_path"}, "output": None})
