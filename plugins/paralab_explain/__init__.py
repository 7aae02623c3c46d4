"""paralab_explain: explainable AI as an auditor of any run, with SHAP, LIME and Captum.

Three auditors read any run's predictions, whatever its paradigm (supervised, continual,
federated, a quantum model ...):

* ``attributions`` — which features (or feature groups) drive the decisions: global, per class,
  per sensitive group, and how that drifts across epochs, experiences or rounds; plots in the
  run's folder. Methods: integrated gradients (paralab's batched code, parity with Captum),
  saliency, DeepLift, GradientSHAP (Captum), exact Shapley values (every coalition in one
  batched pass), permutation-sampling Shapley values with standard errors (any number of
  players), KernelSHAP (shap) and LIME (lime); the Shapley estimators take a background
  distribution (sampled or k-means rows), as SHAP does; for convolutional models SmoothGrad,
  occlusion, Grad-CAM and layer integrated gradients (paralab's batched code, parity with
  Captum).
* ``faithfulness`` — how well each method explains the model: completeness, deletion and
  insertion areas, Captum's infidelity and sensitivity.
* ``sanity`` — do the attributions depend on the model? The model-parameter and data
  randomisation tests of Adebayo et al. 2018 (rank correlation before and after
  re-initialising layers, or against a copy trained on permuted labels, beside a control
  trained on the true ones).

Across seeds, :mod:`paralab_explain.stability` scores how far runs that differ only by seed
agree on the features' importances.

Every option is declared here with its constraints, so a bad value is a spec error before
anything is built. ``baseline``, ``groups``, ``samples`` and ``per_group`` take values of
several types (a name, a number, a list); their names (``baseline = "median"``) and whatever
depends on the data (a baseline's length, a feature name, the player count of exact Shapley
values, a differentiable model) are checked by the auditor's ``validate(run)``, still before
training and before any run folder.

Light on purpose: names and ``"module:attribute"`` strings only; torch, captum, shap and lime
are imported when a run uses an auditor. The Python API is :func:`paralab_explain.explainers.explain`.
"""

from __future__ import annotations

from paralab import AuditorSpec, Option, count, hookimpl, one_of, positive
from paralab_explain.choices import (
    MAX_PLAYERS,
    METHOD_OPTIONS,
    METHODS,
    OUTPUTS,
    QUADRATURES,
    RANDOMIZATIONS,
    TARGETS,
)

PARALAB_API = "1.0"

# None means: baseline "mean", groups "features" (every input feature a player), samples "auto".
_SHARED = {
    "rows": count(64, help="rows explained at each evaluation (the same rows each time)"),
    "baseline": Option(None, type=(str, float, list, None), items=Option(0.0, type=float),
                       help="'zeros', 'mean' (None: mean), a number or one value per feature"),
    "groups": Option(None, type=(str, int, list, dict, None), ge=1,
                     help="players: 'features' (None), 'columns', k blocks, 'patches:s', lists"),
    "steps": count(50, low=2, help="integration steps (integrated gradients, GradientSHAP)"),
    "integration": one_of("gausslegendre", QUADRATURES, help="integrated gradients' rule"),
    "samples": Option(None, type=(int, str, None), ge=1,
                      help="KernelSHAP / LIME samples: a number or 'auto' (None)"),
    "target": one_of("predicted", TARGETS, help="explain the predicted or the true class"),
    "output": one_of("probability", OUTPUTS, help="explain the probability or the logit"),
    "max_players": count(MAX_PLAYERS, help="exact Shapley values refuse more players"),
    "seed": count(0, low=0, help="seed of the row choice and the sampling methods"),
    "background": Option(None, type=(str, None), min_length=1,
                         help="Shapley estimators: 'sample:N', 'kmeans:K', 'train' (None: baseline)"),
    "permutations": count(256, low=2, help="permutation_shapley: most orders per row"),
    "antithetic": Option(True, help="permutation_shapley: pair each order with its reverse"),
    "target_error": Option(None, type=(float, None), gt=0,
                           help="permutation_shapley: stop a row at this standard error"),
    "stdev": positive(0.1, help="smoothgrad(_ig): standard deviation of the input noise"),
    "noise_samples": count(16, help="smoothgrad(_ig): noisy copies of each row"),
    "window": count(2, help="occlusion: side of the square window (all channels of an image)"),
    "stride": count(1, help="occlusion: step of the window"),
    "layer": Option(None, type=(str, None), min_length=1,
                    help="gradcam / layer_integrated_gradients: module name (None: last Conv2d)"),
}


