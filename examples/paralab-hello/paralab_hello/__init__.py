"""paralab_hello: the smallest useful third-party plugin.

It contributes a metric (``top2_accuracy``), a model (``bottleneck``) and a lifecycle hook
that counts phases. Note what it does *not* do at import time: import torch. Its factories are
named by strings and imported when an experiment uses them.
"""

from paralab import MetricSpec, ModelSpec, hookimpl

PARALAB_API = "1.0"


@hookimpl
def paralab_metrics():
    return [
        MetricSpec(
            name="top2_accuracy",
            factory="paralab_hello.components:top2_accuracy",
            description="Fraction of rows whose target is among the two highest logits.",
        )
    ]


@hookimpl
def paralab_models():
    return [
        ModelSpec(
            name="bottleneck",
            factory="paralab_hello.components:bottleneck",
            description="An MLP squeezed through a narrow layer.",
            options={"width": 8},
        )
    ]


@hookimpl
def paralab_after_phase(run, phase):
    """Count the phases each run went through, in the run's shared state."""
    run.state["paralab_hello.phases"] = run.state.get("paralab_hello.phases", 0) + 1
