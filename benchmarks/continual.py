"""Continual learning: paralab's native EWC and replay against Avalanche's EWC and Replay.

The same work on both sides, in the same process: class-incremental split digits (5
experiences) and split MNIST (the 10k official test images in $PARALAB_DATA/mnist, divided
80/20 into train and test), the same MLP (256-256) with the same initial weights, SGD with the
same learning rate, the same epochs, batch size and seeds; train on each experience, then
evaluate on every experience's test view. Wall time covers building the stream and strategy,
training and the evaluations after each experience (the data is in memory beforehand on both
sides). Accuracy is the mean over experiences of the final accuracy on each (both sides).

Replay uses an experience-balanced memory of 200 examples on both sides (Avalanche's default
storage policy). Prints one JSON object as its last line:
``{"<benchmark>/<method>/speedup": avalanche_seconds / paralab_seconds, ...accuracies}``.

    python benchmarks/continual.py [--threads 2] [--seeds 0 1 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from typing import Any

import torch

import paralab
from paralab.data import load_dataset
from paralab.models import mlp

HIDDEN = (256, 256)
LR = 0.05


def paralab_run(dataset: dict[str, Any], method: dict[str, Any], seed: int, epochs: int) -> tuple[float, float]:
    spec = {
        "name": "bench-continual",
        "dataset": dataset,
        "model": {"name": "mlp", "hidden": list(HIDDEN)},
        "protocol": {
            "name": "continual",
            "scenario": "class_incremental",
            "experiences": 5,
            "epochs": epochs,
            "batch_size": 32,
            "shuffle_classes": False,
            "forward_transfer": False,
            "plot": False,
        },
        "method": {**method, "lr": LR},
        "metrics": ["accuracy"],
        "output": None,
        "device": "cpu",
        "seed": seed,
    }
    started = time.perf_counter()
    result = paralab.run(spec)
    return time.perf_counter() - started, float(result.metrics["average_accuracy"])


def avalanche_run(
    shared: paralab.SharedDataset, strategy: str, options: dict[str, Any], seed: int, epochs: int
) -> tuple[float, float]:
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training import EWC, Replay
    from avalanche.training.plugins import EvaluationPlugin

    torch.manual_seed(seed)
    model = mlp(shared.info, hidden=HIDDEN)
    started = time.perf_counter()
    train_rows, test_rows = shared.splits["train"], shared.splits["test"]
    streams: dict[str, list[Any]] = {"train": [], "test": []}
    for position in range(5):
        classes = torch.tensor([2 * position, 2 * position + 1])
        for name, rows in (("train", train_rows), ("test", test_rows)):
            chosen = rows[torch.isin(shared.y[rows], classes)]
            streams[name].append(
                _make_taskaware_tensor_classification_dataset(
                    shared.x[chosen], shared.y[chosen], task_labels=0,
                    targets=shared.y[chosen].tolist(),
                )
            )
    scenario = benchmark_from_datasets(**streams)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluator = EvaluationPlugin(accuracy_metrics(experience=True), loggers=[])
    cls = {"EWC": EWC, "Replay": Replay}[strategy]
    learner = cls(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=LR),
        criterion=torch.nn.CrossEntropyLoss(),
        train_mb_size=32,
        train_epochs=epochs,
        eval_mb_size=4096,
        device="cpu",
        evaluator=evaluator,
        **options,
    )
    values: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for experience in scenario.train_stream:
            learner.train(experience)
            values = learner.eval(scenario.test_stream)
    seconds = time.perf_counter() - started
    final = [v for k, v in sorted(values.items()) if k.startswith("Top1_Acc_Exp/")]
    return seconds, sum(final) / len(final)


def compare(
    label: str,
    dataset_ref: dict[str, Any],
    shared: paralab.SharedDataset,
    seeds: list[int],
    repeats: int,
    epochs: int,
    ewc_lambda: float,
) -> dict[str, float]:
    cases = {
        "ewc": ({"name": "ewc", "ewc_lambda": ewc_lambda}, "EWC", {"ewc_lambda": ewc_lambda}),
        "replay": (
            {"name": "replay", "buffer_size": 200, "policy": "experience_balanced"},
            "Replay",
            {"mem_size": 200},
        ),
    }
    out: dict[str, float] = {}
    for key, (ours, theirs, their_options) in cases.items():
        ours_times, their_times, ours_acc, their_acc = [], [], [], []
        for seed in seeds:
            for _ in range(repeats):
                seconds, acc = paralab_run(dataset_ref, ours, seed, epochs)
                ours_times.append(seconds)
                ours_acc.append(acc)
                seconds, acc = avalanche_run(shared, theirs, their_options, seed, epochs)
                their_times.append(seconds)
                their_acc.append(acc)
        ours_s, theirs_s = statistics.median(ours_times), statistics.median(their_times)
        prefix = f"{label}/{key}"
        out[f"{prefix}/speedup"] = theirs_s / ours_s
        out[f"{prefix}/paralab_seconds"] = ours_s
        out[f"{prefix}/avalanche_seconds"] = theirs_s
        out[f"{prefix}/paralab_accuracy"] = statistics.mean(ours_acc)
        out[f"{prefix}/avalanche_accuracy"] = statistics.mean(their_acc)
        out[f"{prefix}/accuracy_gap"] = statistics.mean(ours_acc) - statistics.mean(their_acc)
        print(
            f"{prefix:<22} paralab {ours_s:7.3f} s acc {statistics.mean(ours_acc):.3f} | "
            f"avalanche {theirs_s:7.3f} s acc {statistics.mean(their_acc):.3f} | "
            f"speedup {theirs_s / ours_s:5.1f}x",
            file=sys.stderr,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--digits-epochs", type=int, default=5)
    parser.add_argument("--mnist-epochs", type=int, default=1)
    parser.add_argument("--ewc-lambda", type=float, default=100.0)
    parser.add_argument("--skip-mnist", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("PARALAB_QUIET", "1")

    results: dict[str, Any] = {"threads": args.threads, "seeds": args.seeds}
    digits = load_dataset("digits")
    # Warm-up: imports and first-call costs on both sides, not measured.
    paralab_run({"name": "digits"}, {"name": "naive"}, 0, 1)
    avalanche_run(digits, "EWC", {"ewc_lambda": 1.0}, 0, 1)
    results.update(
        compare("split_digits", {"name": "digits"}, digits, args.seeds, args.repeats,
                args.digits_epochs, args.ewc_lambda)
    )
    if not args.skip_mnist:
        if os.environ.get("PARALAB_DATA"):
            mnist = load_dataset("mnist")
            results.update(
                compare("split_mnist", {"name": "mnist"}, mnist, args.seeds, args.repeats,
                        args.mnist_epochs, args.ewc_lambda)
            )
        else:
            results["split_mnist"] = "skipped: PARALAB_DATA is not set"
    print(json.dumps(results))


if __name__ == "__main__":
    main()
