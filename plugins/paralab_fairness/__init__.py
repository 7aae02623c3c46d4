"""paralab_fairness: fairness audits of any run, fairlearn parity, mitigation in any protocol.

Contributes (factories are ``"module:attribute"`` strings, so listing costs nothing):

* auditor ``fairness``: per-group metrics (single and intersectional groups), disparities with
  bootstrap intervals, a table and plots, at every evaluation of any protocol;
* dataset ``biased_synthetic``: embedded data whose label bias is an option;
* datasets ``decorrelated`` and ``reweighed``: pre-processing of any dataset (fairlearn's
  correlation remover; Kamiran and Calders' reweighing, as a redrawn train split);
* loss ``fairness_penalty``: demographic parity or equalized odds as a differentiable term
  under any protocol that applies loss terms (supervised, federated, continual ...);
* loss ``adversarial_debiasing``: Zhang et al.'s adversary (it predicts the group from the
  model's output) and the term that trains the model against it, under the same protocols;
* protocol ``audit`` with methods ``threshold`` and ``positive_labels``: audits of decisions
  that already exist (a dataset column such as COMPAS's own ``score_text``, or a CSV of
  predictions), with no model;
* protocol ``estimator`` with methods ``unmitigated``, ``exponentiated_gradient``,
  ``grid_search`` and ``threshold_optimizer``: fairlearn's mitigations of scikit-learn
  estimators or of any paralab torch model (``estimator = "paralab_model"``, through
  :class:`paralab_fairness.torch_estimator.ParalabClassifier`), audited like any run;
* metrics ``demographic_parity_difference`` and ``equalized_odds_difference``.

Every option is declared here with its constraints, so a bad value is a spec error before
anything is built; checks against the data (an unknown sensitive feature, a ``positive_class``
the dataset lacks) are the components' ``validate(run)``.

The real-data fairness sets (``compas``, ``adult``, ``german_credit``) are the host's loaders,
which declare their sensitive features.
"""

from __future__ import annotations

from paralab import (
    AuditorSpec,
    DatasetSpec,
    LossSpec,
    MethodSpec,
    MetricSpec,
    Option,
    ProtocolSpec,
    count,
    fraction,
    hookimpl,
    non_negative,
    one_of,
    positive,
)
from paralab_fairness.choices import (
    ESTIMATORS,
    MOMENTS,
    MULTICLASS,
    PENALTY_CONSTRAINTS,
    THRESHOLD_CONSTRAINTS,
    THRESHOLD_OBJECTIVES,
)

PARALAB_API = "1.0"

_ESTIMATOR_EXAMPLE = {"dataset": "biased_synthetic"}

_SENSITIVE = Option((), type=(str, list), items=Option("", type=str, min_length=1),
                    help="sensitive features (one name or a list); empty: the dataset's declared")
_POSITIVE_CLASS = count(1, low=0, help="the class counted as the favourable outcome")
_SEED = count(0, low=0, help="random seed")
_BASE = Option("biased_synthetic", type=str, min_length=1, help="the dataset transformed")
_BASE_OPTIONS = Option(None, type=(dict, None), help="options of the base dataset")
MIN_GROUP_SIZE = 30
"""The auditor's default smallest group in a disparity: a rate of fewer rows is mostly
noise (the 95% Wilson interval of a rate of 0.5 on 30 rows is 0.33-0.67), and the largest
minus smallest group value over many groups is then set by the smallest group's noise, as
on COMPAS, whose 18 Native American defendants would set its FNR gap. Reported groups keep
their n and intervals; ``min_group_size = 0`` compares every group (fairlearn's
MetricFrame does)."""
_COLUMN = Option("", type=str,
                 help="the audited score or decision column (of the dataset, or of the CSV "
                      "when protocol.predictions is set)")


def _difference_bound(*, strict: bool) -> Option:
    bound = {"gt": 0} if strict else {"ge": 0}
    return Option(None, type=(float, None), **bound,
                  help="allowed constraint gap (the paper's epsilon); None: fairlearn's 0.01")


