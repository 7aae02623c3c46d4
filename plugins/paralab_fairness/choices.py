"""The named values the plugin's options accept, in one pure-Python place.

The declarations in :mod:`paralab_fairness` (read without importing torch, scikit-learn or
fairlearn) and the implementations that act on the values use these same tuples, so the spec
check and the code can never disagree on what is valid.
"""

from __future__ import annotations

ESTIMATORS = ("logistic_regression", "decision_tree", "gradient_boosting", "paralab_model")
"""Estimators the ``estimator`` protocol builds by name: scikit-learn's, or ``paralab_model``
(a paralab model trained by a paralab method, weights honoured, as a scikit-learn classifier)."""

MOMENTS = ("demographic_parity", "equalized_odds", "true_positive_rate_parity",
           "false_positive_rate_parity", "error_rate_parity")
"""fairlearn reduction constraints (``Moment`` s) of exponentiated gradient and grid search."""

THRESHOLD_CONSTRAINTS = ("demographic_parity", "equalized_odds", "true_positive_rate_parity",
                         "false_positive_rate_parity", "true_negative_rate_parity",
                         "false_negative_rate_parity")
"""Constraints fairlearn's ``ThresholdOptimizer`` post-processes for."""

THRESHOLD_OBJECTIVES = ("accuracy_score", "balanced_accuracy_score", "selection_rate",
                        "true_positive_rate", "true_negative_rate")
"""Objectives ``ThresholdOptimizer`` maximizes under a single-rate constraint."""

EQUALIZED_ODDS_OBJECTIVES = ("accuracy_score", "balanced_accuracy_score")
"""The only objectives ``ThresholdOptimizer`` accepts under ``equalized_odds``."""

PENALTY_CONSTRAINTS = ("demographic_parity", "equalized_odds")
"""What the differentiable ``fairness_penalty`` relaxes."""

MULTICLASS = ("positive_class", "one_vs_rest")
"""How the auditor treats several classes: one positive class against the rest, or every class
one-vs-rest with their macro average."""
