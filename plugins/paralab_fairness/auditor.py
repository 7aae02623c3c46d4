"""The ``fairness`` auditor: per-group metrics and disparities at every evaluation of any run.

It reads only the shared :class:`paralab.Predictions` (labels, probabilities and the rows'
sensitive features), so it audits a supervised, federated, continual, few-shot or quantum run
alike. It keeps every evaluation point, so :meth:`FairnessAuditor.finalize` can draw how the
disparities moved over a run (after each epoch, experience or round), not only where they
ended.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from paralab import Auditor
from paralab_fairness import MIN_GROUP_SIZE
from paralab_fairness.multiclass import macro_table
from paralab_fairness.plugin_metrics import GroupedMetric, add_metrics, build_metrics
from paralab_fairness.table import FairnessTable, fairness_table

if TYPE_CHECKING:
    from paralab import Phase, Predictions, RunContext, SharedDataset


@dataclass
class AuditPoint:
    """One evaluation point's audit: where in the run, which split, the tables."""

    phase_kind: str
    phase_index: int
    split: str
    tables: list[FairnessTable]


def resolve_sensitive(
    requested: Sequence[str], dataset: SharedDataset, owner: str
) -> tuple[str, ...]:
    """The sensitive features to use: those requested, else the dataset's declared ones.

    :raises ValueError: naming the option, the dataset and its features, before training.
    """
    names = tuple(requested) or tuple(dataset.sensitive)
    if not names:
        raise ValueError(
            f"{owner}: dataset {dataset.name!r} declares no sensitive features; set the option "
            f"sensitive = [...] to some of its features: {sorted(dataset.features)}"
        )
    missing = [name for name in names if name not in dataset.features]
    if missing:
        raise ValueError(
            f"{owner}: option sensitive names {missing}, which dataset {dataset.name!r} does "
            f"not have; its features: {sorted(dataset.features)} (declared sensitive: "
            f"{list(dataset.sensitive)})"
        )
    for name in names:
        values = dataset.features[name]
        if values.dtype.is_floating_point:
            raise ValueError(
                f"{owner}: feature {name!r} of dataset {dataset.name!r} is continuous "
                f"({values.dtype}); a sensitive feature must be integer group codes"
            )
    return names


def check_reference(
    reference: Mapping[str, str], groupings: Sequence[tuple[str, ...]], dataset: SharedDataset
) -> None:
    """Each key of the ``reference`` option is a grouping the auditor audits and each value
    one of its group labels (when the dataset names its codes).

    :raises ValueError: naming the key or label and what would be valid.
    """
    keys = ["*".join(grouping) for grouping in groupings]
    for key, label in reference.items():
        if key not in keys:
            raise ValueError(
                f"auditor fairness: option reference names grouping {key!r}, which this audit "
                f"does not have; its groupings: {keys}"
            )
        if not isinstance(label, str) or not label:
            raise ValueError(
                f"auditor fairness: option reference[{key!r}] = {label!r}; it must be a group "
                "label (a string)"
            )
        features = key.split("*")
        if not all(dataset.categories.get(name) for name in features):
            continue  # labels are the codes as strings; the table warns if it is absent
        labels = [" & ".join(parts) for parts in itertools.product(
            *(tuple(str(v) for v in dataset.categories[name]) for name in features))]
        if label not in labels:
            shown = labels if len(labels) <= 12 else [*labels[:12], "..."]
            raise ValueError(
                f"auditor fairness: option reference[{key!r}] = {label!r} is not a group of "
                f"{key}; its groups: {shown}"
            )


def as_names(sensitive: Sequence[str] | str) -> tuple[str, ...]:
    """The ``sensitive`` option as a tuple of names (one name may be given as a string)."""
    return (sensitive,) if isinstance(sensitive, str) else tuple(sensitive)


def check_positive_class(positive_class: int, dataset: SharedDataset, owner: str) -> None:
    """:raises ValueError: ``positive_class`` is not a class of ``dataset``."""
    n_classes = dataset.info.n_classes
    if positive_class >= n_classes:
        raise ValueError(
            f"{owner}: positive_class = {positive_class} but dataset {dataset.name!r} has "
            f"{n_classes} classes {list(dataset.class_names)}; use one of 0..{n_classes - 1}"
        )


def positive_scores(predictions: Predictions, positive_class: int) -> torch.Tensor | None:
    """The probability of the positive class per row, when the model outputs one."""
    if predictions.n_classes <= positive_class:
        return None
    return predictions.probabilities[:, positive_class]


