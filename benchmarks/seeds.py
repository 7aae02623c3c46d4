"""Many seeds at once: K stacked seeds against K runs one after another, three workloads.

The same work on every side, in the same run, for K seeds:

* ``mlp``: the supervised digits MLP (64-256-256-10, SGD with momentum, batch 32, ``--epochs``
  epochs, evaluation every epoch), K in ``--seeds`` (1, 5, 10, 20);
* ``protonet_omniglot``: a Conv-4 ProtoNet on Omniglot (5-way 1-shot, 3 meta-batches of 2
  episodes, 20 test episodes; needs ``$PARALAB_DATA``), K in ``--fewshot-seeds`` (1, 5, 10);
* ``fedavg``: FedAvg on digits (10 clients, fraction 1, 1 local epoch, batch 16, 10 rounds,
  vmap backend; seeds x clients), K in ``--seeds``.

Sides: ``stacked`` (:func:`paralab.run_seeds`), ``sequential`` (``run_seeds(...,
vectorize=False)``: K ``paralab.run`` calls in one process with ``--threads`` torch threads)
and, for the MLP, ``two_processes`` (the K runs shared by two worker processes of one torch
thread each, started and warmed up before the clock starts: the best a 2-core machine does
without stacking). Per-seed accuracies of the stacked and sequential runs are compared.

Goal: ``mlp/cost_10_seeds_over_1`` (10 stacked seeds' wall time over one seed's run) at most
3.5 on this machine's CPU. Prints one JSON object as its last line, with the load average
before and after (the machine may be shared). Each side, and one seed's ``paralab.run``
beside it, is timed ``--repeats`` times (``--fewshot-repeats`` for the ProtoNet), interleaved,
and the minimum kept; ``cost_K_seeds_over_1`` divides by the one-seed time measured beside
those K.

    python benchmarks/seeds.py [--threads 2] [--epochs 10] [--seeds 1 5 10 20] [--repeats 3]
        [--workloads mlp protonet_omniglot fedavg]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from typing import Any

import torch

import paralab


def mlp_spec(epochs: int, device: str) -> dict[str, Any]:
    return {
        "name": "bench-seeds",
        "dataset": "digits",
        "model": {"name": "mlp", "hidden": [256, 256]},
        "protocol": {"name": "supervised", "epochs": epochs, "batch_size": 32},
        "method": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "metrics": ["accuracy"],
        "output": None,
        "device": device,
    }


def protonet_spec(device: str) -> dict[str, Any]:
    return {
        "name": "bench-seeds-protonet", "dataset": "omniglot", "model": {"name": "conv4"},
        "protocol": {"name": "episodic", "ways": 5, "shots": 1, "queries": 15, "meta_batch": 2,
                     "meta_iterations": 3, "eval_every": 3, "val_episodes": 0,
                     "eval_episodes": 20, "eval_meta_batch": 20},
        "method": {"name": "protonet"}, "output": None, "device": device,
    }


def fedavg_spec(device: str, rounds: int = 10) -> dict[str, Any]:
    return {
        "name": "bench-seeds-fedavg", "dataset": "digits", "model": {"name": "mlp", "hidden": [64]},
        "protocol": {"name": "federated", "clients": 10, "fraction": 1.0, "rounds": rounds,
                     "local_epochs": 1, "batch_size": 16, "backend": "vmap",
                     "client_eval": False},
        "method": {"name": "fedavg", "lr": 0.3}, "metrics": ["accuracy"],
        "output": None, "device": device,
    }


WORKLOADS = ("mlp", "protonet_omniglot", "fedavg")
ACCURACY = {"mlp": "test/accuracy", "protonet_omniglot": "meta_test/accuracy",
            "fedavg": "test/accuracy"}


def shortened(spec: dict[str, Any]) -> dict[str, Any]:
    """The warm-up version of a workload's spec (first-call costs, not measured)."""
    protocol = dict(spec["protocol"])
    for key, value in (("epochs", 1), ("rounds", 1), ("meta_iterations", 1),
                       ("eval_every", 1), ("eval_episodes", 2), ("eval_meta_batch", 2)):
        if key in protocol:
            protocol[key] = value
    return {**spec, "protocol": protocol}


def _worker_init() -> None:
    torch.set_num_threads(1)
    os.environ["PARALAB_QUIET"] = "1"


def _worker_run(job: tuple[dict[str, Any], int]) -> float:
    spec, seed = job
    return float(paralab.run(spec, overrides=[f"seed={seed}"]).metrics["test/accuracy"])


