"""The ``estimator`` protocol and fairlearn's mitigations as its methods.

fairlearn's reductions (``ExponentiatedGradient``, ``GridSearch``) and post-processing
(``ThresholdOptimizer``) act on scikit-learn estimators, not on torch modules. The
``estimator`` protocol fits one on the train split (it declares ``uses_model=False``: a spec
omits ``model``) and hands its predictions to ``run.evaluate``, so
every metric and auditor of paralab, the fairness audit included, reads them as it reads a
neural network's. The methods are thin: fairlearn does the mitigation; each implements
:class:`paralab.EstimatorMethod` (``fit``, ``predict``), the interface the protocol declares.

Randomized classifiers (exponentiated gradient, threshold optimizer) predict by sampling: the
labels are their seeded samples, and the probabilities their expected predictions (what the
paper's error/disparity trade-off is computed from).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from paralab import EstimatorMethod, Predictions, Protocol
from paralab_fairness.auditor import as_names, check_positive_class, resolve_sensitive
from paralab_fairness.choices import (
    EQUALIZED_ODDS_OBJECTIVES,
    ESTIMATORS,
    MOMENTS,
)

if TYPE_CHECKING:
    from paralab import RunContext


DEFAULT_NETWORK = {"name": "mlp", "hidden": [32]}
"""The ``paralab_model`` estimator's model when ``network`` is unset."""
DEFAULT_TRAINER = {"name": "adam", "lr": 0.01}
"""Its training method when ``trainer`` is unset."""


def make_estimator(name: str, seed: int, max_iter: int, network: Any = None,
                   trainer: Any = None, epochs: int = 20, batch_size: int = 128,
                   registry: Any = None) -> Any:
    """A fresh scikit-learn estimator by name (all accept ``sample_weight``, as reductions need);
    ``paralab_model`` is a paralab model trained by a paralab method
    (:class:`paralab_fairness.torch_estimator.ParalabClassifier`)."""
    if name == "paralab_model":
        from paralab_fairness.torch_estimator import ParalabClassifier, Shared

        return ParalabClassifier(model=network or DEFAULT_NETWORK,
                                 method=trainer or DEFAULT_TRAINER, epochs=epochs,
                                 batch_size=batch_size, seed=seed,
                                 registry=None if registry is None else Shared(registry))
    if name == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=max_iter)
    if name == "decision_tree":
        from sklearn.tree import DecisionTreeClassifier

        return DecisionTreeClassifier(max_depth=6, random_state=seed)
    if name == "gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=max_iter, random_state=seed)
    raise ValueError(f"protocol estimator: estimator = {name!r} is not one of {list(ESTIMATORS)}")


def moment(constraint: str, difference_bound: float | None, owner: str) -> Any:
    """The fairlearn ``Moment`` for a constraint name."""
    from fairlearn import reductions

    classes = {
        "demographic_parity": reductions.DemographicParity,
        "equalized_odds": reductions.EqualizedOdds,
        "true_positive_rate_parity": reductions.TruePositiveRateParity,
        "false_positive_rate_parity": reductions.FalsePositiveRateParity,
        "error_rate_parity": reductions.ErrorRateParity,
    }
    if constraint not in classes:
        raise ValueError(f"{owner}: constraint = {constraint!r} is not one of {list(MOMENTS)}")
    if difference_bound is None:
        return classes[constraint]()
    return classes[constraint](difference_bound=difference_bound)


