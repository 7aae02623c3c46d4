"""Few-shot evaluation: query predictions of many episodes, scored once by the shared engine.

The queries of all evaluated episodes become one :class:`paralab.Predictions`
(logits over the episode's classes, episode-relative targets, dataset indices of the query
rows, and ``extras["episode"]``), handed to ``run.evaluate`` so every metric and auditor of
the spec reads the same predictions. The few-shot figure itself is the mean of per-episode
accuracies with its 95% confidence interval, as the papers report it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from paralab import Predictions, mean_confidence_interval
from paralab_fewshot.episodes import EpisodeSampler, TaskBatch

if TYPE_CHECKING:
    from paralab import EpisodicMethod, RunContext, SharedDataset


def episode_predictions(
    method: EpisodicMethod,
    model: torch.nn.Module,
    batches: list[TaskBatch],
    dataset: SharedDataset,
    *,
    run: RunContext | None = None,
    split: str = "",
) -> Predictions:
    """Run ``method.predict`` over meta-batches; one flat :class:`Predictions` of all queries."""
    was_training = model.training
    model.eval()
    logits, targets, indices, episodes, offset = [], [], [], [], 0
    try:
        for batch in batches:
            batch_logits = method.predict(run, model, batch)
            logits.append(batch_logits.flatten(0, 1))
            targets.append(batch.query_y.flatten())
            indices.append(batch.query_indices.flatten())
            tasks, queries = batch.query_y.shape
            episode = torch.arange(offset, offset + tasks, device=batch.query_y.device)
            episodes.append(episode.repeat_interleave(queries))
            offset += tasks
    finally:
        model.train(was_training)
    return Predictions(
        logits=torch.cat(logits),
        targets=torch.cat(targets),
        indices=torch.cat(indices),
        dataset=dataset,
        split=split,
        extras={"episode": torch.cat(episodes), "episodes": offset},
    )


def episode_accuracy(predictions: Predictions) -> torch.Tensor:
    """The accuracy of each episode, ``(episodes,)``, on the predictions' device."""
    episode = predictions.extras["episode"]
    total = torch.zeros(predictions.extras["episodes"], device=episode.device)
    count = torch.zeros_like(total)
    total.index_add_(0, episode, predictions.correct)
    count.index_add_(0, episode, torch.ones_like(predictions.correct))
    return total / count


def evaluate_episodes(
    run: RunContext,
    method: EpisodicMethod,
    sampler: EpisodeSampler,
    *,
    episodes: int,
    meta_batch: int,
    generator: torch.Generator,
    name: str,
) -> tuple[float, float]:
    """Evaluate ``episodes`` fresh episodes; record ``name/accuracy`` and ``name/ci95``."""
    indices = sampler.sample(episodes, generator)
    batches = [
        TaskBatch.gather(run.dataset, indices[start : start + meta_batch], sampler.shape.shots)
        for start in range(0, episodes, meta_batch)
    ]
    return record(run, method, batches, name)


def record(
    run: RunContext,
    method: EpisodicMethod,
    batches: list[TaskBatch],
    name: str,
    dataset: SharedDataset | None = None,
) -> tuple[float, float]:
    """Predict, hand the predictions to ``run.evaluate``, record mean accuracy and CI.

    ``dataset`` is the one the batches' indices point into (default: the run's).
    """
    dataset = dataset or run.dataset
    predictions = episode_predictions(method, run.model, batches, dataset, run=run, split=name)
    run.evaluate(name, predictions=predictions)
    mean, half_width = mean_confidence_interval(episode_accuracy(predictions), 0.95)
    run.record(f"{name}/accuracy", mean)
    run.record(f"{name}/ci95", half_width)
    run.record(f"{name}/episodes", int(predictions.extras["episodes"]))
    return mean, half_width


def lake_runs_batch(runs: SharedDataset) -> TaskBatch:
    """Lake et al.'s 20 one-shot runs as one meta-batch: 20 tasks, 20-way, 1 shot, 20 queries.

    ``runs`` is the ``omniglot_runs`` dataset; its ``y`` is the class within the run.
    """
    run_id, role = runs.features["run"], runs.features["role"]
    tasks = int(run_id.max()) + 1
    support, query = [], []
    for task in range(tasks):
        train = torch.nonzero((run_id == task) & (role == 0)).flatten()
        test = torch.nonzero((run_id == task) & (role == 1)).flatten()
        support.append(train[torch.argsort(runs.y[train], stable=True)])
        query.append(test)
    support_index, query_index = torch.stack(support), torch.stack(query)
    shape = tuple(runs.x.shape[1:])
    ways = support_index.shape[1]
    return TaskBatch(
        support_x=runs.x[support_index.flatten()].reshape(tasks, ways, *shape),
        support_y=runs.y[support_index],
        support_indices=support_index,
        query_x=runs.x[query_index.flatten()].reshape(tasks, query_index.shape[1], *shape),
        query_y=runs.y[query_index],
        query_indices=query_index,
        ways=ways,
    )
