"""Benchmark: FedAvg with paralab's vectorized simulator against Flower's simulation engine.

Same work on both sides: FedAvg, 100 IID clients (the same partition), 10% sampled per round,
1 local epoch, batch 16, plain SGD at the same learning rate, 20 rounds, the same MLP, the
global model evaluated on the test split after every round. Run on digits (embedded) and on
the MNIST test split under $PARALAB_DATA (skipped when unset). A plain per-client PyTorch loop
is timed too, as the simplest honest baseline.

    python benchmarks/federated.py [--rounds 20] [--skip-flower]

``--strategies`` adds (``--strategies-only``: runs only) the strategy comparison of issue 18 on
digits under label skew (20 clients, Dirichlet(0.1), 10 per round, 5 local epochs, lr 0.05):
test accuracy over ``--seeds`` seeds of paralab's FedAvg, SCAFFOLD and FedMedian
(``aggregation = "median"``) beside Flower's ``FedMedian`` and ``FedAvg`` on the same
partition, initial model and local SGD (SCAFFOLD is not in flwr 1.42 and flwr-baselines is not
a package: paralab's FedAvg is its reference).

Prints a table, then one JSON object as the last line; every ``*speedup*`` field is the
peer's wall time over paralab's (above 1: paralab is faster). The ``dp_sgd_*`` fields give the
cost of the ``dp`` middleware's DP-SGD under the supervised protocol (per-example gradients,
Poisson batches) against plain SGD on digits, same epochs and batch size.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import traceback
from typing import Any

import torch
import torch.nn.functional as F

import paralab

THREADS = 2
CLIENTS, FRACTION, EPOCHS, BATCH, LR, HIDDEN = 100, 0.1, 1, 16, 0.1, [64]
SEEDS = 5


def spec(dataset: str, rounds: int, backend: str) -> dict[str, Any]:
    return {
        "name": f"bench-{dataset}-{backend}",
        "dataset": dataset,
        "model": {"name": "mlp", "hidden": HIDDEN},
        "protocol": {"name": "federated", "clients": CLIENTS, "fraction": FRACTION,
                     "rounds": rounds, "local_epochs": EPOCHS, "batch_size": BATCH,
                     "backend": backend, "client_eval": False},
        "method": {"name": "fedavg", "lr": LR},
        "output": None,
        "device": "cpu",
        "seed": 0,
    }


def time_paralab(dataset: str, rounds: int, backend: str, seed: int = 0) -> tuple[float, float]:
    started = time.perf_counter()
    result = paralab.run({**spec(dataset, rounds, backend), "seed": seed})
    return time.perf_counter() - started, float(result.metrics["test/accuracy"])


def shared_setup(dataset_name: str, seed: int = 0, clients: int = CLIENTS,
                 partition: str = "iid", alpha: float = 0.5) -> dict[str, Any]:
    """The data, the partition and the initial model both peers start from."""
    from paralab import mlp
    from paralab_federated.partitions import make_partition

    data = paralab.load_dataset(dataset_name)
    train, test = data.splits["train"], data.splits["test"]
    dealt = make_partition(train, data.y[train], clients, partition, alpha=alpha,
                           generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    model = mlp(data.info, hidden=HIDDEN)
    rows = [dealt.client(k) for k in range(clients)]
    return {"x": data.x, "y": data.y, "test": test, "clients": rows, "model": model}


def local_sgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
              generator: torch.Generator, epochs: int = EPOCHS, lr: float = LR) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(epochs):
        order = rows[torch.randperm(len(rows), generator=generator)]
        for batch in torch.split(order, BATCH):
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def time_plain_loop(setup: dict[str, Any], rounds: int, seed: int = 0) -> tuple[float, float]:
    """The textbook sequential FedAvg: one client after another, state dicts averaged."""
    import copy

    started = time.perf_counter()
    x, y, test = setup["x"], setup["y"], setup["test"]
    global_model = copy.deepcopy(setup["model"])
    local = copy.deepcopy(global_model)
    generator = torch.Generator().manual_seed(seed)
    m = max(1, round(FRACTION * CLIENTS))
    for _ in range(rounds):
        sampled = torch.randperm(CLIENTS, generator=generator)[:m].tolist()
        states, sizes = [], []
        for k in sampled:
            local.load_state_dict(global_model.state_dict())
            local_sgd(local, x, y, setup["clients"][k], generator)
            states.append({n: v.clone() for n, v in local.state_dict().items()})
            sizes.append(len(setup["clients"][k]))
        total = sum(sizes)
        global_model.load_state_dict(
            {n: sum(s[n] * (w / total) for s, w in zip(states, sizes)) for n in states[0]})
        final = accuracy(global_model, x[test], y[test])
    return time.perf_counter() - started, final


def time_flower(setup: dict[str, Any], rounds: int, strategy: str = "FedAvg",
                fraction: float = FRACTION, epochs: int = EPOCHS,
                lr: float = LR) -> tuple[float, float]:
    """Flower's simulation engine (Ray): ServerApp with ``strategy`` (a name in
    ``flwr.server.strategy``), one ClientApp per client."""
    import copy

    import flwr.server.strategy as strategies
    import numpy as np
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.simulation import run_simulation

    n_clients = len(setup["clients"])

    for name in ("flwr", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)
    x, y, test, clients = setup["x"], setup["y"], setup["test"], setup["clients"]
    template = setup["model"]
    finals: dict[int, float] = {}

    def get_weights(model: torch.nn.Module) -> list[np.ndarray]:
        return [v.detach().cpu().numpy() for v in model.state_dict().values()]

    def set_weights(model: torch.nn.Module, weights: list[np.ndarray]) -> None:
        keys = list(model.state_dict())
        model.load_state_dict({k: torch.from_numpy(np.asarray(w)) for k, w in zip(keys, weights)})

    class Client(NumPyClient):
        def __init__(self, pid: int) -> None:
            self.pid = pid
            self.model = copy.deepcopy(template)

        def fit(self, parameters: Any, config: Any) -> Any:
            set_weights(self.model, parameters)
            generator = torch.Generator().manual_seed(self.pid)
            local_sgd(self.model, x, y, clients[self.pid], generator, epochs, lr)
            return get_weights(self.model), len(clients[self.pid]), {}

    def client_fn(context: Context) -> Any:
        return Client(int(context.node_config["partition-id"])).to_client()

    def evaluate(server_round: int, parameters: Any, config: Any) -> Any:
        model = copy.deepcopy(template)
        set_weights(model, parameters)
        finals[server_round] = accuracy(model, x[test], y[test])
        return 0.0, {"accuracy": finals[server_round]}

    def server_fn(context: Context) -> ServerAppComponents:
        chosen = getattr(strategies, strategy)(
            fraction_fit=fraction, fraction_evaluate=0.0,
            min_fit_clients=max(1, round(fraction * n_clients)),
            min_evaluate_clients=0, min_available_clients=n_clients,
            initial_parameters=ndarrays_to_parameters(get_weights(template)),
            evaluate_fn=evaluate)
        return ServerAppComponents(strategy=chosen, config=ServerConfig(num_rounds=rounds))

    started = time.perf_counter()
    run_simulation(
        server_app=ServerApp(server_fn=server_fn),
        client_app=ClientApp(client_fn=client_fn),
        num_supernodes=n_clients,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                        "init_args": {"num_cpus": 2, "include_dashboard": False}},
    )
    seconds = time.perf_counter() - started
    if rounds not in finals:
        raise RuntimeError(f"Flower's simulation finished without round {rounds}: "
                           f"evaluated rounds {sorted(finals)}")
    return seconds, finals[rounds]


def compare(dataset: str, rounds: int, skip_flower: bool) -> dict[str, Any]:
    paralab.load_dataset(dataset)  # load once, outside every timing
    time_paralab(dataset, 2, "vmap")  # warm-up: imports, vmap tracing
    row: dict[str, Any] = {}
    row["paralab_seconds"], row["paralab_accuracy"] = time_paralab(dataset, rounds, "vmap")
    loop_seconds, loop_accuracy = time_paralab(dataset, rounds, "loop")
    row["paralab_loop_seconds"], row["paralab_loop_accuracy"] = loop_seconds, loop_accuracy
    setup = shared_setup(dataset)
    row["plain_loop_seconds"], row["plain_loop_accuracy"] = time_plain_loop(setup, rounds)
    row["speedup_vs_plain_loop"] = row["plain_loop_seconds"] / row["paralab_seconds"]
    # Secondary: one torch thread each. On a loaded shared machine a second intra-op thread
    # mostly waits for the first, which hurts the batched (vmap) path most.
    torch.set_num_threads(1)
    row["paralab_1thread_seconds"], _ = time_paralab(dataset, rounds, "vmap")
    row["plain_loop_1thread_seconds"], _ = time_plain_loop(setup, rounds)
    row["speedup_vs_plain_loop_1thread"] = (row["plain_loop_1thread_seconds"]
                                            / row["paralab_1thread_seconds"])
    # Accuracy after 20 rounds of one local step varies with the sampled clients: compare
    # means over seeds (Flower's own sampling differs run to run).
    accuracies = [time_paralab(dataset, rounds, "vmap", seed)[1] for seed in range(SEEDS)]
    row["paralab_accuracy_mean_over_seeds"] = sum(accuracies) / SEEDS
    plain = [time_plain_loop(setup, rounds, seed)[1] for seed in range(SEEDS)]
    row["plain_loop_accuracy_mean_over_seeds"] = sum(plain) / SEEDS
    torch.set_num_threads(THREADS)
    if skip_flower:
        row["flower_error"] = "skipped (--skip-flower)"
        return row
    try:
        row["flower_seconds"], row["flower_accuracy"] = time_flower(setup, rounds)
        row["speedup_vs_flower"] = row["flower_seconds"] / row["paralab_seconds"]
        # Flower's Ray actors each hold one CPU (one torch thread): the like-for-like figure.
        row["speedup_vs_flower_1thread"] = row["flower_seconds"] / row["paralab_1thread_seconds"]
    except Exception as error:  # noqa: BLE001 - record exactly why Flower could not run
        row["flower_error"] = "".join(traceback.format_exception_only(type(error), error)).strip()
    return row


SKEW = {"clients": 20, "fraction": 0.5, "partition": "dirichlet", "alpha": 0.1,
        "local_epochs": 5, "batch_size": BATCH, "lr": 0.05}
"""The strategy comparison's setting: label skew where client drift matters (SCAFFOLD's case)."""


def strategy_rows(rounds: int, seeds: int, skip_flower: bool) -> dict[str, Any]:
    """Test accuracy on digits after ``rounds`` rounds, mean and per seed, of paralab's FedAvg,
    SCAFFOLD and FedMedian and of Flower's FedMedian and FedAvg (same partition, same initial
    model, same local SGD; Flower samples clients with its own generator)."""
    protocol = {key: value for key, value in SKEW.items() if key != "lr"}
    runs: dict[str, list[float]] = {}
    paralab_rows = {"paralab_fedavg": ("fedavg", "mean"), "paralab_scaffold": ("scaffold", "mean"),
                    "paralab_fedmedian": ("fedavg", "median")}
    for key, (method, aggregation) in paralab_rows.items():
        runs[key] = [float(paralab.run({
            "dataset": "digits", "model": {"name": "mlp", "hidden": HIDDEN}, "seed": seed,
            "protocol": {"name": "federated", "rounds": rounds, "client_eval": False,
                         "aggregation": aggregation, **protocol},
            "method": {"name": method, "lr": SKEW["lr"]}, "output": None, "device": "cpu",
        }).metrics["test/accuracy"]) for seed in range(seeds)]
    row: dict[str, Any] = {}
    if skip_flower:
        row["flower_error"] = "skipped (--skip-flower)"
    else:
        try:
            for strategy in ("FedMedian", "FedAvg"):
                runs[f"flower_{strategy.lower()}"] = [time_flower(
                    shared_setup("digits", seed, SKEW["clients"], "dirichlet", SKEW["alpha"]),
                    rounds, strategy, SKEW["fraction"], SKEW["local_epochs"], SKEW["lr"])[1]
                    for seed in range(seeds)]
        except Exception as error:  # noqa: BLE001 - record exactly why Flower could not run
            row["flower_error"] = "".join(
                traceback.format_exception_only(type(error), error)).strip()
    for key, values in runs.items():
        row[f"{key}_accuracy_mean"] = sum(values) / len(values)
        row[f"{key}_accuracies"] = values
    return row


def time_dp_sgd(epochs: int = 3, batch_size: int = 64) -> dict[str, float]:
    """Supervised SGD on digits with and without DP-SGD (``dp``, noise multiplier 1.1)."""
    base = {"dataset": "digits", "model": {"name": "mlp", "hidden": HIDDEN}, "output": None,
            "device": "cpu", "seed": 0, "method": {"name": "sgd", "lr": 0.5},
            "protocol": {"name": "supervised", "epochs": epochs, "batch_size": batch_size}}
    private = {**base, "middleware": [{"name": "dp", "clip": 1.0, "noise_multiplier": 1.1}]}
    paralab.run(private)  # warm-up: torch.func, dp_accounting
    figures: dict[str, float] = {}
    for key, experiment in (("sgd", base), ("dp_sgd", private)):
        started = time.perf_counter()
        result = paralab.run(experiment)
        figures[f"{key}_seconds"] = time.perf_counter() - started
        figures[f"{key}_accuracy"] = float(result.metrics["test/accuracy"])
    figures["dp_sgd_epsilon"] = float(result.metrics["privacy/epsilon"])
    figures["dp_sgd_overhead"] = figures["dp_sgd_seconds"] / figures["sgd_seconds"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--skip-flower", action="store_true")
    parser.add_argument("--strategies", action="store_true",
                        help="add the strategy comparison (SCAFFOLD, FedMedian, Flower's)")
    parser.add_argument("--strategies-only", action="store_true",
                        help="run only the strategy comparison")
    parser.add_argument("--strategy-rounds", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the strategy comparison")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    os.environ.setdefault("PARALAB_QUIET", "1")
    datasets = ["digits"] + (["mnist"] if os.environ.get("PARALAB_DATA") else [])
    report: dict[str, Any] = {
        "benchmark": "federated",
        "settings": {"clients": CLIENTS, "fraction": FRACTION, "local_epochs": EPOCHS,
                     "batch_size": BATCH, "lr": LR, "rounds": args.rounds, "hidden": HIDDEN,
                     "torch_threads": THREADS},
        "load_average": os.getloadavg()[0],
    }
    if args.strategies or args.strategies_only:
        row = strategy_rows(args.strategy_rounds, args.seeds, args.skip_flower)
        report["strategies_settings"] = {**SKEW, "rounds": args.strategy_rounds,
                                         "seeds": args.seeds, "dataset": "digits"}
        report.update({f"strategies_{key}": value for key, value in row.items()})
        print("strategies (digits, Dirichlet 0.1): " + ", ".join(
            f"{k}={v:.3f}" for k, v in row.items() if k.endswith("_mean")), flush=True)
        if args.strategies_only:
            print(json.dumps(report))
            return
    for dataset in datasets:
        row = compare(dataset, args.rounds, args.skip_flower)
        for key, value in row.items():
            report[f"{dataset}_{key}"] = value
        print(f"{dataset}: " + ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
            flush=True)
    dp_sgd = time_dp_sgd()
    report.update({f"digits_{key}": value for key, value in dp_sgd.items()})
    print("digits, supervised: " + ", ".join(f"{k}={v:.3f}" for k, v in dp_sgd.items()),
          flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
