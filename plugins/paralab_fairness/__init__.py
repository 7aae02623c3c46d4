"""paralab_fairness: fairness audits of any run, fairlearn parity, mitigation in any protocol.

Contributes (factories are ``"module:attribute"`` strings, so listing costs nothing):

* auditor ``fairness``: per-group metrics (single and intersectional groups), disparities with
  bootstrap intervals, a table and plots, at every evaluation of any protocol;
* dataset ``biased_synthetic``: embedded data whose label bias is an option;
* loss ``fairness_penalty``: demographic parity or equalized odds as a differentiable term
  under any protocol (supervised, federated, continual ...);
* protocol ``estimator`` with methods ``unmitigated``, ``exponentiated_gradient``,
  ``grid_search`` and ``threshold_optimizer``: fairlearn's mitigations of scikit-learn
  estimators, audited like any run;
* metrics ``demographic_parity_difference`` and ``equalized_odds_difference``.

The real-data fairness sets (``compas``, ``adult``, ``german_credit``) are the host's loaders,
which declare their sensitive features.
"""

from __future__ import annotations

from paralab.components import (
    AuditorSpec,
    DatasetSpec,
    LossSpec,
    MethodSpec,
    MetricSpec,
    ProtocolSpec,
)
from paralab.hookspecs import hookimpl

PARALAB_API = "1.0"

_ESTIMATOR_EXAMPLE = {"dataset": "biased_synthetic"}


@hookimpl
def paralab_auditors() -> list[AuditorSpec]:
    return [
        AuditorSpec(
            "fairness",
            "paralab_fairness.auditor:FairnessAuditor",
            "Per-group metrics (count, selection rate, accuracy, TPR, FPR, FNR, precision, "
            "calibration error) for each sensitive feature and their intersection; demographic "
            "parity, equalized odds and equal opportunity gaps with bootstrap intervals; CSV and "
            "plots, including the disparities over the run.",
            {"sensitive": [], "intersectional": True, "positive_class": 1, "bootstrap": 200,
             "confidence": 0.95, "bins": 10, "seed": 0, "plots": True,
             "min_group_size": 0},
            example={"bootstrap": 20},
        )
    ]


@hookimpl
def paralab_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            "biased_synthetic",
            "paralab_fairness.synthetic:biased_synthetic",
            "Embedded binary task whose labels favour a majority group by `bias` (a proxy column "
            "leaks the group); sensitive features group (2) and age_band (3).",
            {"n": 4000, "n_features": 8, "bias": 1.0, "proxy": 1.0, "minority_fraction": 0.3,
             "drop_sensitive": False, "test_fraction": 0.25, "seed": 0},
            sensitive=("group", "age_band"),
            example={"n": 400},
        )
    ]


@hookimpl
def paralab_losses() -> list[LossSpec]:
    return [
        LossSpec(
            "fairness_penalty",
            "paralab_fairness.penalty:FairnessPenalty",
            "Differentiable demographic parity or equalized odds gap of each batch, added to the "
            "training loss under any protocol.",
            {"sensitive": [], "constraint": "demographic_parity", "weight": 1.0,
             "positive_class": 1},
            example={"weight": 0.5},
        )
    ]


@hookimpl
def paralab_protocols() -> list[ProtocolSpec]:
    return [
        ProtocolSpec(
            "estimator",
            "paralab_fairness.estimators:EstimatorProtocol",
            "Fit a scikit-learn estimator (with the method's fairlearn mitigation) on the train "
            "split and evaluate it like any model; it uses no torch model (omit `model`).",
            {"estimator": "logistic_regression", "max_iter": 1000, "sensitive": [],
             "positive_class": 1, "train_split": "train", "eval_splits": ["test"]},
            example=_ESTIMATOR_EXAMPLE,
            uses_model=False,
        )
    ]


@hookimpl
def paralab_methods() -> list[MethodSpec]:
    protocols = ("estimator",)
    return [
        MethodSpec("unmitigated", "paralab_fairness.estimators:Unmitigated",
                   "The scikit-learn estimator with no mitigation (the baseline).",
                   {}, protocols=protocols, example=_ESTIMATOR_EXAMPLE),
        MethodSpec("exponentiated_gradient",
                   "paralab_fairness.estimators:ExponentiatedGradientMethod",
                   "fairlearn ExponentiatedGradient (Agarwal et al. 2018): a randomized "
                   "classifier meeting the constraint up to eps.",
                   {"constraint": "demographic_parity", "difference_bound": None, "eps": 0.01,
                    "max_iter": 50},
                   protocols=protocols, example={**_ESTIMATOR_EXAMPLE, "max_iter": 5}),
        MethodSpec("grid_search", "paralab_fairness.estimators:GridSearchMethod",
                   "fairlearn GridSearch over Lagrange multipliers (one deterministic model).",
                   {"constraint": "demographic_parity", "difference_bound": None,
                    "grid_size": 10, "grid_limit": 2.0, "constraint_weight": 0.5},
                   protocols=protocols, example={**_ESTIMATOR_EXAMPLE, "grid_size": 3}),
        MethodSpec("threshold_optimizer", "paralab_fairness.estimators:ThresholdOptimizerMethod",
                   "fairlearn ThresholdOptimizer (Hardt et al. 2016): group-specific thresholds "
                   "on the estimator's scores.",
                   {"constraint": "demographic_parity", "objective": "accuracy_score"},
                   protocols=protocols, example=_ESTIMATOR_EXAMPLE),
    ]


@hookimpl
def paralab_metrics() -> list[MetricSpec]:
    return [
        MetricSpec("demographic_parity_difference",
                   "paralab_fairness.metrics:demographic_parity_difference_metric",
                   "Largest minus smallest selection rate over the groups of a sensitive feature "
                   "(default: the dataset's first declared; several: their intersection).",
                   {"sensitive": [], "positive_class": 1}),
        MetricSpec("equalized_odds_difference",
                   "paralab_fairness.metrics:equalized_odds_difference_metric",
                   "The larger of the TPR and FPR gaps over the groups of a sensitive feature.",
                   {"sensitive": [], "positive_class": 1}),
    ]