class FairnessAuditor(Auditor):
    """Audits each evaluation: by every sensitive feature and (optionally) their intersection.

    Options are declared (and checked) in :mod:`paralab_fairness`; :meth:`validate` checks them
    against the run's data.
    """

    def __init__(
        self,
        sensitive: Sequence[str] | str = (),
        intersectional: bool = True,
        positive_class: int = 1,
        bootstrap: int = 200,
        confidence: float = 0.95,
        bins: int = 10,
        seed: int = 0,
        plots: bool = True,
        min_group_size: int = MIN_GROUP_SIZE,
        alpha: float = 2.0,
        reference: Mapping[str, str] | None = None,
        metrics: Sequence[str | Mapping[str, Any]] = (),
        metric_bootstrap: int = 0,
        multiclass: str = "positive_class",
        counterfactual: bool = False,
    ) -> None:
        self.sensitive = as_names(sensitive)
        self.intersectional = intersectional
        self.positive_class = positive_class
        self.bootstrap = bootstrap
        self.confidence = confidence
        self.bins = bins
        self.seed = seed
        self.plots = plots
        self.min_group_size = min_group_size
        self.alpha = float(alpha)
        self.reference = dict(reference or {})
        self.metric_entries = list(metrics)
        self.metric_bootstrap = metric_bootstrap
        self.multiclass = multiclass
        self.counterfactual = counterfactual
        self.plugin_metrics: list[GroupedMetric] = []
        self.history: list[AuditPoint] = []

    def validate(self, run: RunContext) -> None:
        """The sensitive features and ``positive_class`` against the run's dataset."""
        names = resolve_sensitive(self.sensitive, run.dataset, "auditor fairness")
        check_positive_class(self.positive_class, run.dataset, "auditor fairness")
        if self.metric_bootstrap and not self.metric_entries:
            raise ValueError(
                f"auditor fairness: metric_bootstrap = {self.metric_bootstrap} resamples the "
                "group differences of the `metrics` option's metrics, and metrics is empty: it "
                "would do nothing; list metrics (metrics = ['accuracy']) or remove it (the "
                "built-in metrics' intervals are `bootstrap`)")
        check_reference(self.reference, self.groupings(names), run.dataset)
        self.plugin_metrics = build_metrics(self.metric_entries, run)
        if self.counterfactual:
            from paralab_fairness.counterfactual import check_counterfactual

            check_counterfactual(run, names)

    def groupings(self, names: tuple[str, ...]) -> list[tuple[str, ...]]:
        single = [(name,) for name in names]
        return single + [names] if self.intersectional and len(names) > 1 else single

    def tables(self, predictions: Predictions) -> list[FairnessTable]:
        """The audit of one set of predictions, one table per grouping."""
        dataset = predictions.dataset
        if dataset is None:
            raise ValueError("auditor fairness: these predictions carry no dataset")
        names = resolve_sensitive(self.sensitive, dataset, "auditor fairness")
        features = {name: predictions.feature(name) for name in names}
        if self.metric_entries and not self.plugin_metrics:
            raise RuntimeError("auditor fairness: validate(run) builds the option metrics; "
                               "call it before auditing")
        classes = (list(range(dataset.info.n_classes)) if self.multiclass == "one_vs_rest"
                   else [self.positive_class])
        tables = []
        for position, grouping in enumerate(self.groupings(names)):
            seed = self.seed + position + 7919 * len(self.history)
            rows = {name: features[name] for name in grouping}
            for positive in classes:
                table = fairness_table(
                    predictions.targets,
                    predictions.labels,
                    rows,
                    scores=positive_scores(predictions, positive),
                    categories=dataset.categories,
                    positive_class=positive,
                    bootstrap=self.bootstrap,
                    confidence=self.confidence,
                    seed=seed + (104729 * positive if len(classes) > 1 else 0),
                    bins=self.bins,
                    min_group_size=self.min_group_size,
                    alpha=self.alpha,
                    reference=self.reference.get("*".join(grouping)),
                )
                if self.multiclass == "one_vs_rest":
                    table.variant = str(dataset.class_names[positive])
                tables.append(table)
            if self.multiclass == "one_vs_rest":
                tables.append(macro_table(
                    predictions.targets, predictions.labels, rows, dataset.info.n_classes,
                    categories=dataset.categories, bootstrap=self.bootstrap,
                    confidence=self.confidence, seed=seed, min_group_size=self.min_group_size,
                    alpha=self.alpha, class_names=dataset.class_names))
            add_metrics(tables[-1], self.plugin_metrics, predictions, dataset,
                        bootstrap=self.metric_bootstrap, confidence=self.confidence, seed=seed)
        return tables

    def audit(self, run: RunContext, phase: Phase | None, predictions: Predictions) -> dict[str, Any]:
        tables = self.tables(predictions)
        self.history.append(
            AuditPoint(
                phase_kind=phase.kind if phase is not None else "",
                phase_index=phase.index if phase is not None else len(self.history),
                split=predictions.split,
                tables=tables,
            )
        )
        out: dict[str, Any] = {table.key: table.to_dict() for table in tables}
        if self.counterfactual:
            from paralab_fairness.counterfactual import flip_audit

            names = resolve_sensitive(self.sensitive, run.dataset, "auditor fairness")
            out["counterfactual"] = flip_audit(run, predictions, names, self.positive_class)
        return out

    def finalize(self, run: RunContext) -> dict[str, Any]:
        """Write the table and plots to the run's folder; return the last and the history."""
        from paralab_fairness.report import write_report

        last: dict[str, Any] = {}
        for point in self.history:
            last[point.split] = {t.key: t.disparities for t in point.tables}
        history = [
            {
                "phase": point.phase_kind,
                "index": point.phase_index,
                "split": point.split,
                **{t.key: t.disparities for t in point.tables},
            }
            for point in self.history
        ]
        files: dict[str, str] = {}
        if run.writer.enabled and self.history:
            files = write_report(self.history, run.output_dir, plots=self.plots)
            for name, file in files.items():
                run.result.artifacts[f"fairness_{name}"] = file
        return {"evaluations": len(self.history), "last": last, "history": history, "files": files}
