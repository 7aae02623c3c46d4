"""Continual scenarios: experiences are index views with the right classes, masks, transforms;
bad options fail with a clear error before any training."""

from __future__ import annotations

import pytest
import torch

import paralab
from paralab import load_dataset
from paralab_continual.scenarios import (
    PermuteFeatures,
    RotateImages,
    ScenarioError,
    build_stream,
    split_classes,
)
from tests.continual_helpers import continual_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


@pytest.fixture(scope="module")
def digits() -> paralab.SharedDataset:
    return load_dataset("digits")


def test_class_incremental_experiences_partition_the_classes_and_rows(digits):
    stream = build_stream(digits, scenario="class_incremental", experiences=5, class_order_seed=3)
    classes = [c for e in stream for c in e.classes]
    assert sorted(classes) == list(range(10))
    assert [len(e.classes) for e in stream] == [2] * 5
    # Seeded: the same seed gives the same order, another seed another one.
    again = build_stream(digits, experiences=5, class_order_seed=3)
    other = build_stream(digits, experiences=5, class_order_seed=4)
    assert again.class_order == stream.class_order != other.class_order
    train = digits.splits["train"]
    for experience in stream:
        # Views: indices into the shared tensors, exactly the rows of the experience's classes.
        assert experience.train.dtype == torch.long
        wanted = train[torch.isin(digits.y[train], torch.tensor(experience.classes))]
        assert torch.equal(experience.train, wanted)
        assert set(digits.y[experience.test].tolist()) == set(experience.classes)
    assert sum(len(e.train) for e in stream) == len(train)
    assert not stream.masked and not stream.remapped


def test_natural_and_explicit_class_orders(digits):
    natural = build_stream(digits, experiences=5, shuffle_classes=False)
    assert [e.classes for e in natural] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    explicit = build_stream(digits, experiences=2, class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert explicit[0].classes == (9, 8, 7, 6, 5)
    assert split_classes(list(range(10)), 3) == [(0, 1, 2, 3), (4, 5, 6), (7, 8, 9)]


def test_task_incremental_masks_outputs_to_the_task(digits):
    stream = build_stream(digits, scenario="task_incremental", experiences=5, shuffle_classes=False)
    assert stream.has_task_labels and stream.masked
    logits = torch.zeros(3, 10)
    logits[:, 9] = 5.0  # the unmasked argmax would be class 9
    targets = torch.tensor([2, 3, 2])
    masked, same = stream.read_outputs(logits, targets, 1)
    assert torch.equal(same, targets)
    assert torch.isinf(masked[:, [0, 1, 4, 5, 6, 7, 8, 9]]).all()
    assert masked.argmax(dim=1).tolist() == [2, 2, 2]


def test_split_domain_relabels_within_each_experience(digits):
    stream = build_stream(
        digits, scenario="domain_incremental", domain="split", experiences=5,
        shuffle_classes=False,
    )
    assert stream.remapped and not stream.has_task_labels
    logits = torch.randn(4, 10)
    _, targets = stream.read_outputs(logits, torch.tensor([4, 5, 4, 5]), 2)
    assert targets.tolist() == [0, 1, 0, 1]
    masked, _ = stream.read_outputs(logits, torch.tensor([4, 5, 4, 5]), 2)
    assert torch.isinf(masked[:, 2:]).all() and torch.isfinite(masked[:, :2]).all()


def test_permuted_domain_permutes_every_experience_but_the_first(digits):
    stream = build_stream(digits, scenario="domain_incremental", domain="permuted", experiences=3)
    x = digits.x[:5]
    assert torch.equal(stream[0].transform(x), x)
    permuted = stream[1].transform(x)
    assert not torch.equal(permuted, x)
    # A permutation: the same values, in another order, for every row.
    assert torch.equal(permuted.reshape(5, -1).sort(dim=1).values, x.reshape(5, -1).sort(dim=1).values)
    # Every experience sees all classes and the whole train split.
    assert all(len(e.classes) == 10 and len(e.train) == len(digits.splits["train"]) for e in stream)


def test_rotation_by_90_degrees_equals_rot90():
    image = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    rotated = RotateImages(90.0, (1, 4, 4))(image.reshape(1, 16)).reshape(1, 1, 4, 4)
    # grid_sample rotates the sampling grid: the picture turns the other way round from theta.
    candidates = [torch.rot90(image, k, dims=(2, 3)) for k in (1, 3)]
    assert any(torch.allclose(rotated, c, atol=1e-4) for c in candidates)
    assert torch.allclose(RotateImages(0.0, (1, 4, 4))(image.reshape(1, 16)), image.reshape(1, 16))


def test_permute_features_keeps_the_input_shape():
    x = torch.randn(2, 1, 2, 2)
    out = PermuteFeatures(torch.tensor([3, 2, 1, 0]))(x)
    assert out.shape == x.shape
    assert torch.equal(out.reshape(2, 4), x.reshape(2, 4).flip(1))


@pytest.mark.parametrize(
    ("protocol", "method", "needle"),
    [
        ({"experiences": 11}, "naive", "experiences = 11 but dataset 'digits' has only 10"),
        ({"scenario": "class_incremental"}, {"name": "ewc", "heads": "multi"},
         "heads = 'multi' needs task labels"),
        ({}, {"name": "replay", "buffer_size": 100000}, "buffer_size = 100000 is larger than"),
        ({"scenario": "stream_il"}, "naive", "protocol.scenario = 'stream_il'"),
        ({"scenario": "domain_incremental", "domain": "blurred"}, "naive",
         "protocol.domain = 'blurred'"),
        ({}, {"name": "agem", "patterns_per_experience": 5000}, "patterns_per_experience = 5000"),
        ({"class_order": [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]}, "naive",
         "class_order = [0, 0, 1, 2, 3, 4, 5, 6, 7, 8] must list each class 0..9"),
        ({"scenario": "domain_incremental", "domain": "split", "experiences": 3}, "naive",
         "do not divide into experiences = 3"),
        ({"eval_split": "nope"}, "naive", "eval_split = 'nope' is not a split of dataset"),
    ],
)
def test_bad_input_is_a_spec_error_before_any_folder(protocol, method, needle, tmp_path):
    """Declared options fail the spec check; what needs the data (the stream, the method's
    check of it) fails in the protocol's validate(run): both before any run folder exists."""
    spec = continual_spec(method, **protocol)
    spec["output"] = str(tmp_path)
    with pytest.raises(paralab.SpecError) as raised:
        paralab.run(spec)
    assert needle in str(raised.value)
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written


def test_rotated_domain_needs_images():
    from paralab.testing.kit import tiny_dataset

    dataset = tiny_dataset(n_features=5)
    with pytest.raises(ScenarioError, match="domain 'rotated' needs image inputs"):
        build_stream(dataset, scenario="domain_incremental", domain="rotated", experiences=2)


def test_unknown_option_is_a_spec_error():
    with pytest.raises(paralab.SpecError, match="epoch"):
        paralab.run(continual_spec("naive", epoch=3))