def _used_by(methods_option: str) -> dict[str, dict[str, tuple[str, ...]]]:
    """``used_when`` of the method-specific options, keyed on ``method`` or ``methods``."""
    return {option: {methods_option: users} for option, users in METHOD_OPTIONS.items()}


_METHOD_LIBRARIES = {"saliency": ("captum",), "deeplift": ("captum",),
                     "gradient_shap": ("captum",), "kernel_shap": ("shap",), "lime": ("lime",)}
"""What each attribution method imports at run time (integrated gradients and exact Shapley
are paralab's own)."""
_INSTALL = "pip install 'paralab[explain]'"


@hookimpl
def paralab_auditors() -> list[AuditorSpec]:
    return [
        AuditorSpec(
            name="attributions",
            factory="paralab_explain.auditor:Attributions",
            description=(
                "Feature attributions of the run's model at each evaluation point: global, per "
                "class and per sensitive group importance, drift across phases, bar charts or "
                "image heat maps. method: integrated_gradients | saliency | deeplift | "
                "gradient_shap | smoothgrad | smoothgrad_ig | occlusion | gradcam | "
                "layer_integrated_gradients | exact_shapley | permutation_shapley | kernel_shap | "
                "lime."
            ),
            options={
                "method": one_of("integrated_gradients", METHODS, help="attribution method"),
                **_SHARED,
                "per_group": Option(None, type=(str, list, None),
                                    items=Option("", type=str, min_length=1),
                                    help="features to report per group (None: the sensitive)"),
                "plots": Option(True, help="write the charts to the run's folder"),
                "top": count(10, help="features listed as the most important"),
            },
            example={"rows": 8, "steps": 8},
            requires_when={"method": _METHOD_LIBRARIES},
            used_when=_used_by("method"),
            install=_INSTALL,
        ),
        AuditorSpec(
            name="faithfulness",
            factory="paralab_explain.faithfulness_auditor:Faithfulness",
            description=(
                "Faithfulness of attribution methods, per method: completeness gap, deletion "
                "and insertion AUC, Captum's infidelity and sensitivity_max."
            ),
            options={
                "methods": Option(("integrated_gradients", "saliency", "deeplift",
                                   "gradient_shap"), type=(str, list), min_length=1,
                                  items=one_of("integrated_gradients", METHODS),
                                  help="attribution methods to score (one name or a list)"),
                **_SHARED,
                "rows": count(32, help="rows explained at each evaluation"),
                "points": count(33, low=2, help="points of the deletion and insertion curves"),
                "noise": positive(0.1, help="scale of infidelity's input perturbations"),
                "perturbations": count(8, help="perturbations for infidelity and sensitivity"),
                "sensitivity": Option(True, help="also compute sensitivity_max (costly)"),
            },
            example={"rows": 4, "steps": 8, "perturbations": 2},
            requires=("captum",),  # infidelity and sensitivity_max are Captum's
            requires_when={"methods": _METHOD_LIBRARIES},
            used_when=_used_by("methods"),
            install=_INSTALL,
        ),
        AuditorSpec(
            name="sanity",
            factory="paralab_explain.sanity_auditor:Sanity",
            description=(
                "Sanity check of attribution methods (Adebayo et al. 2018): Spearman rank "
                "correlation of each method's attributions before and after re-initialising the "
                "model's layers (cascading from the output, independent, full, or none)."
            ),
            options={
                "methods": Option(("integrated_gradients", "saliency"), type=(str, list),
                                  min_length=1, items=one_of("integrated_gradients", METHODS),
                                  help="attribution methods to check (one name or a list)"),
                "randomization": one_of("cascading", RANDOMIZATIONS,
                                        help="which layers are re-initialised; data: retrain "
                                             "a re-initialised copy on permuted labels"),
                **_SHARED,
                "rows": count(32, help="rows explained at each evaluation"),
                "data_epochs": count(50, help="randomization = 'data': training passes of the "
                                              "shuffled-label and control copies"),
                "data_lr": positive(0.01, help="randomization = 'data': their Adam learning "
                                               "rate"),
                "data_batch_size": count(128, low=0, help="randomization = 'data': rows per "
                                                          "step; 0: full batch"),
                "train_split": Option("train", type=str, min_length=1,
                                      help="randomization = 'data': the rows they train on"),
            },
            example={"rows": 4, "steps": 8, "randomization": "full"},
            requires_when={"methods": _METHOD_LIBRARIES},
            used_when={**_used_by("methods"),
                       **{key: {"randomization": ("data",)} for key in
                          ("data_epochs", "data_lr", "data_batch_size", "train_split")}},
            install=_INSTALL,
        ),
    ]
