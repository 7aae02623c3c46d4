"""Few-shot benchmark: paralab_fewshot against learn2learn on the same work, in one run.

1. MAML, 5-way 1-shot, meta-batch 32, 5 inner steps, second order, on scikit-learn's digits
   (meta-train classes 0-4, meta-test classes 5-9) with the MLP 64-256-256-10: both sides
   start from the same weights and see the same episodes; per outer step they are timed
   alternately (so machine load hits both alike). learn2learn runs its own recipe
   (``MAML.clone()``/``adapt()`` and a backward per task, as in its maml_omniglot example);
   paralab runs ``paralab_fewshot.methods.maml.MAML`` (engine ``auto``: the factored engine
   for this MLP). Queries: 1 per class in training (learn2learn's recipe) and a second
   timing with 15. Accuracy: both models after the same steps, on the same 600 meta-test
   episodes (15 queries per class).
2. Episode sampling for a meta-batch of 32: paralab's ``EpisodeSampler`` + ``TaskBatch``
   against learn2learn's ``TaskDataset`` (NWays, KShots, LoadData, RemapLabels).
3. ProtoNets training throughput (episodes per second, sampling included): paralab's
   ``ProtoNet`` on meta-batches of 32 episodes against learn2learn's pipeline one episode at a
   time (its protonet example), same network and optimizer; accuracy on the same 600 episodes.

Prints one JSON object as the last line. Timings are wall-clock medians; CPU-time figures are
given too, because on a shared machine wall time includes waiting for a core.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

WAYS, SHOTS, META_BATCH, INNER_STEPS, INNER_LR = 5, 1, 32, 5, 0.4


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = clock()
    return wall - start[0], cpu - start[1]


def setup() -> dict[str, Any]:
    from paralab import DatasetInfo, load_dataset, mlp
    from paralab_fewshot.episodes import EpisodeSampler, EpisodeShape

    digits = load_dataset("digits")
    train_classes, test_classes = torch.arange(0, 5), torch.arange(5, 10)
    info = DatasetInfo("digits", (64,), 10, 64)
    torch.manual_seed(0)
    return {
        "digits": digits,
        "model": mlp(info, hidden=(256, 256)),
        "train": lambda queries: EpisodeSampler(
            digits, train_classes, EpisodeShape(WAYS, SHOTS, queries), "meta_train"
        ),
        "test": EpisodeSampler(digits, test_classes, EpisodeShape(WAYS, SHOTS, 15), "meta_test"),
    }


def meta_test(method: Any, model: torch.nn.Module, data: dict[str, Any]) -> float:
    """Mean accuracy over the same 600 meta-test episodes for every method."""
    from paralab_fewshot.episodes import TaskBatch
    from paralab_fewshot.evaluation import episode_accuracy, episode_predictions

    indices = data["test"].sample(600, torch.Generator().manual_seed(123))
    batches = [
        TaskBatch.gather(data["digits"], indices[i : i + 100], SHOTS) for i in range(0, 600, 100)
    ]
    predictions = episode_predictions(method, model, batches, data["digits"])
    return float(episode_accuracy(predictions).mean())


def bench_maml(
    data: dict[str, Any], iterations: int, queries: int, evaluate: bool
) -> dict[str, Any]:
    from paralab_fewshot.episodes import TaskBatch
    from paralab_fewshot.methods.l2l import L2LMAML
    from paralab_fewshot.methods.maml import MAML

    ours_model, theirs_model = copy.deepcopy(data["model"]), copy.deepcopy(data["model"])
    ours = MAML(inner_lr=INNER_LR, inner_steps=INNER_STEPS, meta_lr=0.001)
    theirs = L2LMAML(inner_lr=INNER_LR, inner_steps=INNER_STEPS, meta_lr=0.001)
    sample = data["digits"].x[:2]
    ours.setup(None, ours_model, WAYS, sample)
    theirs.setup(None, theirs_model, WAYS, sample)
    sampler, generator = data["train"](queries), torch.Generator().manual_seed(0)
    times: dict[str, list[tuple[float, float]]] = {"paralab": [], "learn2learn": []}
    for step in range(iterations + 2):
        batch = TaskBatch.gather(data["digits"], sampler.sample(META_BATCH, generator), SHOTS)
        order = [("paralab", ours, ours_model), ("learn2learn", theirs, theirs_model)]
        for name, method, model in order if step % 2 == 0 else order[::-1]:
            start = clock()
            method.meta_step(None, model, batch)
            if step >= 2:  # two warm-up steps
                times[name].append(since(start))
    result: dict[str, Any] = {}
    for name, values in times.items():
        result[f"{name}_ms"] = 1000 * statistics.median(v[0] for v in values)
        result[f"{name}_cpu_ms"] = 1000 * statistics.median(v[1] for v in values)
    result["speedup"] = result["learn2learn_ms"] / result["paralab_ms"]
    result["cpu_speedup"] = result["learn2learn_cpu_ms"] / result["paralab_cpu_ms"]
    if evaluate:
        result["paralab_accuracy"] = meta_test(ours, ours_model, data)
        result["learn2learn_accuracy"] = meta_test(theirs, theirs_model, data)
    return result


def l2l_taskset(data: dict[str, Any], ways: int, per_class: int, classes: torch.Tensor) -> Any:
    import learn2learn as l2l
    from learn2learn.data.transforms import KShots, LoadData, NWays, RemapLabels

    digits = data["digits"]
    rows = torch.nonzero(torch.isin(digits.y, classes)).flatten()
    dataset = torch.utils.data.TensorDataset(digits.x[rows], digits.y[rows])
    meta = l2l.data.MetaDataset(dataset)
    transforms = [NWays(meta, ways), KShots(meta, per_class), LoadData(meta), RemapLabels(meta)]
    return l2l.data.TaskDataset(meta, task_transforms=transforms, num_tasks=-1)


def bench_sampling(data: dict[str, Any], repeats: int) -> dict[str, Any]:
    from paralab_fewshot.episodes import TaskBatch

    sampler, generator = data["train"](15), torch.Generator().manual_seed(0)
    taskset = l2l_taskset(data, WAYS, SHOTS + 15, torch.arange(0, 5))
    ours, theirs = [], []
    for _ in range(repeats):
        start = clock()
        TaskBatch.gather(data["digits"], sampler.sample(META_BATCH, generator), SHOTS)
        ours.append(since(start)[0])
        start = clock()
        for _ in range(META_BATCH):
            taskset.sample()
        theirs.append(since(start)[0])
    paralab_ms, l2l_ms = 1000 * statistics.median(ours), 1000 * statistics.median(theirs)
    return {"paralab_ms": paralab_ms, "learn2learn_ms": l2l_ms, "speedup": l2l_ms / paralab_ms}


def bench_protonet(data: dict[str, Any], episodes: int, queries: int = 5) -> dict[str, Any]:
    """Train ProtoNets on ``episodes`` episodes each way; episodes per second and accuracy."""
    from paralab_fewshot.episodes import TaskBatch
    from paralab_fewshot.methods.protonet import ProtoNet, prototype_logits

    ours_model, theirs_model = copy.deepcopy(data["model"]), copy.deepcopy(data["model"])
    ours = ProtoNet(meta_lr=0.001)
    ours.setup(None, ours_model, WAYS, data["digits"].x[:2])
    sampler, generator = data["train"](queries), torch.Generator().manual_seed(0)
    start = clock()
    for _ in range(episodes // META_BATCH):
        batch = TaskBatch.gather(data["digits"], sampler.sample(META_BATCH, generator), SHOTS)
        ours.meta_step(None, ours_model, batch)
    ours_seconds = since(start)

    # learn2learn's protonet example: one task per step from a TaskDataset, sorted by label
    taskset = l2l_taskset(data, WAYS, SHOTS + queries, torch.arange(0, 5))
    encoder = theirs_model[:-1]
    optimizer = torch.optim.Adam(encoder.parameters(), lr=0.001)
    start = clock()
    for _ in range((episodes // META_BATCH) * META_BATCH):
        x, y = taskset.sample()
        order = torch.argsort(y, stable=True)
        x, y = x[order], y[order]
        embedded = encoder(x).reshape(WAYS, SHOTS + queries, -1)
        support = embedded[:, :SHOTS].reshape(1, WAYS * SHOTS, -1)
        query = embedded[:, SHOTS:].reshape(1, WAYS * queries, -1)
        logits = prototype_logits(support, query, WAYS)[0]
        loss = F.cross_entropy(logits, torch.arange(WAYS).repeat_interleave(queries))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    theirs_seconds = since(start)
    theirs_method = ProtoNet()
    theirs_method.setup(None, theirs_model, WAYS, data["digits"].x[:2])
    trained = (episodes // META_BATCH) * META_BATCH
    return {
        "episodes": trained,
        "paralab_episodes_per_s": trained / ours_seconds[0],
        "learn2learn_episodes_per_s": trained / theirs_seconds[0],
        "speedup": theirs_seconds[0] / ours_seconds[0],
        "cpu_speedup": theirs_seconds[1] / ours_seconds[1],
        "paralab_accuracy": meta_test(ours, ours_model, data),
        "learn2learn_accuracy": meta_test(theirs_method, theirs_model, data),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100, help="MAML outer steps")
    parser.add_argument("--protonet-episodes", type=int, default=3200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = setup()
    maml = bench_maml(data, args.iterations, queries=1, evaluate=True)
    maml15 = bench_maml(data, max(10, args.iterations // 10), queries=15, evaluate=False)
    sampling = bench_sampling(data, repeats=20)
    protonet = bench_protonet(data, args.protonet_episodes)
    summary: dict[str, Any] = {"threads": args.threads, "load_average_1min": os.getloadavg()[0]}
    for prefix, values in (
        ("maml", maml),
        ("maml_15q", maml15),
        ("sampling", sampling),
        ("protonet", protonet),
    ):
        for key, value in values.items():
            summary[f"{prefix}_{key}"] = round(value, 4) if isinstance(value, float) else value
    for prefix, values in summary.items():
        print(f"{prefix:40s} {values}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
