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

PARALAB_API = "1.0"

_SPLIT_OPTIONS = {"test_fraction": 0.2, "seed": 0}


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
                    {"files": "test", **_SPLIT_OPTIONS, "download": False}, needs_root=True),
        DatasetSpec("omniglot", "paralab.data.images:omniglot",
                    "Omniglot characters from the official zips (few-shot classes).",
                    {"sets": ["small1", "small2"], "image_size": 28}, needs_root=True),
        DatasetSpec("omniglot_runs", "paralab.data.images:omniglot_runs",
                    "The 20 one-shot classification runs of Lake et al. 2015 (all_runs.zip).",
                    {"image_size": 28}, needs_root=True),
        DatasetSpec("compas", "paralab.data.tabular:compas",
                    "ProPublica COMPAS two-year recidivism, filtered as in their analysis.",
                    {**_SPLIT_OPTIONS, "drop_sensitive": False}, needs_root=True,
                    sensitive=("race", "sex", "age_cat")),
        DatasetSpec("adult", "paralab.data.tabular:adult",
                    "UCI Adult census income (adult.data for train, adult.test for test).",
                    {"drop_sensitive": False, "download": False}, needs_root=True,
                    sensitive=("sex", "race")),
        DatasetSpec("german_credit", "paralab.data.tabular:german_credit",
                    "UCI Statlog German credit (1,000 applicants).",
                    {**_SPLIT_OPTIONS, "drop_sensitive": False, "download": False},
                    needs_root=True, sensitive=("sex", "age_group")),
    ]


@hookimpl
def paralab_models() -> list[ModelSpec]:
    return [
        ModelSpec("mlp", "paralab.models:mlp", "A multilayer perceptron on flattened inputs.",
                  {"hidden": [256, 256], "activation": "relu", "dropout": 0.0}),
        ModelSpec("cnn", "paralab.models:cnn",
                  "A small convolutional network for image data (2 conv blocks, 1 linear).",
                  {"channels": [32, 64], "hidden": 128}),
        ModelSpec("linear", "paralab.models:linear", "A linear (softmax regression) model.", {}),
    ]


@hookimpl
def paralab_protocols() -> list[ProtocolSpec]:
    return [
        ProtocolSpec("supervised", "paralab.protocols.supervised:Supervised",
                     "Epochs of minibatch training on the train split; evaluation on test.",
                     {"epochs": 10, "batch_size": 32, "eval_every": 1,
                      "train_split": "train", "eval_splits": ["test"]},
                     example={"epochs": 2}, accepts=("gradient",)),
    ]


_OPTIMIZER_PROTOCOLS = ("supervised",)


@hookimpl
def paralab_methods() -> list[MethodSpec]:
    return [
        MethodSpec("sgd", "paralab.methods:SGD", "Stochastic gradient descent with momentum.",
                   {"lr": 0.05, "momentum": 0.0, "weight_decay": 0.0},
                   protocols=_OPTIMIZER_PROTOCOLS, family="gradient"),
        MethodSpec("adam", "paralab.methods:Adam", "Adam.",
                   {"lr": 0.001, "weight_decay": 0.0}, protocols=_OPTIMIZER_PROTOCOLS,
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
                   {"feature": ""}, example={"feature": "group"}),
    ]


@hookimpl(trylast=True)
def paralab_process_update(update: Any) -> Any:
    """The identity: middleware wrappers transform what this returns."""
    return update