@hookimpl
def paralab_auditors() -> list[AuditorSpec]:
    return [
        AuditorSpec(
            "fairness",
            "paralab_fairness.auditor:FairnessAuditor",
            "Per-group metrics (count, base rate, selection rate, accuracy, TPR, FPR, FNR, "
            "precision, calibration error, generalised entropy and Theil indices, disparate "
            "impact and average odds against a reference group) for each sensitive feature and "
            "their intersection; demographic parity, equalized odds, equal opportunity, "
            "disparate impact, average odds and between-group entropy disparities with bootstrap "
            "intervals; CSV and plots, including the disparities over the run.",
            {"sensitive": _SENSITIVE,
             "intersectional": Option(True, help="also audit the intersection of the features"),
             "positive_class": _POSITIVE_CLASS,
             "bootstrap": count(200, low=0, help="resamples for the intervals; 0 disables"),
             "confidence": Option(0.95, gt=0, lt=1, help="level of the bootstrap intervals"),
             "bins": count(10, help="score bins of the calibration error"),
             "seed": Option(0, type=int, help="bootstrap seed"),
             "plots": Option(True, help="write the PNGs (the CSVs are always written)"),
             "min_group_size": count(MIN_GROUP_SIZE, low=0,
                                     help="smaller groups are reported (with their n and "
                                          "intervals) but left out of the disparities"),
             "alpha": Option(2.0, type=float, gt=0,
                             help="the generalised entropy index's parameter (> 0; 1: Theil)"),
             "reference": Option(None, type=(dict, None),
                                 help="per grouping ('race', 'race*sex'), the label of the group "
                                      "every group is compared with (AIF360's privileged "
                                      "group, e.g. 'White' or 'Male & White'); unnamed: the "
                                      "group with the highest selection rate"),
             "metrics": Option((), type=list, items=Option("", type=(str, dict)),
                               help="metrics of any plugin (MetricSpec) evaluated per group: "
                                    "names, or tables {name = ..., <its options>}"),
             "counterfactual": Option(False, help="also run the flip test: the model again with "
                                                  "each sensitive feature's one-hot input "
                                                  "columns set to every other value"),
             "multiclass": one_of("positive_class", MULTICLASS,
                                  help="positive_class: one audit of positive_class against "
                                       "the rest; one_vs_rest: one per class and their macro "
                                       "average ('race|<class>', 'race|macro')"),
             "metric_bootstrap": count(0, low=0,
                                       help="resamples of rows for the intervals of those "
                                            "metrics' group differences (each calls the "
                                            "metric once per group); 0 disables")},
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
            "leaks the group); sensitive features group (2) and age_band (3); `risk_score` "
            "(the labelling probability, biased as the labels are) for audits of given scores.",
            {"n": count(4000, low=20, help="rows"),
             "n_features": count(8, help="informative Gaussian columns (the first is the proxy)"),
             "bias": Option(1.0, help="label-logit shift towards the majority group"),
             "proxy": Option(1.0, help="how far column x0 moves with the group"),
             "minority_fraction": Option(0.3, gt=0, lt=1, help="share of the minority group"),
             "drop_sensitive": Option(False, help="leave the group and age columns out"),
             "test_fraction": Option(0.25, gt=0, lt=1, help="share of each class held out"),
             "seed": _SEED},
            sensitive=("group", "age_band"),
            example={"n": 400},
        ),
        DatasetSpec(
            "decorrelated",
            "paralab_fairness.transforms:decorrelated",
            "Another dataset with its inputs decorrelated from the sensitive groups (fairlearn's "
            "CorrelationRemover, fitted on fit_split) and the columns encoding them dropped.",
            {"base": _BASE, "base_options": _BASE_OPTIONS, "sensitive": _SENSITIVE,
             "alpha": fraction(1.0, help="1: remove all linear correlation; 0: none"),
             "fit_split": Option("train", type=str, min_length=1,
                                 help="the split the regression is fitted on")},
            example={"base_options": {"n": 400}},
        ),
        DatasetSpec(
            "reweighed",
            "paralab_fairness.transforms:reweighed",
            "Another dataset whose train split is redrawn by Kamiran and Calders' reweighing "
            "weights (group and label independent); the weights are the feature "
            "reweighing_weight.",
            {"base": _BASE, "base_options": _BASE_OPTIONS, "sensitive": _SENSITIVE,
             "split": Option("train", type=str, min_length=1, help="the split redrawn"),
             "seed": _SEED},
            example={"base_options": {"n": 400}},
        ),
    ]


