"""The ``estimator`` protocol and fairlearn's mitigations as its methods.

fairlearn's reductions (``ExponentiatedGradient``, ``GridSearch``) and post-processing
(``ThresholdOptimizer``) act on scikit-learn estimators, not on torch modules. The
``estimator`` protocol fits one on the train split (it declares ``uses_model=False``: a spec
omits ``model``) and hands its predictions to ``run.evaluate``, so
every metric and auditor of paralab, the fairness audit included, reads them as it reads a
neural network's. The methods are thin: fairlearn does the mitigation.

Randomized classifiers (exponentiated gradient, threshold optimizer) predict by sampling: the
labels are their seeded samples, and the probabilities their expected predictions (what the
paper's error/disparity trade-off is computed from).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from paralab.evaluation import Predictions

if TYPE_CHECKING:
    from paralab.context import RunContext

ESTIMATORS = ("logistic_regression", "decision_tree", "gradient_boosting")
MOMENTS = ("demographic_parity", "equalized_odds", "true_positive_rate_parity",
           "false_positive_rate_parity", "error_rate_parity")
THRESHOLD_CONSTRAINTS = ("demographic_parity", "equalized_odds", "true_positive_rate_parity",
                         "false_positive_rate_parity", "true_negative_rate_parity",
                         "false_negative_rate_parity")


def make_estimator(name: str, seed: int, max_iter: int) -> Any:
    """A fresh scikit-learn estimator by name (all accept ``sample_weight``, as reductions need)."""
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


class EstimatorMethod:
    """The method interface of the ``estimator`` protocol: fit, then predict (labels, P(y=1))."""

    def fit(self, estimator: Any, x: np.ndarray, y: np.ndarray, groups: np.ndarray,
            seed: int) -> None:
        raise NotImplementedError

    def predict(self, x: np.ndarray, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


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
        moment(constraint, difference_bound, "method exponentiated_gradient")
        if eps <= 0:
            raise ValueError(f"method exponentiated_gradient: eps must be > 0, got {eps}")
        if difference_bound is not None and difference_bound <= 0:
            raise ValueError(
                f"method exponentiated_gradient: difference_bound must be > 0, got {difference_bound}"
            )
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
        moment(constraint, difference_bound, "method grid_search")
        self.difference_bound = difference_bound
        if grid_size < 1:
            raise ValueError(f"method grid_search: grid_size must be >= 1, got {grid_size}")
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
        if constraint not in THRESHOLD_CONSTRAINTS:
            raise ValueError(
                f"method threshold_optimizer: constraint = {constraint!r} is not one of "
                f"{list(THRESHOLD_CONSTRAINTS)}"
            )
        self.constraint, self.objective = constraint, objective

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


class EstimatorProtocol:
    """Fit a scikit-learn estimator (through the run's method) on one split; evaluate others.

    One phase, ``fit`` 0. The dataset must be binary or ``positive_class`` names the class that
    becomes 1 (one-vs-rest). ``sensitive`` (default: the dataset's declared features) are the
    groups the mitigation constrains; several are constrained as their intersection.
    """

    def __init__(
        self,
        estimator: str = "logistic_regression",
        max_iter: int = 1000,
        sensitive: Sequence[str] = (),
        positive_class: int = 1,
        train_split: str = "train",
        eval_splits: Sequence[str] = ("test",),
    ) -> None:
        if estimator not in ESTIMATORS:
            raise ValueError(
                f"protocol estimator: estimator = {estimator!r} is not one of {list(ESTIMATORS)}"
            )
        if isinstance(sensitive, str):
            sensitive = [sensitive]
        self.estimator = estimator
        self.max_iter = max_iter
        self.sensitive = tuple(sensitive)
        self.positive_class = positive_class
        self.train_split = train_split
        self.eval_splits = tuple(eval_splits)

    def _arrays(self, run: RunContext, split: str, names: tuple[str, ...]
                ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
        dataset = run.dataset
        indices = dataset.split(split).indices
        x = dataset.x[indices].reshape(len(indices), -1).double().cpu().numpy()
        y = (dataset.y[indices] == self.positive_class).long().cpu().numpy()
        groups = torch.stack([dataset.features[n][indices] for n in names], dim=1)
        return indices, x, y, groups.cpu().numpy()

    def execute(self, run: RunContext) -> None:
        from paralab_fairness.auditor import resolve_sensitive

        method = run.method
        if not isinstance(method, EstimatorMethod):
            raise TypeError(
                f"protocol estimator: method {run.spec.method.name!r} does not fit scikit-learn "
                "estimators; use unmitigated, exponentiated_gradient, grid_search or "
                "threshold_optimizer"
            )
        names = resolve_sensitive(self.sensitive, run.dataset, "protocol estimator")
        if self.positive_class >= run.dataset.info.n_classes:
            raise ValueError(
                f"protocol estimator: positive_class = {self.positive_class} but dataset "
                f"{run.dataset.name!r} has {run.dataset.info.n_classes} classes"
            )
        for split in (self.train_split, *self.eval_splits):
            run.dataset.split(split)  # a missing split fails before fitting
        _, x, y, groups = self._arrays(run, self.train_split, names)
        if len(np.unique(y)) < 2:
            raise ValueError(
                f"protocol estimator: split {self.train_split!r} has only one class once "
                f"positive_class = {self.positive_class} is taken as positive"
            )
        with run.phase("fit", 0, estimator=self.estimator, sensitive=list(names)):
            method.fit(make_estimator(self.estimator, run.seed, self.max_iter), x, y, groups,
                       run.seed)
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
