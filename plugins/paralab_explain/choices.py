"""The named values and limits the auditors' options use, in one pure-Python place.

The declarations in :mod:`paralab_explain` (read without importing torch, captum, shap or
lime) and the code that acts on the values use these same names, so the spec check and the
explainers can never disagree on what is valid.
"""

from __future__ import annotations

CONVOLUTIONAL_METHODS = ("smoothgrad", "smoothgrad_ig", "occlusion", "gradcam",
                         "layer_integrated_gradients")
"""paralab's batched SmoothGrad (of saliency or integrated gradients), occlusion, Grad-CAM and
layer integrated gradients (:mod:`paralab_explain.convolutional`)."""
LAYER_METHODS = ("gradcam", "layer_integrated_gradients")
"""Methods that read a layer of the model (the ``layer`` option)."""
GRADIENT_METHODS = ("integrated_gradients", "saliency", "deeplift", "gradient_shap",
                    "smoothgrad", "smoothgrad_ig", "gradcam", "layer_integrated_gradients")
PLAYER_METHODS = ("exact_shapley", "kernel_shap", "permutation_shapley")
"""Methods whose players are the groups themselves (a group is present or absent as a whole);
the others attribute to single features and a group gets the sum of its members. These are
also the methods a ``background`` distribution applies to (:mod:`paralab_explain.background`)."""
METHODS = GRADIENT_METHODS + PLAYER_METHODS + ("occlusion", "lime")

METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "steps": ("integrated_gradients", "gradient_shap", "smoothgrad_ig",
              "layer_integrated_gradients"),
    "integration": ("integrated_gradients", "smoothgrad_ig", "layer_integrated_gradients"),
    "samples": ("kernel_shap", "lime"),
    "max_players": ("exact_shapley",),
    "background": PLAYER_METHODS,
    "permutations": ("permutation_shapley",),
    "antithetic": ("permutation_shapley",),
    "target_error": ("permutation_shapley",),
    "stdev": ("smoothgrad", "smoothgrad_ig"),
    "noise_samples": ("smoothgrad", "smoothgrad_ig"),
    "window": ("occlusion",),
    "stride": ("occlusion",),
    "layer": LAYER_METHODS,
}
"""The options only some methods read, and those methods: set for an auditor none of whose
methods reads it, an option would do nothing (a spec error, through ``used_when``)."""

QUADRATURES = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right",
               "riemann_middle", "trapezoid")
"""Integration rules of integrated gradients (the ``riemann_*`` ones are Captum's)."""

OUTPUTS = ("probability", "logit")
"""What is explained: the softmax probability of the target class, or its logit."""

TARGETS = ("predicted", "true")
"""Which class each row is explained for: the model's prediction or the label."""

MAX_PLAYERS = 16
"""Above this many players, enumeration (2^M model evaluations per row) is refused by default."""

RANDOMIZATIONS = ("cascading", "independent", "full", "none", "data")
"""Randomisations of the sanity check (Adebayo et al. 2018): layers re-initialised from the
output backwards one more at a time, each alone, all at once, or none (a control); or ``data``:
a re-initialised copy trained on permuted labels (the data randomisation test)."""
