"""paralab_hello: the smallest useful third-party plugin.

It contributes a metric (``top2_accuracy``), a model (``bottleneck``), a protocol
(``early_stopping``, written against :class:`paralab.Protocol` and driving any
:class:`paralab.GradientMethod`), a method (``smoothed_sgd``, an :class:`paralab.OptimizerMethod`
whose ``loss`` adds label smoothing) and a lifecycle hook that counts phases. Every option is
declared once, with its constraints: the host rejects ``patience = 0`` or ``smoothing = nan``
before anything runs. Note what it does *not* do at import time: import torch. Its factories
are named by strings and imported when an experiment uses them.
"""

from paralab import MethodSpec, MetricSpec, ModelSpec, Option, ProtocolSpec, count, hookimpl

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
            options={"width": count(8, help="width of the narrow layer")},
        )
    ]


@hookimpl
def paralab_protocols():
    return [
        ProtocolSpec(
            name="early_stopping",
            factory="paralab_hello.components:EarlyStopping",
            description="Epochs of minibatch training until the validation split's accuracy "
            "stops improving for `patience` epochs.",
            options={
                "max_epochs": count(50),
                "patience": count(3, help="epochs without improvement before stopping"),
                "batch_size": count(32),
                "validation_split": Option("test", min_length=1),
            },
            example={"max_epochs": 2},
            accepts=("gradient",),  # any GradientMethod: sgd, adam, smoothed_sgd, ...
            method_interface="GradientMethod",
            applies_losses=True,  # it trains through method.step, which adds the loss terms
        )
    ]


@hookimpl
def paralab_methods():
    return [
        MethodSpec(
            name="smoothed_sgd",
            factory="paralab_hello.components:SmoothedSGD",
            description="SGD on label-smoothed cross-entropy.",
            options={
                "lr": Option(0.05, gt=0),
                "smoothing": Option(0.1, ge=0, lt=1, help="mass moved off the true label"),
                "weight_decay": Option(0.0, ge=0),
            },
            protocols=("supervised",),
            family="gradient",
        )
    ]


@hookimpl
def paralab_after_phase(run, phase):
    """Count the phases each run went through, in the run's shared state."""
    run.state["paralab_hello.phases"] = run.state.get("paralab_hello.phases", 0) + 1
