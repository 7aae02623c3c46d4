"""Disparities as plain metrics (one number per evaluation), for specs that want no audit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from paralab import Metric
from paralab_fairness.auditor import as_names, check_positive_class, resolve_sensitive
from paralab_fairness.table import fairness_table

if TYPE_CHECKING:
    from paralab import Predictions, RunContext, SharedDataset


class DisparityMetric(Metric):
    """One disparity of the fairness table over the groups of the ``sensitive`` features (by
    default the dataset's first declared one; several: their intersection).

    Options are declared in :mod:`paralab_fairness`; :meth:`validate` checks them against the
    run's dataset, so an unknown feature fails before training, not at the first evaluation.
    """

    def __init__(self, name: str, sensitive: Sequence[str] | str, positive_class: int) -> None:
        self.name = name
        self.sensitive = as_names(sensitive)
        self.positive_class = positive_class

    def validate(self, run: RunContext) -> None:
        resolve_sensitive(self.sensitive, run.dataset, f"metric {self.name}")
        check_positive_class(self.positive_class, run.dataset, f"metric {self.name}")

    def __call__(self, predictions: Predictions, dataset: SharedDataset) -> float:
        names = resolve_sensitive(self.sensitive, dataset, f"metric {self.name}")
        names = names if self.sensitive else names[:1]
        table = fairness_table(
            predictions.targets, predictions.labels,
            {feature: predictions.feature(feature) for feature in names},
            categories=dataset.categories, positive_class=self.positive_class,
        )
        return table.disparities[self.name]


def demographic_parity_difference_metric(
    sensitive: Sequence[str] | str = (), positive_class: int = 1
) -> DisparityMetric:
    return DisparityMetric("demographic_parity_difference", sensitive, positive_class)


def equalized_odds_difference_metric(
    sensitive: Sequence[str] | str = (), positive_class: int = 1
) -> DisparityMetric:
    return DisparityMetric("equalized_odds_difference", sensitive, positive_class)
