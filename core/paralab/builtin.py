"""The host's own plugin: the baseline every experiment can use.

Registered first, exactly like an installed plugin (pluggy's eggsample does the same), under
the name ``paralab``. It contributes the bundled and real-file datasets, an MLP and a small
CNN, the supervised protocol with SGD and Adam, and the basic metrics. Light on purpose: only
names and ``"module:attribute"`` strings here.
"""

from __future__ import annotations

from typing import Any

from paralab.components import DatasetSpec, MethodSpec, MetricSpec, ModelSpec, ProtocolSpec
from paralab.hookspecs import hookimpl
from paralab.options import Option, count, non_negative, one_of, positive

PARALAB_API = "1.0"

_SPLIT_OPTIONS = {
    "test_fraction": Option(0.2, gt=0, lt=1, help="share of each class held out as test"),
    "seed": Option(0, type=int, help="seed of the stratified split"),
}
_DOWNLOAD = Option(False, help="fetch missing files (never in tests or CI)")
_DROP_SENSITIVE = Option(False, help="remove the sensitive columns from the inputs")
_IMAGE_SIZE = count(28, low=4, le=105,
                    help="side of the square images, in pixels (the originals are 105)")
_VERIFY = Option(False, help="check the files against the SHA256SUMS beside them first")


@hookimpl
def paralab_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec("digits", "paralab.data.builtin:digits",
                    "scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes); embedded.",
                    _SPLIT_OPTIONS),
        DatasetSpec("iris", "paralab.data.builtin:iris",
                    "Fisher's iris (150 flowers, 4 features, 3 classes); embedded.",
                    _SPLIT_OPTIONS),
        DatasetSpec("wine", "paralab.data.builtin:wine",
                    "UCI wine (178 wines, 13 features, 3 classes); embedded.", _SPLIT_OPTIONS),
        DatasetSpec("breast_cancer", "paralab.data.builtin:breast_cancer",
                    "Wisconsin breast cancer (569 tumours, 30 features, 2 classes); embedded.",
                    _SPLIT_OPTIONS),
        DatasetSpec("mnist", "paralab.data.images:mnist",
                    "MNIST from IDX files under root (or $PARALAB_DATA/mnist).",
                    {"files": one_of("test", ("test", "both"),
                                     help="'test': split the 10k test file; 'both': official"),
                     **_SPLIT_OPTIONS, "download": _DOWNLOAD, "verify": _VERIFY},
                    needs_root=True),
        DatasetSpec("omniglot", "paralab.data.images:omniglot",
                    "Omniglot characters from the official zips (few-shot classes).",
                    {"sets": Option(("small1", "small2"), min_length=1,
                                    items=Option("", type=str, choices=_OMNIGLOT_SETS),
                                    help="which official zips to read"),
                     "image_size": _IMAGE_SIZE, "verify": _VERIFY,
                     "rotations": Option(False, help="add each character turned by 90, 180 "
                                                     "and 270 degrees as new classes (x4, "
                                                     "Vinyals et al.)")}, needs_root=True),
        DatasetSpec("omniglot_runs", "paralab.data.images:omniglot_runs",
                    "The 20 one-shot classification runs of Lake et al. 2015 (all_runs.zip).",
                    {"image_size": _IMAGE_SIZE, "verify": _VERIFY}, needs_root=True),
        DatasetSpec("compas", "paralab.data.tabular:compas",
                    "ProPublica COMPAS two-year recidivism, filtered as in their analysis "
                    "(or every row); COMPAS's decile_score, score_text and the row id are kept "
                    "as features for audits of the given scores.",
                    {**_SPLIT_OPTIONS, "drop_sensitive": _DROP_SENSITIVE, "verify": _VERIFY,
                     "filter": one_of("propublica", ("propublica", "none"),
                                      help="propublica: the 6,172 rows of their regression "
                                           "analysis; none: all 7,214 rows (the population of "
                                           "their false positive/negative rate tables)")},
                    needs_root=True,
                    sensitive=("race", "sex", "age_cat")),
        DatasetSpec("adult", "paralab.data.tabular:adult",
                    "UCI Adult census income (adult.data for train, adult.test for test).",
                    {"drop_sensitive": _DROP_SENSITIVE, "download": _DOWNLOAD, "verify": _VERIFY},
                    needs_root=True,
                    sensitive=("sex", "race")),
        DatasetSpec("german_credit", "paralab.data.tabular:german_credit",
                    "UCI Statlog German credit (1,000 applicants).",
                    {**_SPLIT_OPTIONS, "drop_sensitive": _DROP_SENSITIVE, "download": _DOWNLOAD,
                     "verify": _VERIFY},
                    needs_root=True, sensitive=("sex", "age_group")),
    ]


