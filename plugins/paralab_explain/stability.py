"""Attribution stability across seeds: do retrained models agree on what matters?

An explanation that changes with the training seed (the initialisation, the batch order) says
more about the seed than about the task. Given the feature importances (mean |attribution| per
feature, what the ``attributions`` auditor reports) of runs that differ only by seed, this
measures how far they agree:

* ``rank_correlation``: Spearman's rank correlation of the importances, averaged over every pair
  of seeds (``rank_correlation_min``: the least agreeing pair); 1 means every seed ranks the
  features identically;
* ``top_k_overlap``: the mean Jaccard overlap of each pair's ``top`` most important features;
* ``relative_spread``: per feature, the standard deviation of its importance over the seeds
  divided by its mean, averaged over features (0: identical importances).

:func:`seed_stability` reads the importances out of each seed's :class:`paralab.Result`
(``paralab.run_seeds`` or a study's runs), so it is the metric over seeds of the researcher's
loop: run the seeds, then score the explanations' agreement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import torch

from paralab_explain.errors import ExplainError
from paralab_explain.sanity import rank_correlation


def importance_stability(importances: Sequence[Mapping[str, float]], *, top: int = 5
                         ) -> dict[str, Any]:
    """The agreement of several seeds' importances (module docstring); at least two, over the
    same features."""
    if len(importances) < 2:
        raise ExplainError(f"stability needs the importances of at least 2 seeds, got "
                           f"{len(importances)}")
    names = list(importances[0])
    if any(set(entry) != set(names) for entry in importances):
        raise ExplainError("stability: the seeds' importances name different features")
    values = torch.tensor([[float(entry[name]) for name in names] for entry in importances],
                          dtype=torch.float64)
    pairs = list(combinations(range(len(values)), 2))
    first = values[[a for a, _ in pairs]]
    second = values[[b for _, b in pairs]]
    correlations = rank_correlation(first, second)
    k = min(top, len(names))
    tops = [set(row.argsort(descending=True)[:k].tolist()) for row in values]
    overlaps = [len(tops[a] & tops[b]) / len(tops[a] | tops[b]) for a, b in pairs]
    mean = values.mean(dim=0)
    spread = values.std(dim=0) / mean.where(mean > 0, torch.ones_like(mean))
    return {
        "seeds": len(values),
        "rank_correlation": float(correlations.mean()),
        "rank_correlation_min": float(correlations.min()),
        "top_k": k,
        "top_k_overlap": sum(overlaps) / len(overlaps),
        "relative_spread": float(spread.mean()),
        "importance_mean": {name: float(v) for name, v in zip(names, mean)},
    }


def seed_stability(results: Sequence[Any], *, split: str = "test", auditor: str = "attributions",
                   top: int = 5) -> dict[str, Any]:
    """:func:`importance_stability` of the last evaluation's importances in each result (the
    ``<auditor>/<split>`` audit of its last phase that has one)."""
    key = f"{auditor}/{split}"
    importances = []
    for position, result in enumerate(results):
        audits = [phase["audits"][key] for phase in result.phases
                  if key in phase.get("audits", {})]
        if not audits or "importance" not in audits[-1]:
            raise ExplainError(f"stability: result {position} has no {key!r} audit with "
                               f"importances; add the {auditor!r} auditor to the spec")
        importances.append(audits[-1]["importance"])
    return importance_stability(importances, top=top)


def attribution_stability(spec: Any, seeds: Sequence[int], *, split: str = "test",
                          top: int = 5, registry: Any = None) -> dict[str, Any]:
    """Run ``spec`` once per seed (``paralab.run_seeds``) and score the seeds' agreement."""
    import paralab

    results = paralab.run_seeds(spec, seeds, registry=registry)
    return seed_stability(results, split=split, top=top)