@hookimpl
def paralab_losses() -> list[LossSpec]:
    return [
        LossSpec(
            "fairness_penalty",
            "paralab_fairness.penalty:FairnessPenalty",
            "Differentiable demographic parity or equalized odds gap of each batch, added to the "
            "training loss under every protocol that applies loss terms.",
            {"sensitive": _SENSITIVE,
             "constraint": one_of("demographic_parity", PENALTY_CONSTRAINTS,
                                  help="the gap to penalize"),
             "weight": non_negative(1.0, help="strength of the penalty"),
             "positive_class": _POSITIVE_CLASS},
            example={"weight": 0.5},
        ),
        LossSpec(
            "adversarial_debiasing",
            "paralab_fairness.adversarial:AdversarialDebiasing",
            "Zhang et al. (2018): an adversary learns to predict the sensitive group from the "
            "model's positive-class logit (and the label, for equalized odds) with its own "
            "optimizer on every batch; the term -weight * adversary loss trains the model "
            "against it, under every protocol that applies loss terms.",
            {"sensitive": _SENSITIVE,
             "constraint": one_of("demographic_parity", PENALTY_CONSTRAINTS,
                                  help="demographic_parity: the adversary sees the output; "
                                       "equalized_odds: the output and the label"),
             "weight": non_negative(1.0, help="Zhang's alpha: strength of the adversarial term"),
             "adversary_lr": positive(0.05, help="learning rate of the adversary's Adam"),
             "adversary_steps": count(1, help="adversary steps per training batch"),
             "positive_class": _POSITIVE_CLASS,
             "seed": _SEED},
            example={"weight": 0.5},
        ),
    ]


@hookimpl
def paralab_protocols() -> list[ProtocolSpec]:
    return [
        ProtocolSpec(
            "estimator",
            "paralab_fairness.estimators:EstimatorProtocol",
            "Fit a scikit-learn estimator, or a paralab model trained by a paralab method "
            "(estimator = 'paralab_model', its sample weights honoured), with the method's "
            "fairlearn mitigation on the train split, and evaluate it like any model; the "
            "spec's `model` is not used (omit it; `network` names the torch model).",
            {"estimator": one_of("logistic_regression", ESTIMATORS,
                                 help="the scikit-learn estimator to fit"),
             "max_iter": count(1000, help="iterations of the solver (logistic_regression, "
                                          "gradient_boosting)"),
             "sensitive": _SENSITIVE,
             "positive_class": _POSITIVE_CLASS,
             "train_split": Option("train", type=str, min_length=1, help="split to fit on"),
             "eval_splits": Option(("test",), items=Option("", type=str, min_length=1),
                                   help="splits to evaluate"),
             "network": Option(None, type=(str, dict, None),
                               help="estimator = 'paralab_model': the model, a name or "
                                    "{name = ..., <its options>}; None: mlp, hidden [32]"),
             "trainer": Option(None, type=(str, dict, None),
                               help="estimator = 'paralab_model': the paralab method that "
                                    "trains it (sample weights in its loss); None: adam, "
                                    "lr 0.01"),
             "epochs": count(20, help="estimator = 'paralab_model': passes per fit"),
             "batch_size": count(128, low=0, help="estimator = 'paralab_model': rows per "
                                                  "step; 0: one full batch")},
            example=_ESTIMATOR_EXAMPLE,
            # Set with another estimator they would do nothing (a decision tree has no solver).
            used_when={
                "max_iter": {"estimator": ("logistic_regression", "gradient_boosting")},
                **{key: {"estimator": ("paralab_model",)}
                   for key in ("network", "trainer", "epochs", "batch_size")},
            },
            uses_model=False,
            # It fits scikit-learn estimators: a loss term or middleware would never act.
            method_interface="EstimatorMethod",
            applies_losses=False,
            middleware_hooks=(),
        ),
        ProtocolSpec(
            "audit",
            "paralab_fairness.given:AuditProtocol",
            "Audit scores or decisions that already exist (no model; omit `model`): a dataset "
            "column (COMPAS's score_text, decile_score) or a CSV of predictions joined on an id "
            "column, turned into decisions by the method (threshold, positive_labels) and "
            "evaluated by every metric and auditor as a model's predictions.",
            {"predictions": Option("", type=str, help="a CSV file of predictions, one row per "
                                                      "dataset row; empty: use the dataset's "
                                                      "column"),
             "id_column": Option("id", type=str, min_length=1,
                                 help="the column joining the CSV to the dataset (both have it)"),
             "splits": Option(("all",), items=Option("", type=str, min_length=1),
                              help="splits audited; 'all': every row of the dataset"),
             "positive_class": _POSITIVE_CLASS},
            example={"dataset": "biased_synthetic"},
            uses_model=False,
            # Decisions are given: nothing trains, so no loss term or middleware could act.
            method_interface="paralab_fairness.given:DecisionRule",
            applies_losses=False,
            middleware_hooks=(),
        ),
    ]


