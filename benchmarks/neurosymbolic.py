"""Benchmark: paralab_neurosymbolic against DeepProbLog 2.1 on single-digit MNIST addition.

The same work on both sides, in the same process, 2 torch threads:

* data: the MNIST test split under $PARALAB_DATA/mnist (the only MNIST split stored here),
  divided by paralab's loader into 8,000 train and 2,000 test images; 1,000 training pairs
  and ``--test-pairs`` test pairs of distinct images, the same pairs for both sides
  (the embedded 8x8 digits when PARALAB_DATA is unset);
* network: DeepProbLog's own ``MNIST_Net`` (LeNet) from its MNIST example, the same initial
  weights for both sides (DeepProbLog wraps it in a softmax, paralab reads its logits);
* training: one epoch, Adam (lr 1e-3), batch size 2 as in DeepProbLog's example, NLL of the
  probability of the observed sum, exact inference on both sides (DeepProbLog's ExactEngine
  with its circuit cache);
* evaluation: the most probable sum of each test pair (DeepProbLog: its
  ``get_confusion_matrix``; paralab: the exact sum distribution), and the digit accuracy the
  network reached on the single test digits.

paralab is also timed at batch size 32 (its natural setting) as a second comparison.
Prints a readable summary, then one JSON object as the last line.

    python benchmarks/neurosymbolic.py [--pairs 1000] [--test-pairs 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import time
import warnings
from typing import Any

import torch


def _network(seed: int) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from deepproblog.examples.MNIST.network import MNIST_Net
    torch.manual_seed(seed)
    return MNIST_Net(with_softmax=False)


def _data() -> Any:
    from paralab.data import load_dataset

    if os.environ.get("PARALAB_DATA"):
        return load_dataset("mnist")
    return load_dataset("digits")


def _paralab(dataset_name: str, network: torch.nn.Module, pairs: int, test_pairs: int,
             batch_size: int) -> dict[str, float]:
    """One epoch through ``paralab.run`` with ``network`` as the spec's model."""
    import paralab
    from paralab.components import ModelSpec
    from paralab.hookspecs import hookimpl
    from paralab.testing import isolated_registry

    class BenchmarkModel:
        PARALAB_API = "1.0"

        @hookimpl
        def paralab_models(self) -> list[ModelSpec]:
            return [ModelSpec("deepproblog_mnist_net", lambda info: network,
                              "DeepProbLog's MNIST_Net, shared with the peer")]

    registry = isolated_registry(("benchmark", BenchmarkModel()), discover=True)
    started = time.perf_counter()
    result = paralab.run(
        {
            "name": "bench-addition",
            "dataset": dataset_name,
            "model": "deepproblog_mnist_net",
            "protocol": {"name": "addition", "pairs": pairs, "test_pairs": test_pairs,
                         "epochs": 1, "batch_size": batch_size},
            "method": {"name": "adam", "lr": 1e-3},
            "output": None,
            "device": "cpu",
        },
        registry=registry,
    )
    total = time.perf_counter() - started
    metrics = result.phases[0]["metrics"]
    return {
        "train_seconds": metrics["train/seconds"],
        "eval_seconds": metrics["test/sum_seconds"],
        "sum_accuracy": result.metrics["test/sum_accuracy"],
        "digit_accuracy": result.metrics["test/accuracy"],
        "run_seconds": total,
    }


def _deepproblog(dataset: Any, network: torch.nn.Module, pairs: int, test_pairs: int,
                 seed: int) -> dict[str, float]:
    from paralab_neurosymbolic import peers

    # paralab's run draws its train pairs, then its test pairs, from run.generator (seed 0).
    generator = torch.Generator().manual_seed(seed)
    from paralab_neurosymbolic.addition import make_examples

    train, train_sums = make_examples(dataset.splits["train"], dataset.y, pairs, 1, generator)
    test, test_sums = make_examples(dataset.splits["test"], dataset.y, test_pairs, 1, generator)
    model = peers.addition_model(network, dataset.x, lr=1e-3)
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        peers.train_epoch(model, peers.addition_dataset("train", train, train_sums), 2)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        accuracy = peers.sum_accuracy(model, peers.addition_dataset("train", test, test_sums))
        eval_seconds = time.perf_counter() - started
    with torch.no_grad():
        network.eval()
        index = dataset.splits["test"]
        digits = float((network(dataset.x[index]).argmax(1) == dataset.y[index]).float().mean())
    return {"train_seconds": train_seconds, "eval_seconds": eval_seconds,
            "sum_accuracy": accuracy, "digit_accuracy": digits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--test-pairs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads (2, the team's setting; 1 on an oversubscribed machine)")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    dataset = _data()
    initial = _network(arguments.seed).state_dict()

    def fresh() -> torch.nn.Module:
        network = _network(arguments.seed)
        network.load_state_dict(initial)
        return network

    _paralab(dataset.name, fresh(), 16, 8, 2)  # warm-up: torch's first-call costs, not timed
    ours = _paralab(dataset.name, fresh(), arguments.pairs, arguments.test_pairs, 2)
    batched = _paralab(dataset.name, fresh(), arguments.pairs, arguments.test_pairs, 32)
    peer = _deepproblog(dataset, fresh(), arguments.pairs, arguments.test_pairs, arguments.seed)
    report = {
        "benchmark": "neurosymbolic single-digit addition, 1 epoch",
        "dataset": dataset.name,
        "train_pairs": arguments.pairs,
        "test_pairs": arguments.test_pairs,
        "threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "deepproblog_train_seconds": round(peer["train_seconds"], 3),
        "paralab_train_seconds": round(ours["train_seconds"], 3),
        "train_speedup": round(peer["train_seconds"] / ours["train_seconds"], 1),
        "paralab_batch32_train_seconds": round(batched["train_seconds"], 3),
        "train_speedup_batch32": round(peer["train_seconds"] / batched["train_seconds"], 1),
        "deepproblog_eval_seconds": round(peer["eval_seconds"], 3),
        "paralab_eval_seconds": round(ours["eval_seconds"], 4),
        "eval_speedup": round(peer["eval_seconds"] / ours["eval_seconds"], 1),
        "deepproblog_sum_accuracy": round(peer["sum_accuracy"], 4),
        "paralab_sum_accuracy": round(ours["sum_accuracy"], 4),
        "paralab_batch32_sum_accuracy": round(batched["sum_accuracy"], 4),
        "deepproblog_digit_accuracy": round(peer["digit_accuracy"], 4),
        "paralab_digit_accuracy": round(ours["digit_accuracy"], 4),
        "paralab_batch32_digit_accuracy": round(batched["digit_accuracy"], 4),
    }
    print(f"single-digit addition on {dataset.name}: {arguments.pairs} training pairs, "
          f"{arguments.test_pairs} test pairs, 1 epoch, {report['threads']} threads")
    print(f"  train  DeepProbLog {peer['train_seconds']:8.2f} s   paralab {ours['train_seconds']:7.3f} s"
          f"   x{report['train_speedup']}  (paralab batch 32: {batched['train_seconds']:.3f} s)")
    print(f"  eval   DeepProbLog {peer['eval_seconds']:8.2f} s   paralab {ours['eval_seconds']:7.4f} s"
          f"   x{report['eval_speedup']}")
    print(f"  sum accuracy   DeepProbLog {peer['sum_accuracy']:.3f}   paralab {ours['sum_accuracy']:.3f}")
    print(f"  digit accuracy DeepProbLog {peer['digit_accuracy']:.3f}   paralab {ours['digit_accuracy']:.3f}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
