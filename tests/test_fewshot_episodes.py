"""Episodes as index tensors: class splits, sampling, gathering, and bad input."""

from __future__ import annotations

import pytest
import torch

from paralab.testing.kit import tiny_dataset
from paralab_fewshot.episodes import (
    EpisodeError,
    EpisodeSampler,
    EpisodeShape,
    TaskBatch,
    split_classes,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


@pytest.fixture(scope="module")
def tiny():
    return tiny_dataset(n_per_class=24, n_classes=10)


def test_class_split_is_disjoint_complete_and_seeded(tiny):
    split = split_classes(tiny, (0.6, 0.2, 0.2), seed=3)
    parts = [
        set(split.meta_train.tolist()),
        set(split.meta_val.tolist()),
        set(split.meta_test.tolist()),
    ]
    assert [len(p) for p in parts] == [6, 2, 2]
    assert set().union(*parts) == set(range(10))
    assert sum(len(p) for p in parts) == 10
    again = split_classes(tiny, (0.6, 0.2, 0.2), seed=3)
    assert torch.equal(again.meta_test, split.meta_test)
    other = [split_classes(tiny, (0.6, 0.2, 0.2), seed=s).meta_train.tolist() for s in range(5)]
    assert len({tuple(o) for o in other}) > 1


def test_split_by_group_keeps_each_group_in_one_split(tiny):
    # tiny's "task" feature pairs classes (0,1), (2,3) ...: a split by task never separates them.
    split = split_classes(tiny, (0.6, 0.2, 0.2), seed=0, group_by="task")
    for part in (split.meta_train, split.meta_val, split.meta_test):
        tasks = set((part // 2).tolist())
        assert set(part.tolist()) == {c for t in tasks for c in (2 * t, 2 * t + 1)}
    with pytest.raises(EpisodeError, match="split_by = 'alphabet'.*features"):
        split_classes(tiny, group_by="alphabet")


def test_sampled_episodes_have_distinct_classes_and_examples(tiny):
    classes = torch.tensor([1, 3, 4, 7, 8])
    sampler = EpisodeSampler(tiny, classes, EpisodeShape(ways=4, shots=2, queries=3), "meta_train")
    indices = sampler.sample(200, torch.Generator().manual_seed(0))
    assert indices.shape == (200, 4, 5)
    labels = tiny.y[indices]
    # every row of a class slot has that one class; slots differ; all from the allowed classes
    assert torch.all(labels == labels[:, :, :1])
    per_task = labels[:, :, 0]
    assert torch.all(per_task.sort(dim=1).values.diff(dim=1) > 0)
    assert torch.all(torch.isin(per_task, classes))
    assert torch.all(indices.sort(dim=2).values.diff(dim=2) > 0)  # no repeated example
    assert set(per_task.flatten().tolist()) == set(classes.tolist())  # every class gets drawn


def test_sampling_is_reproducible_and_seed_dependent(tiny):
    sampler = EpisodeSampler(tiny, torch.arange(10), EpisodeShape(5, 1, 15), "meta_train")
    first = sampler.sample(16, torch.Generator().manual_seed(7))
    again = sampler.sample(16, torch.Generator().manual_seed(7))
    other = sampler.sample(16, torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_sampling_is_roughly_uniform_over_examples(tiny):
    sampler = EpisodeSampler(tiny, torch.tensor([0, 1]), EpisodeShape(2, 1, 1), "meta_train")
    indices = sampler.sample(4800, torch.Generator().manual_seed(0))
    counts = torch.bincount(indices.flatten(), minlength=len(tiny))[tiny.y < 2].float()
    # 4800 tasks x 2 classes x 2 rows = 19200 draws over 48 examples: 400 each expected
    assert counts.min() > 320 and counts.max() < 480


def test_task_batch_gathers_support_and_query_with_episode_labels(tiny):
    sampler = EpisodeSampler(tiny, torch.arange(10), EpisodeShape(3, 2, 4), "meta_test")
    indices = sampler.sample(5, torch.Generator().manual_seed(1))
    batch = TaskBatch.gather(tiny, indices, shots=2)
    assert batch.support_x.shape == (5, 6, 16) and batch.query_x.shape == (5, 12, 16)
    assert batch.support_y[0].tolist() == [0, 0, 1, 1, 2, 2]
    assert batch.query_y[0].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert torch.equal(batch.support_x, tiny.x[batch.support_indices])
    assert torch.equal(batch.query_x, tiny.x[batch.query_indices])
    # the episode label is the position of the dataset class in the episode
    classes = tiny.y[indices[:, :, 0]]
    assert torch.equal(tiny.y[batch.query_indices], classes.gather(1, batch.query_y))
    assert [b.tasks for b in batch.chunk(2)] == [2, 2, 1]


def test_too_many_ways_is_a_clear_error(tiny):
    with pytest.raises(EpisodeError, match=r"ways = 6 but the meta_test classes .* number 5"):
        EpisodeSampler(tiny, torch.arange(5), EpisodeShape(6, 1, 1), "meta_test")


def test_too_many_shots_and_queries_is_a_clear_error(tiny):
    with pytest.raises(EpisodeError, match=r"shots \+ queries = 5 \+ 20 = 25 .* only 24 examples"):
        EpisodeSampler(tiny, torch.arange(5), EpisodeShape(2, 5, 20), "meta_train")


def test_empty_split_is_a_clear_error(tiny):
    with pytest.raises(EpisodeError, match="meta_val classes .* are empty"):
        EpisodeSampler(tiny, torch.tensor([], dtype=torch.long), EpisodeShape(2, 1, 1), "meta_val")
    with pytest.raises(EpisodeError, match="three non-negative fractions"):
        split_classes(tiny, (0.5, 0.5))


def test_episode_accuracy_and_its_confidence_interval():
    from paralab.evaluation import Predictions, accuracy, mean_confidence_interval
    from paralab_fewshot.evaluation import episode_accuracy

    # 3 episodes of 2 queries: both right, one right, none right
    logits = torch.tensor([[2.0, 0], [0, 2.0], [2.0, 0], [2.0, 0], [0, 2.0], [0, 2.0]])
    targets = torch.tensor([0, 1, 0, 1, 0, 0])
    predictions = Predictions(
        logits=logits,
        targets=targets,
        indices=torch.arange(6),
        extras={"episode": torch.tensor([0, 0, 1, 1, 2, 2]), "episodes": 3},
    )
    per_episode = episode_accuracy(predictions)
    assert per_episode.tolist() == [1.0, 0.5, 0.0]
    assert accuracy(predictions) == pytest.approx(float(per_episode.mean()))
    mean, half = mean_confidence_interval(per_episode)
    assert mean == pytest.approx(0.5)
    assert half == pytest.approx(1.959964 * 0.5 / 3**0.5)


def test_a_protonet_query_depends_on_its_own_episode_only() -> None:
    # Conv-4's batch norm normalises with the statistics of what it sees: embedding a whole
    # meta-batch at once let other episodes' images move a query's prediction.
    import paralab
    from paralab_fewshot.methods.protonet import ProtoNet
    from paralab_fewshot.models import conv4

    torch.manual_seed(0)
    model = conv4(paralab.load_dataset("digits").info, hidden=8)
    method = ProtoNet()
    method.setup(None, model, 5, torch.zeros(1))
    generator = torch.Generator().manual_seed(1)

    def batch(tasks: torch.Tensor) -> TaskBatch:
        labels = torch.arange(5).repeat(tasks.shape[0], 1)
        return TaskBatch(support_x=tasks[:, :5], support_y=labels, support_indices=labels,
                         query_x=tasks[:, 5:], query_y=labels, query_indices=labels, ways=5)

    episodes = torch.rand(3, 10, 64, generator=generator) * 16
    others = episodes.clone()
    others[1:] = torch.rand(2, 10, 64, generator=generator) * 16  # change episodes 1 and 2
    first = method.predict(None, model, batch(episodes))[0]
    assert torch.equal(first, method.predict(None, model, batch(others))[0])
    alone = method.predict(None, model, batch(episodes[:1]))[0]
    torch.testing.assert_close(first, alone, rtol=1e-5, atol=1e-5)


def test_rotated_classes_of_one_character_stay_in_one_split(data_root) -> None:
    """omniglot with rotations = true: 968 classes of 242 characters; a character's four
    rotations must all land in the same split (else meta-test leaks into meta-training)."""
    from paralab import load_dataset

    rotated = load_dataset("omniglot", rotations=True)
    split = split_classes(rotated, (0.6, 0.2, 0.2), seed=0)
    assert sum(len(part) for part in (split.meta_train, split.meta_val, split.meta_test)) == 968
    characters = [set((part // 4).tolist()) for part in
                  (split.meta_train, split.meta_val, split.meta_test)]
    assert not (characters[0] & characters[1] or characters[0] & characters[2]
                or characters[1] & characters[2])
    assert sum(len(c) for c in characters) == 242
    assert all(len(part) % 4 == 0 for part in (split.meta_train, split.meta_test))
