"""paralab_neurosymbolic: differentiable logic over neural predicates, and knowledge graphs.

Contributes (names only here; the code is imported when an experiment uses it):

* protocol ``addition``: MNIST addition (Manhaeve et al. 2018), learning a digit classifier
  from sums of N-digit numbers through exact (or approximate) probabilistic inference;
* protocol ``hierarchical``: classification that must respect a class DAG from a knowledge
  base, reporting constraint violations;
* model ``lenet`` (DeepProbLog's MNIST network);
* (both protocols train with any gradient method: the host's ``adam``, ``sgd``, ...);
* loss ``semantic_loss`` (Xu et al. 2018): exactly-one or hierarchy consistency, under any
  protocol;
* dataset ``class_hierarchy`` (a base dataset whose classes are a DAG's nodes);
* metrics ``exactly_one_violations`` and ``hierarchy_violations``.

Nothing heavy is imported here (no torch, no networkx).
"""

from __future__ import annotations

from paralab.components import (
    DatasetSpec,
    LossSpec,
    MetricSpec,
    ModelSpec,
    ProtocolSpec,
)
from paralab.hookspecs import hookimpl

PARALAB_API = "1.0"



@hookimpl
def paralab_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            "class_hierarchy",
            "paralab_neurosymbolic.hierarchy:class_hierarchy",
            "A base dataset (digits, mnist ...) whose classes are the nodes of a class DAG from a "
            "knowledge file: leaves = the base classes, then superclasses. Shares the base tensors.",
            {"base": "digits", "hierarchy": "digits"},
            example={"base": "digits", "hierarchy": "digits"},
        ),
    ]


@hookimpl
def paralab_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            "lenet",
            "paralab_neurosymbolic.models:lenet",
            "The LeNet of DeepProbLog's MNIST experiments (conv 6/16, fc 120/84); "
            "image datasets.",
        ),
    ]


@hookimpl
def paralab_protocols() -> list[ProtocolSpec]:
    return [
        ProtocolSpec(
            "addition",
            "paralab_neurosymbolic.addition:Addition",
            "MNIST addition: learn digits from sums of N-digit numbers only, by exact "
            "probabilistic inference over the neural predicate digit(X, D).",
            {
                "digits_per_number": 1,
                "pairs": 0,
                "test_pairs": 0,
                "epochs": 1,
                "batch_size": 32,
                "inference": "exact",
                "top_k": 64,
                "samples": 1000,
                "exact_budget": 10_000_000,
                "train_split": "train",
                "eval_splits": ["test"],
            },
            example={"epochs": 1, "pairs": 40, "test_pairs": 20, "batch_size": 8},
            accepts=("gradient",),
        ),
        ProtocolSpec(
            "hierarchical",
            "paralab_neurosymbolic.hierarchy:Hierarchical",
            "Hierarchical classification over a class DAG (a knowledge base): one sigmoid per "
            "node, consistent decoding, constraint violations reported.",
            {
                "hierarchy": "digits",
                "epochs": 10,
                "batch_size": 32,
                "semantic_weight": 0.0,
                "labelled": 1.0,
                "train_split": "train",
                "eval_splits": ["test"],
            },
            example={"epochs": 1, "hierarchy": "digits",
                     "dataset": {"name": "class_hierarchy", "base": "digits"}},
            accepts=("gradient",),
        ),
    ]


@hookimpl
def paralab_losses() -> list[LossSpec]:
    return [
        LossSpec(
            "semantic_loss",
            "paralab_neurosymbolic.semantic:SemanticLoss",
            "Semantic loss (Xu et al. 2018): -log P(constraint) of the outputs read as "
            "independent Bernoullis; constraint exactly_one or hierarchy (a class DAG).",
            {"constraint": "exactly_one", "weight": 0.1, "hierarchy": "digits"},
            example={"constraint": "exactly_one", "weight": 0.1},
        ),
    ]


@hookimpl
def paralab_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            "exactly_one_violations",
            "paralab_neurosymbolic.semantic:exactly_one_violations_metric",
            "Fraction of rows whose outputs, thresholded independently at 0.5, do not mark "
            "exactly one class.",
        ),
        MetricSpec(
            "hierarchy_violations",
            "paralab_neurosymbolic.semantic:hierarchy_violations_metric",
            "Fraction of rows whose node outputs, thresholded at 0.5, form no valid world of "
            "the class DAG (the class_hierarchy dataset's, else the hierarchy file's).",
            {"hierarchy": "digits"},
        ),
    ]