def timed(function: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - started, value


def measure(prefix: str, spec: dict[str, Any], ks: list[int], repeats: int, pool: Any,
            out: dict[str, Any]) -> None:
    """Time one workload's sides for every K; write its fields into ``out``."""
    accuracy = ACCURACY[prefix]
    paralab.run(shortened(spec))
    paralab.run_seeds(shortened(spec), [0, 1])
    for k in ks:
        seeds = list(range(k))
        times: dict[str, list[float]] = {"one": [], "stacked": [], "sequential": [],
                                         "processes": []}
        for _ in range(repeats):  # interleaved: load on the machine hits every side
            times["one"].append(timed(paralab.run, spec)[0])
            seconds, stacked = timed(paralab.run_seeds, spec, seeds)
            times["stacked"].append(seconds)
            seconds, sequential = timed(paralab.run_seeds, spec, seeds, vectorize=False)
            times["sequential"].append(seconds)
            if pool is not None:
                jobs = [(spec, s) for s in seeds]
                seconds, accuracies = timed(pool.map, _worker_run, jobs, chunksize=1)
                times["processes"].append(seconds)
        one = min(times["one"])  # one seed's paralab.run, timed beside the K seeds
        stacked_s, sequential_s = min(times["stacked"]), min(times["sequential"])
        record = stacked[0].provenance["seed_axis"]
        out[f"{prefix}/seconds_1_seed_beside_{k}_seeds"] = one
        out[f"{prefix}/stacked_seconds_{k}_seeds"] = stacked_s
        out[f"{prefix}/sequential_seconds_{k}_seeds"] = sequential_s
        out[f"{prefix}/cost_{k}_seeds_over_1"] = stacked_s / one
        out[f"{prefix}/sequential_cost_{k}_seeds_over_1"] = sequential_s / one
        out[f"{prefix}/speedup_vs_sequential_{k}_seeds"] = sequential_s / stacked_s
        out[f"{prefix}/stacked_{k}_seeds"] = record["stacked"]
        out[f"{prefix}/why_not_{k}_seeds"] = record.get("why_not")
        out[f"{prefix}/peak_memory_per_seed_bytes_{k}_seeds"] = record.get(
            "peak_memory_per_seed_bytes")
        a = [r.metrics[accuracy] for r in stacked]
        b = [r.metrics[accuracy] for r in sequential]
        out[f"{prefix}/accuracy_equal_{k}_seeds"] = a == b
        out[f"{prefix}/max_accuracy_difference_{k}_seeds"] = max(
            abs(x - y) for x, y in zip(a, b))
        out[f"{prefix}/mean_accuracy_{k}_seeds"] = statistics.mean(a)
        line = (f"{prefix} {k:>3} seeds: stacked {stacked_s:7.2f} s ({stacked_s / one:5.2f}x "
                f"one seed) | sequential {sequential_s:7.2f} s ({sequential_s / one:5.2f}x)")
        if pool is not None:
            processes_s = min(times["processes"])
            out[f"{prefix}/two_processes_seconds_{k}_seeds"] = processes_s
            out[f"{prefix}/speedup_vs_two_processes_{k}_seeds"] = processes_s / stacked_s
            out[f"{prefix}/two_processes_accuracy_equal_{k}_seeds"] = accuracies == b
            line += f" | two 1-thread processes {processes_s:7.2f} s"
        print(line + f" | accuracies equal: {a == b}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--fewshot-seeds", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timings per side, interleaved; the minimum is reported")
    parser.add_argument("--fewshot-repeats", type=int, default=1)
    parser.add_argument("--no-processes", action="store_true",
                        help="skip the two-process comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("PARALAB_QUIET", "1")
    out: dict[str, Any] = {"threads": args.threads, "epochs": args.epochs,
                           "device": args.device, "load_average_before": os.getloadavg()}
    if "mlp" in args.workloads:
        spec = mlp_spec(args.epochs, args.device)
        pool = None
        if not args.no_processes:
            pool = multiprocessing.get_context("spawn").Pool(2, initializer=_worker_init)
            pool.map(_worker_run, [(shortened(spec), s) for s in (0, 1)])
        measure("mlp", spec, args.seeds, args.repeats, pool, out)
        if pool is not None:
            pool.close()
            pool.join()
    if "fedavg" in args.workloads:
        measure("fedavg", fedavg_spec(args.device), args.seeds, args.repeats, None, out)
    if "protonet_omniglot" in args.workloads:
        if os.environ.get("PARALAB_DATA"):
            measure("protonet_omniglot", protonet_spec(args.device), args.fewshot_seeds,
                    args.fewshot_repeats, None, out)
        else:
            out["protonet_omniglot"] = "not measured: set PARALAB_DATA (Omniglot's files)"
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
