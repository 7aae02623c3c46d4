"""DeepProbLog (pip ``deepproblog``), driven from tensors: the reference our engine is held to.

Used by the parity tests (our exact probabilities equal DeepProbLog's ExactEngine on the same
program and the same neural outputs) and by ``benchmarks/neurosymbolic.py`` (the same network
trained one epoch by each). DeepProbLog's own MNIST example downloads MNIST when imported, so
its dataset is rebuilt here from the shared tensors: a tensor source that returns image ``i``
and queries ``addition(tensor(train(i)), tensor(train(j)), sum)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

ADDITION = """
nn(mnist_net, [X], Y, [0,1,2,3,4,5,6,7,8,9]) :: digit(X, Y).
addition(X, Y, Z) :- digit(X, X2), digit(Y, Y2), Z is X2 + Y2.
"""


def _imports() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "ApproximateEngine is not available as PySwip ..."
        import deepproblog.dataset
        import deepproblog.engines
        import deepproblog.model
        import deepproblog.network
        import deepproblog.query
        import deepproblog.train
    return deepproblog


class TensorSource:
    """What DeepProbLog's ``add_tensor_source`` expects: ``source[(i,)]`` is example ``i``."""

    def __init__(self, tensors: torch.Tensor) -> None:
        self.tensors = tensors

    def __getitem__(self, item: Sequence[Any]) -> torch.Tensor:
        return self.tensors[int(item[0])]


def addition_dataset(source: str, examples: torch.Tensor, sums: torch.Tensor) -> Any:
    """A DeepProbLog ``Dataset`` of single-digit addition queries over ``source`` images."""
    dpl = _imports()
    from problog.logic import Constant, Term

    class Addition(dpl.dataset.Dataset):
        def __len__(self) -> int:
            return len(examples)

        def to_query(self, i: int) -> Any:
            # DeepProbLog's own MNIST example form: placeholders p0, p1 substituted by the
            # tensors, so every query of a sum shares one cached circuit (with the tensors
            # inside the query each one is ground and compiled anew: ~3x slower).
            a, b = (int(v) for v in examples[i])
            first, second = Term("p0"), Term("p1")
            return dpl.query.Query(
                Term("addition", first, second, Constant(int(sums[i]))),
                {first: Term("tensor", Term(source, Constant(a))),
                 second: Term("tensor", Term(source, Constant(b)))},
            )

    return Addition()


def addition_model(network: torch.nn.Module, images: torch.Tensor, lr: float = 1e-3) -> Any:
    """A DeepProbLog model of single-digit addition with ``network`` (logits -> softmax added)
    as ``mnist_net``, exact inference with caching, images under tensor source ``train``."""
    dpl = _imports()
    module = torch.nn.Sequential(network, torch.nn.Softmax(dim=-1))
    net = dpl.network.Network(module, "mnist_net", batching=True)
    net.optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    model = dpl.model.Model(ADDITION, [net], load=False)
    model.set_engine(dpl.engines.ExactEngine(model), cache=True)
    model.add_tensor_source("train", TensorSource(images))
    return model


def train_epoch(model: Any, dataset: Any, batch_size: int = 2) -> None:
    """One epoch of DeepProbLog's own training loop (its NLL of the query probability)."""
    dpl = _imports()
    loader = dpl.dataset.DataLoader(dataset, batch_size, False)
    dpl.train.train_model(model, loader, 1, log_iter=10**9, profile=0, verbose=0)


def sum_accuracy(model: Any, dataset: Any) -> float:
    """DeepProbLog's own evaluation (``get_confusion_matrix``): most probable sum correct."""
    _imports()
    from deepproblog.evaluate import get_confusion_matrix

    return float(get_confusion_matrix(model, dataset, verbose=0).accuracy())


def query_probabilities(tables: torch.Tensor, queries: Sequence[tuple[int, int, int]]) -> list[float]:
    """P(addition(a, b, s)) by DeepProbLog's ExactEngine when ``digit(i)`` has the
    distribution ``tables[i]``: the parity reference for our engine."""

    class Table(torch.nn.Module):
        def forward(self, index: torch.Tensor) -> torch.Tensor:
            return tables[index.long()]

    dpl = _imports()
    from problog.logic import Constant, Term

    net = dpl.network.Network(Table(), "mnist_net", batching=True)
    model = dpl.model.Model(ADDITION, [net], load=False)
    model.set_engine(dpl.engines.ExactEngine(model), cache=False)
    model.add_tensor_source("t", TensorSource(torch.arange(len(tables))))
    model.eval()
    batch = [
        dpl.query.Query(
            Term("addition", Term("tensor", Term("t", Constant(a))),
                 Term("tensor", Term("t", Constant(b))), Constant(s))
        )
        for a, b, s in queries
    ]
    results = model.solve(batch)
    values = []
    for result in results:
        values.append(float(next(iter(result.result.values()))) if result.result else 0.0)
    return values