@hookimpl
def paralab_models() -> list[ModelSpec]:
    return [
        ModelSpec("mlp", "paralab.models:mlp", "A multilayer perceptron on flattened inputs.",
                  {"hidden": Option([256, 256], items=count(1), help="widths of the hidden layers"),
                   "activation": one_of("relu", ("relu", "tanh", "gelu", "sigmoid")),
                   "dropout": Option(0.0, ge=0, lt=1, help="dropout after each hidden layer"),
                   "batch_norm": Option(False, help="BatchNorm1d after each hidden Linear")}),
        ModelSpec("cnn", "paralab.models:cnn",
                  "A small convolutional network for image data (2 conv blocks, 1 linear).",
                  {"channels": Option([32, 64], min_length=1, items=count(1),
                                      help="output channels of each conv block"),
                   "hidden": count(128, help="width of the linear layer")}),
        ModelSpec("linear", "paralab.models:linear", "A linear (softmax regression) model.", {}),
        ModelSpec("keras", "paralab.keras_models:keras_model",
                  "A Keras 3 model on Keras's torch backend: builder(info, **options) returns a "
                  "keras.Model (one logit per class); it trains under every protocol as any "
                  "torch module does.",
                  {"builder": Option("", type=str, min_length=1, required=True,
                                     help="'package.module:function' building the Keras model"),
                   "options": Option({}, type=dict, help="keyword arguments of the builder")},
                  requires=("keras",), install="pip install 'paralab[keras]'",
                  example={"builder": "paralab.keras_models:example_mlp"}),
    ]


@hookimpl
def paralab_protocols() -> list[ProtocolSpec]:
    return [
        ProtocolSpec("supervised", "paralab.protocols.supervised:Supervised",
                     "Epochs of minibatch training on the train split; evaluation on test.",
                     {"epochs": count(10), "batch_size": count(32),
                      "eval_every": count(1, help="evaluate every this many epochs (and last)"),
                      "train_split": Option("train", min_length=1),
                      "eval_splits": Option(["test"], items=Option("", type=str)),
                      "sampling": one_of("auto", ("auto", "shuffle", "poisson"),
                                         help="batches: shuffled, or Poisson-sampled (auto: "
                                              "Poisson when middleware acts on gradients)")},
                     example={"epochs": 2}, accepts=("gradient",),
                     method_interface="GradientMethod", applies_losses=True,
                     middleware_hooks=("paralab_process_gradients",), resumable=True,
                     seed_axis=True),
    ]


_OPTIMIZER_PROTOCOLS = ("supervised",)
_OMNIGLOT_SETS = ("background", "evaluation", "small1", "small2")


@hookimpl
def paralab_methods() -> list[MethodSpec]:
    return [
        MethodSpec("sgd", "paralab.methods:SGD", "Stochastic gradient descent with momentum.",
                   {"lr": positive(0.05, help="learning rate"),
                    "momentum": Option(0.0, ge=0, lt=1),
                    "weight_decay": non_negative(0.0, help="L2 penalty")},
                   protocols=_OPTIMIZER_PROTOCOLS, family="gradient"),
        MethodSpec("adam", "paralab.methods:Adam", "Adam.",
                   {"lr": positive(0.001, help="learning rate"),
                    "weight_decay": non_negative(0.0, help="L2 penalty")},
                   protocols=_OPTIMIZER_PROTOCOLS,
                   family="gradient"),
    ]


@hookimpl
def paralab_metrics() -> list[MetricSpec]:
    return [
        MetricSpec("accuracy", "paralab.evaluation:accuracy_metric", "Fraction correct."),
        MetricSpec("loss", "paralab.evaluation:loss_metric", "Mean cross-entropy."),
        MetricSpec("per_class_accuracy", "paralab.evaluation:per_class_accuracy_metric",
                   "Recall of each class."),
        MetricSpec("confusion_matrix", "paralab.evaluation:confusion_matrix_metric",
                   "Counts of (target, prediction) pairs."),
        MetricSpec("grouped_accuracy", "paralab.evaluation:grouped_accuracy_metric",
                   "Accuracy per value of a per-example feature (a task, a sensitive group).",
                   {"feature": Option("", type=str, min_length=1, required=True,
                                      help="a per-example feature of the dataset")},
                   example={"feature": "group"}),
    ]


@hookimpl(trylast=True)
def paralab_process_update(update: Any) -> Any:
    """The identity: middleware wrappers transform what this returns."""
    return update


@hookimpl(trylast=True)
def paralab_process_gradients(gradients: Any) -> Any:
    """The identity: the optimizer applies ``gradients.gradient()``, the sum of the per-example
    gradients over ``batch_size`` (the batch mean); middleware wrappers transform it."""
    return gradients
