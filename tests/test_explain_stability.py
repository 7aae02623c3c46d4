"""Attribution stability across seeds: the pairwise Spearman correlation equals scipy's, the
overlap and spread behave at their extremes, and runs of several seeds are scored end to end."""

from __future__ import annotations

from itertools import combinations

import pytest

import paralab
import paralab_explain
from paralab.testing import TinyDataPlugin, isolated_registry
from paralab_explain.errors import ExplainError
from paralab_explain.stability import importance_stability, seed_stability


def test_pairwise_rank_correlation_equals_scipy_and_overlap_counts_the_top_features():
    stats = pytest.importorskip("scipy.stats")
    seeds = [{"a": 0.5, "b": 0.1, "c": 0.3, "d": 0.2},
             {"a": 0.4, "b": 0.2, "c": 0.35, "d": 0.05},
             {"a": 0.1, "b": 0.6, "c": 0.2, "d": 0.3}]
    ours = importance_stability(seeds, top=2)
    names = list(seeds[0])
    expected = [stats.spearmanr([s[n] for n in names], [t[n] for n in names]).statistic
                for s, t in combinations(seeds, 2)]
    assert ours["rank_correlation"] == pytest.approx(sum(expected) / 3, abs=1e-12)
    assert ours["rank_correlation_min"] == pytest.approx(min(expected), abs=1e-12)
    # top 2: {a, c}, {a, c}, {b, d}: overlaps 1, 0, 0
    assert ours["top_k_overlap"] == pytest.approx(1 / 3)
    same = importance_stability([seeds[0], dict(seeds[0])])
    assert same["rank_correlation"] == pytest.approx(1.0) and same["relative_spread"] == 0.0
    assert same["top_k_overlap"] == 1.0


def test_too_few_seeds_or_other_features_are_errors():
    with pytest.raises(ExplainError, match="at least 2"):
        importance_stability([{"a": 1.0}])
    with pytest.raises(ExplainError, match="different features"):
        importance_stability([{"a": 1.0, "b": 2.0}, {"a": 1.0, "c": 2.0}])


SPEC = {"dataset": "wine", "model": {"name": "mlp", "hidden": [16]}, "device": "cpu",
        "output": None, "protocol": {"name": "supervised", "epochs": 10, "batch_size": 32},
        "method": {"name": "adam", "lr": 0.01},
        "auditors": [{"name": "attributions", "method": "saliency", "rows": 16,
                      "plots": False}]}


def _registry():
    return isolated_registry(("paralab_tiny", TinyDataPlugin()),
                             ("paralab_explain", paralab_explain))


def test_seeds_of_one_spec_are_scored_and_a_repeated_seed_agrees_exactly():
    results = paralab.run_seeds(SPEC, [0, 1, 2], registry=_registry(), vectorize=False)
    report = seed_stability(results, top=3)
    assert report["seeds"] == 3
    assert -1.0 <= report["rank_correlation_min"] <= report["rank_correlation"] < 1.0
    assert 0.0 <= report["top_k_overlap"] <= 1.0
    assert report["relative_spread"] > 0.0
    repeated = paralab.run_seeds(SPEC, [0, 0], registry=_registry(), vectorize=False)
    assert seed_stability(repeated)["rank_correlation"] == pytest.approx(1.0)
    with pytest.raises(ExplainError, match="attributions/clients"):
        seed_stability(results, split="clients")
