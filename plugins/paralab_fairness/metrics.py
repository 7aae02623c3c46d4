"""Disparities as plain metrics (one number per evaluation), for specs that want no audit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from paralab_fairness.auditor import resolve_sensitive
from paralab_fairness.table import fairness_table

if TYPE_CHECKING:
    from paralab.data import SharedDataset
    from paralab.evaluation import Predictions


def _disparity_metric(
    name: str, sensitive: Sequence[str], positive_class: int
) -> Callable[[Predictions, SharedDataset], float]:
    if isinstance(sensitive, str):
        sensitive = [sensitive]

    def metric(predictions: Predictions, dataset: SharedDataset) -> float:
        names = resolve_sensitive(sensitive, dataset, f"metric {name}")
        names = names if sensitive else names[:1]
        table = fairness_table(
            predictions.targets, predictions.labels,
            {feature: predictions.feature(feature) for feature in names},
            categories=dataset.categories, positive_class=positive_class,
        )
        return table.disparities[name]

    return metric


def demographic_parity_difference_metric(
    sensitive: Sequence[str] = (), positive_class: int = 1
) -> Callable[[Predictions, SharedDataset], float]:
    return _disparity_metric("demographic_parity_difference", sensitive, positive_class)


def equalized_odds_difference_metric(
    sensitive: Sequence[str] = (), positive_class: int = 1
) -> Callable[[Predictions, SharedDataset], float]:
    return _disparity_metric("equalized_odds_difference", sensitive, positive_class)