@hookimpl
def paralab_methods() -> list[MethodSpec]:
    audit = ("audit",)
    protocols = ("estimator",)
    return [
        MethodSpec("unmitigated", "paralab_fairness.estimators:Unmitigated",
                   "The scikit-learn estimator with no mitigation (the baseline).",
                   {}, protocols=protocols, example=_ESTIMATOR_EXAMPLE),
        MethodSpec("exponentiated_gradient",
                   "paralab_fairness.estimators:ExponentiatedGradientMethod",
                   "fairlearn ExponentiatedGradient (Agarwal et al. 2018): a randomized "
                   "classifier meeting the constraint up to eps.",
                   {"constraint": one_of("demographic_parity", MOMENTS, help="fairlearn Moment"),
                    "difference_bound": _difference_bound(strict=True),
                    "eps": positive(0.01, help="sets the bound 1/eps on the Lagrange multipliers"),
                    "max_iter": count(50, help="outer iterations")},
                   requires=("fairlearn",), install="pip install 'paralab[fairness]'",
                   protocols=protocols, example={**_ESTIMATOR_EXAMPLE, "max_iter": 5}),
        MethodSpec("grid_search", "paralab_fairness.estimators:GridSearchMethod",
                   "fairlearn GridSearch over Lagrange multipliers (one deterministic model).",
                   {"constraint": one_of("demographic_parity", MOMENTS, help="fairlearn Moment"),
                    "difference_bound": _difference_bound(strict=False),
                    "grid_size": count(10, help="Lagrange multipliers tried"),
                    "grid_limit": positive(2.0, help="multipliers range in [-limit, limit]"),
                    "constraint_weight": fraction(0.5, help="weight of the constraint vs error")},
                   requires=("fairlearn",), install="pip install 'paralab[fairness]'",
                   protocols=protocols, example={**_ESTIMATOR_EXAMPLE, "grid_size": 3}),
        MethodSpec("threshold_optimizer", "paralab_fairness.estimators:ThresholdOptimizerMethod",
                   "fairlearn ThresholdOptimizer (Hardt et al. 2016): group-specific thresholds "
                   "on the estimator's scores.",
                   {"constraint": one_of("demographic_parity", THRESHOLD_CONSTRAINTS,
                                         help="the parity the thresholds enforce"),
                    "objective": one_of("accuracy_score", THRESHOLD_OBJECTIVES,
                                        help="what the thresholds maximize (equalized_odds: "
                                             "accuracy_score or balanced_accuracy_score)")},
                   requires=("fairlearn",), install="pip install 'paralab[fairness]'",
                   protocols=protocols, example=_ESTIMATOR_EXAMPLE),
        MethodSpec("threshold", "paralab_fairness.given:Threshold",
                   "Audit: a numeric score is a positive decision when it is at least `at` (or "
                   "at most, direction = 'at_most').",
                   {"column": _COLUMN,
                    "at": Option(0.5, type=float, help="the threshold"),
                    "direction": one_of("at_least", ("at_least", "at_most"),
                                        help="positive at or above the threshold, or at or "
                                             "below it")},
                   protocols=audit,
                   example={"dataset": "biased_synthetic", "column": "risk_score"}),
        MethodSpec("positive_labels", "paralab_fairness.given:PositiveLabels",
                   "Audit: a label is a positive decision when it is one of `labels` "
                   "(ProPublica's 'higher risk': Medium or High).",
                   {"column": _COLUMN,
                    "labels": Option((), type=list, items=Option("", type=str, min_length=1),
                                     help="the labels counted as the positive decision")},
                   protocols=audit,
                   example={"dataset": "biased_synthetic", "column": "group",
                            "labels": ["minority"]}),
    ]


@hookimpl
def paralab_metrics() -> list[MetricSpec]:
    options = {"sensitive": _SENSITIVE, "positive_class": _POSITIVE_CLASS}
    return [
        MetricSpec("demographic_parity_difference",
                   "paralab_fairness.metrics:demographic_parity_difference_metric",
                   "Largest minus smallest selection rate over the groups of a sensitive feature "
                   "(default: the dataset's first declared; several: their intersection).",
                   options),
        MetricSpec("equalized_odds_difference",
                   "paralab_fairness.metrics:equalized_odds_difference_metric",
                   "The larger of the TPR and FPR gaps over the groups of a sensitive feature.",
                   options),
    ]
