"""paralab_explain: explainable AI as an auditor of any run, with SHAP, LIME and Captum.

Two auditors read any run's predictions, whatever its paradigm (supervised, continual,
federated, a quantum model ...):

* ``attributions`` — which features (or feature groups) drive the decisions: global, per class,
  per sensitive group, and how that drifts across epochs, experiences or rounds; plots in the
  run's folder. Methods: integrated gradients (paralab's batched code, parity with Captum),
  saliency, DeepLift, GradientSHAP (Captum), exact Shapley values (every coalition in one
  batched pass), KernelSHAP (shap) and LIME (lime).
* ``faithfulness`` — how well each method explains the model: completeness, deletion and
  insertion areas, Captum's infidelity and sensitivity.

Light on purpose: names and ``"module:attribute"`` strings only; torch, captum, shap and lime
are imported when a run uses an auditor. The Python API is :func:`paralab_explain.explainers.explain`.
"""

from __future__ import annotations

from paralab.components import AuditorSpec
from paralab.hookspecs import hookimpl

PARALAB_API = "1.0"

# baseline, groups and samples take values of several types (a name, a number, a list), so
# their declared default is None ("any type" to the spec check); None means: baseline "mean",
# groups "features" (every input feature a player), samples "auto".
_SHARED = {
    "rows": 64,
    "baseline": None,
    "groups": None,
    "steps": 50,
    "integration": "gausslegendre",
    "samples": None,
    "target": "predicted",
    "output": "probability",
    "max_players": 16,
    "seed": 0,
}


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
                "gradient_shap | exact_shapley | kernel_shap | lime."
            ),
            options={
                "method": "integrated_gradients",
                **_SHARED,
                "per_group": None,
                "plots": True,
                "top": 10,
            },
            example={"rows": 8, "steps": 8},
        ),
        AuditorSpec(
            name="faithfulness",
            factory="paralab_explain.faithfulness_auditor:Faithfulness",
            description=(
                "Faithfulness of attribution methods, per method: completeness gap, deletion "
                "and insertion AUC, Captum's infidelity and sensitivity_max."
            ),
            options={
                "methods": ["integrated_gradients", "saliency", "deeplift", "gradient_shap"],
                **_SHARED,
                "rows": 32,
                "points": 33,
                "noise": 0.1,
                "perturbations": 8,
                "sensitivity": True,
            },
            example={"rows": 4, "steps": 8, "perturbations": 2},
        ),
    ]
