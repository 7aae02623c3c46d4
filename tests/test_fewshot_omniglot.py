"""Few-shot on the real Omniglot files (skipped without PARALAB_DATA), and the papers."""

from __future__ import annotations

import pytest
import torch

import paralab
from paralab.data import load_dataset
from paralab_fewshot.episodes import EpisodeSampler, EpisodeShape, TaskBatch, split_classes
from paralab_fewshot.evaluation import lake_runs_batch
from tests.fewshot_helpers import fewshot_registry

# real data files; small models (see conftest's one_torch_thread)
pytestmark = [pytest.mark.data, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def omniglot(data_root):
    return load_dataset("omniglot", root=str(data_root / "omniglot"))


@pytest.fixture(scope="module")
def runs(data_root):
    return load_dataset("omniglot_runs", root=str(data_root / "omniglot"))


def test_omniglot_small_sets_give_242_characters_in_8_alphabets(omniglot):
    assert omniglot.info.n_classes == 242
    assert omniglot.x.shape[1:] == (1, 28, 28)
    counts = torch.bincount(omniglot.y)
    assert set(counts.tolist()) == {20}  # Greek and Latin, in both small sets, loaded once
    split = split_classes(omniglot, (0.6, 0.2, 0.2), seed=0)
    assert split.sizes() == {"meta_train": 145, "meta_val": 48, "meta_test": 49}


def test_each_drawing_is_loaded_once_although_two_sets_hold_it(omniglot):
    # Greek and Latin are in both small background zips as byte-identical files: loaded twice,
    # a support image's exact copy could be its own query.
    assert len(omniglot.x) == 4840
    assert len({row.numpy().tobytes() for row in omniglot.x}) == len(omniglot.x)
    assert omniglot.meta["duplicate_drawings_skipped"] == 1000
    assert torch.bincount(omniglot.y).tolist() == [20] * 242, "20 drawings per character"


def test_alphabet_split_keeps_alphabets_apart(omniglot):
    split = split_classes(omniglot, (0.5, 0.25, 0.25), seed=0, group_by="alphabet")
    alphabet = omniglot.features["alphabet"]
    first = {c: int(alphabet[omniglot.y == c][0]) for c in range(242)}
    groups = [
        {first[int(c)] for c in part}
        for part in (split.meta_train, split.meta_val, split.meta_test)
    ]
    assert [len(g) for g in groups] == [4, 2, 2]
    assert (
        not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    )


def test_twenty_way_five_shot_episodes_from_omniglot(omniglot):
    split = split_classes(omniglot, (0.6, 0.2, 0.2))
    sampler = EpisodeSampler(omniglot, split.meta_test, EpisodeShape(20, 5, 15), "meta_test")
    batch = TaskBatch.gather(omniglot, sampler.sample(8, torch.Generator().manual_seed(0)), 5)
    assert batch.support_x.shape == (8, 100, 1, 28, 28)
    assert batch.query_x.shape == (8, 300, 1, 28, 28)
    assert torch.all(torch.isin(omniglot.y[batch.query_indices], split.meta_test))


def test_lake_runs_are_20_tasks_of_20_way_one_shot(runs):
    batch = lake_runs_batch(runs)
    assert batch.support_x.shape == (20, 20, 1, 28, 28)
    assert batch.query_x.shape == (20, 20, 1, 28, 28)
    assert torch.equal(batch.support_y, torch.arange(20).expand(20, -1))
    # every class of a run has exactly one test image
    assert torch.equal(batch.query_y.sort(dim=1).values, torch.arange(20).expand(20, -1))
    assert torch.all(runs.features["role"][batch.support_indices] == 0)
    assert torch.all(runs.features["role"][batch.query_indices] == 1)


def test_protonet_on_omniglot_with_lake_runs_through_paralab_run(data_root):
    spec = {
        "dataset": {"name": "omniglot", "root": str(data_root / "omniglot")},
        "model": {"name": "conv4", "hidden": 8},
        "protocol": {
            "name": "episodic",
            "ways": 5,
            "shots": 1,
            "queries": 3,
            "meta_batch": 4,
            "meta_iterations": 4,
            "eval_every": 4,
            "val_episodes": 0,
            "eval_episodes": 40,
            "lake_runs": True,
        },
        "method": "protonet",
        "device": "cpu",
        "output": None,
    }
    result = paralab.run(spec, registry=fewshot_registry())
    assert result.metrics["lake_runs/episodes"] == 20
    assert result.metrics["meta_test/episodes"] == 40
    # even a barely trained Conv-4 beats chance on both (1/5 and 1/20)
    assert result.metrics["meta_test/accuracy"] > 0.3
    assert result.metrics["lake_runs/accuracy"] > 0.1


@pytest.mark.slow
def test_snell2017_quick_reproduction_runs_and_compares_with_the_paper(data_root, monkeypatch):
    from paralab.papers import reproduce

    monkeypatch.setenv("PARALAB_DATA", str(data_root))
    report = reproduce("snell2017_protonet", quick=True)
    rows = {row.metric: row for row in report.rows}
    # judged against the quick setting's own expected values, never the paper's 0.988
    assert rows["omniglot/5way1shot"].paper == 0.342
    ours = report.ours
    assert 0.2 < ours["omniglot/5way1shot"] <= 1.0  # above 5-way chance after 5 steps
    assert ours["omniglot/5way5shot"] > ours["omniglot/5way1shot"]
    assert report.passed, report.render()
    assert "0.988" not in report.render()


def test_finn2017_paper_pieces(data_root):
    """The MAML paper's quick run is too slow for a unit test; its pieces are checked here."""
    import importlib.util
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "papers" / "finn2017_maml"
    spec = importlib.util.spec_from_file_location("finn_reproduce", folder / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from paralab_fewshot.reproduction import omniglot_spec

    built = omniglot_spec(
        {"name": "maml"},
        shots=1,
        iterations=2,
        meta_batch=2,
        queries=1,
        hidden=8,
        eval_episodes=10,
        lake_runs=False,
        out_features=5,
    )
    built["dataset"] = {"name": "omniglot", "root": str(data_root / "omniglot")}
    built["protocol"]["eval_meta_batch"] = 10
    result = paralab.run(built, registry=fewshot_registry())
    assert result.metrics["meta_test/episodes"] == 10
    assert 0 <= result.metrics["meta_test/accuracy"] <= 1
    assert callable(module.reproduce)