class Unmitigated(EstimatorMethod):
    """The estimator alone: the baseline every mitigation is compared with."""

    def fit(self, estimator: Any, x: np.ndarray, y: np.ndarray, groups: np.ndarray,
            seed: int) -> None:
        self.model = estimator.fit(x, y)

    def predict(self, x: np.ndarray, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return self.model.predict(x), self.model.predict_proba(x)[:, 1]


class ExponentiatedGradientMethod(EstimatorMethod):
    """fairlearn's ``ExponentiatedGradient`` (Agarwal et al. 2018): a randomized classifier.

    ``difference_bound`` is the constraint's allowed gap (the paper's epsilon; fairlearn's
    default 0.01 when ``None``); ``eps`` is fairlearn's own parameter, which since fairlearn
    0.7 only sets the bound ``1/eps`` on the Lagrange multipliers.
    """

    def __init__(self, constraint: str = "demographic_parity", difference_bound: float | None = None,
                 eps: float = 0.01, max_iter: int = 50) -> None:
        self.constraint, self.difference_bound = constraint, difference_bound
        self.eps, self.max_iter = eps, max_iter

    def fit(self, estimator: Any, x: np.ndarray, y: np.ndarray, groups: np.ndarray,
            seed: int) -> None:
        from fairlearn.reductions import ExponentiatedGradient

        self.model = ExponentiatedGradient(
            estimator,
            moment(self.constraint, self.difference_bound, "method exponentiated_gradient"),
            eps=self.eps, max_iter=self.max_iter,
        ).fit(x, y, sensitive_features=groups)

    def predict(self, x: np.ndarray, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return self.model.predict(x, random_state=seed), self.model._pmf_predict(x)[:, 1]


class GridSearchMethod(EstimatorMethod):
    """fairlearn's ``GridSearch`` over Lagrange multipliers: one deterministic classifier."""

    def __init__(self, constraint: str = "demographic_parity", difference_bound: float | None = None,
                 grid_size: int = 10, grid_limit: float = 2.0,
                 constraint_weight: float = 0.5) -> None:
        self.difference_bound = difference_bound
        self.constraint, self.grid_size = constraint, grid_size
        self.grid_limit, self.constraint_weight = grid_limit, constraint_weight

    def fit(self, estimator: Any, x: np.ndarray, y: np.ndarray, groups: np.ndarray,
            seed: int) -> None:
        from fairlearn.reductions import GridSearch

        self.model = GridSearch(
            estimator, moment(self.constraint, self.difference_bound, "method grid_search"),
            grid_size=self.grid_size, grid_limit=self.grid_limit,
            constraint_weight=self.constraint_weight,
        ).fit(x, y, sensitive_features=groups)

    def predict(self, x: np.ndarray, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return self.model.predict(x), self.model.predict_proba(x)[:, 1]


class ThresholdOptimizerMethod(EstimatorMethod):
    """fairlearn's ``ThresholdOptimizer`` (Hardt et al. 2016): group-specific thresholds."""

    def __init__(self, constraint: str = "demographic_parity",
                 objective: str = "accuracy_score") -> None:
        self.constraint, self.objective = constraint, objective

    def validate(self, run: RunContext) -> None:
        """fairlearn takes only accuracy objectives under equalized odds (it would raise in
        ``fit``, after the run started)."""
        if self.constraint == "equalized_odds" and self.objective not in EQUALIZED_ODDS_OBJECTIVES:
            raise ValueError(
                f"objective = {self.objective!r} cannot be maximized under constraint = "
                f"'equalized_odds'; use one of {', '.join(EQUALIZED_ODDS_OBJECTIVES)}, or "
                "another constraint"
            )

    def fit(self, estimator: Any, x: np.ndarray, y: np.ndarray, groups: np.ndarray,
            seed: int) -> None:
        from fairlearn.postprocessing import ThresholdOptimizer

        self.model = ThresholdOptimizer(
            estimator=estimator, constraints=self.constraint, objective=self.objective,
            predict_method="predict_proba",
        ).fit(x, y, sensitive_features=groups)

    def predict(self, x: np.ndarray, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        labels = self.model.predict(x, sensitive_features=groups, random_state=seed)
        return labels, self.model._pmf_predict(x, sensitive_features=groups)[:, 1]


class EstimatorProtocol(Protocol):
    """Fit a scikit-learn estimator (through the run's method) on one split; evaluate others.

    One phase, ``fit`` 0. The dataset must be binary or ``positive_class`` names the class that
    becomes 1 (one-vs-rest). ``sensitive`` (default: the dataset's declared features) are the
    groups the mitigation constrains; several are constrained as their intersection.

    The run's method is a :class:`paralab.EstimatorMethod` (the host checks it at build). The
    protocol trains no torch model and adds no loss terms (its spec declares both), so a spec
    naming a model or a ``fairness_penalty`` under it is rejected before anything is built.
    Options are declared in :mod:`paralab_fairness`; :meth:`validate` checks them on the data.
    """

    def __init__(
        self,
        estimator: str = "logistic_regression",
        max_iter: int = 1000,
        sensitive: Sequence[str] | str = (),
        positive_class: int = 1,
        train_split: str = "train",
        eval_splits: Sequence[str] = ("test",),
        network: Mapping[str, Any] | str | None = None,
        trainer: Mapping[str, Any] | str | None = None,
        epochs: int = 20,
        batch_size: int = 128,
    ) -> None:
        self.estimator = estimator
        self.network, self.trainer = network, trainer
        self.epochs, self.batch_size = epochs, batch_size
        self.max_iter = max_iter
        self.sensitive = as_names(sensitive)
        self.positive_class = positive_class
        self.train_split = train_split
        self.eval_splits = tuple(eval_splits)
        self._names: tuple[str, ...] = ()

    def validate(self, run: RunContext) -> None:
        """Before anything is fitted: the sensitive features, ``positive_class``, the splits,
        and two classes in the train split once ``positive_class`` is taken as positive."""
        dataset = run.dataset
        self._check_torch_options(run)
        self._names = resolve_sensitive(self.sensitive, dataset, "protocol estimator")
        check_positive_class(self.positive_class, dataset, "protocol estimator")
        dataset.check_splits(self.train_split, self.eval_splits)
        targets = dataset.y[dataset.split(self.train_split).indices] == self.positive_class
        if int(targets.sum()) in (0, len(targets)):
            raise ValueError(
                f"protocol estimator: split {self.train_split!r} has only one class once "
                f"positive_class = {self.positive_class} is taken as positive"
            )

    def _check_torch_options(self, run: RunContext) -> None:
        """``network``/``trainer`` name registered components with valid options. (Set with
        another estimator they are a spec error already: the protocol's ``used_when``.)"""
        from paralab_fairness.torch_estimator import check_components

        if self.estimator == "paralab_model":
            check_components(self.network or DEFAULT_NETWORK, self.trainer or DEFAULT_TRAINER,
                             "protocol estimator", run.registry)

    def _arrays(self, run: RunContext, split: str, names: tuple[str, ...]
                ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
        dataset = run.dataset
        indices = dataset.split(split).indices
        x = dataset.x[indices].reshape(len(indices), -1).double().cpu().numpy()
        y = (dataset.y[indices] == self.positive_class).long().cpu().numpy()
        groups = torch.stack([dataset.features[n][indices] for n in names], dim=1)
        return indices, x, y, groups.cpu().numpy()

    def execute(self, run: RunContext) -> None:
        method: EstimatorMethod = run.method
        names = self._names or resolve_sensitive(self.sensitive, run.dataset, "protocol estimator")
        _, x, y, groups = self._arrays(run, self.train_split, names)
        with run.phase("fit", 0, estimator=self.estimator, sensitive=list(names)):
            estimator = make_estimator(self.estimator, run.seed, self.max_iter, self.network,
                                       self.trainer, self.epochs, self.batch_size,
                                       run.registry)
            method.fit(estimator, x, y, groups, run.seed)
            for split in self.eval_splits:
                indices, x_eval, _, groups_eval = self._arrays(run, split, names)
                labels, probability = method.predict(x_eval, groups_eval, run.seed)
                run.evaluate(
                    split, predictions=self._predictions(run, split, indices, labels, probability)
                )

    def _predictions(self, run: RunContext, split: str, indices: torch.Tensor, labels: np.ndarray,
                     probability: np.ndarray) -> Predictions:
        """Binary outputs placed in the dataset's class space (positive vs the rest)."""
        dataset = run.dataset
        n_classes = dataset.info.n_classes
        device = dataset.device
        p = torch.as_tensor(np.asarray(probability, dtype=np.float64), device=device)
        p = p.clamp(1e-12, 1 - 1e-12)
        negative = 0 if self.positive_class != 0 else 1
        logits = torch.full((len(indices), n_classes), -30.0, dtype=torch.float64, device=device)
        logits[:, self.positive_class] = p.log()
        logits[:, negative] = (1 - p).log()
        predicted = torch.as_tensor(np.asarray(labels).astype(np.int64), device=device)
        drawn = torch.where(predicted == 1, self.positive_class, negative)
        return Predictions(
            logits=logits.float(), targets=dataset.y[indices], indices=indices,
            dataset=dataset, split=split, predicted=drawn,
        )
