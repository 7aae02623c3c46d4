"""Many seeds at once: K seeds of the digits MLP stacked against K runs one after another.

The same work on every side, in the same run: the supervised digits MLP (64-256-256-10, SGD
with momentum, batch 32, ``--epochs`` epochs, evaluation every epoch, no output folder) for
K seeds (1, 5, 10, 20):

* ``stacked``: :func:`paralab.run_seeds` (the seeds trained as one stacked model);
* ``sequential``: ``run_seeds(..., vectorize=False)``, K ``paralab.run`` calls in one process
  with ``--threads`` torch threads;
* ``two_processes``: the K separate runs shared by two worker processes of one torch thread
  each (started and warmed up before the clock starts), the best a 2-core machine does
  without stacking.

Per-seed test accuracies of the stacked and sequential runs are compared (they must be
equal). Goal: ``mlp/cost_10_seeds_over_1`` (10 stacked seeds' wall time over one seed's
run) at most 3.5 on this machine's CPU. Prints one JSON object as its last line, with the
load average before and after (the machine may be shared).

Not measured here (not stacked yet): a Conv-4 ProtoNet on Omniglot and a FedAvg run; their
fields say so.

Each side, and one seed's ``paralab.run`` beside it, is timed ``--repeats`` times,
interleaved, and the minimum kept (on a shared machine the minimum is the least disturbed
figure); ``cost_K_seeds_over_1`` divides by the one-seed time measured beside those K.

    python benchmarks/seeds.py [--threads 2] [--epochs 10] [--seeds 1 5 10 20] [--repeats 3]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timings per side, interleaved; the minimum is reported")
    parser.add_argument("--no-processes", action="store_true",
                        help="skip the two-process comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("PARALAB_QUIET", "1")
    load_before = os.getloadavg()
    spec = mlp_spec(args.epochs, args.device)
    out: dict[str, Any] = {"threads": args.threads, "epochs": args.epochs,
                           "device": args.device, "load_average_before": load_before}
    # Warm-up (imports, the dataset cache, first-call costs), not measured.
    paralab.run({**spec, "protocol": {**spec["protocol"], "epochs": 1}})
    paralab.run_seeds({**spec, "protocol": {**spec["protocol"], "epochs": 1}}, [0, 1])
    pool = None
    if not args.no_processes:
        pool = multiprocessing.get_context("spawn").Pool(2, initializer=_worker_init)
        pool.map(_worker_run, [({**spec, "protocol": {**spec["protocol"], "epochs": 1}}, s)
                               for s in (0, 1)])
    for k in args.seeds:
        seeds = list(range(k))
        times: dict[str, list[float]] = {"one": [], "stacked": [], "sequential": [],
                                         "processes": []}
        for _ in range(args.repeats):  # interleaved: load on the machine hits every side
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
        prefix = "mlp"
        out[f"{prefix}/seconds_1_seed_beside_{k}_seeds"] = one
        out[f"{prefix}/stacked_seconds_{k}_seeds"] = stacked_s
        out[f"{prefix}/sequential_seconds_{k}_seeds"] = sequential_s
        out[f"{prefix}/cost_{k}_seeds_over_1"] = stacked_s / one
        out[f"{prefix}/sequential_cost_{k}_seeds_over_1"] = sequential_s / one
        out[f"{prefix}/speedup_vs_sequential_{k}_seeds"] = sequential_s / stacked_s
        out[f"{prefix}/stacked_{k}_seeds"] = record["stacked"]
        out[f"{prefix}/peak_memory_per_seed_bytes_{k}_seeds"] = record.get(
            "peak_memory_per_seed_bytes")
        a = [r.metrics["test/accuracy"] for r in stacked]
        b = [r.metrics["test/accuracy"] for r in sequential]
        out[f"{prefix}/accuracy_equal_{k}_seeds"] = a == b
        out[f"{prefix}/mean_accuracy_{k}_seeds"] = statistics.mean(a)
        line = (f"{k:>3} seeds: stacked {stacked_s:7.2f} s ({stacked_s / one:5.2f}x one seed) | "
                f"sequential {sequential_s:7.2f} s ({sequential_s / one:5.2f}x)")
        if pool is not None:
            processes_s = min(times["processes"])
            out[f"{prefix}/two_processes_seconds_{k}_seeds"] = processes_s
            out[f"{prefix}/speedup_vs_two_processes_{k}_seeds"] = processes_s / stacked_s
            out[f"{prefix}/two_processes_accuracy_equal_{k}_seeds"] = accuracies == b
            line += f" | two 1-thread processes {processes_s:7.2f} s"
        print(line + f" | accuracies equal: {a == b}", file=sys.stderr, flush=True)
    if pool is not None:
        pool.close()
        pool.join()
    out["omniglot_protonet"] = "not done: the fewshot protocol does not declare seed_axis yet"
    out["fedavg"] = "not done: the federated protocol does not declare seed_axis yet"
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
