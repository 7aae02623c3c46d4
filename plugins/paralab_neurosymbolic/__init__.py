"""paralab_neurosymbolic: differentiable logic over neural predicates, and knowledge graphs.

Contributes (names only here; the code is imported when an experiment uses it):

* protocol ``addition``: MNIST addition (Manhaeve et al. 2018), learning a digit classifier
  from sums of N-digit numbers through exact (or approximate) probabilistic inference;
* protocol ``logic``: a task written as a program file (``program = "task.pl"`` or the
  built-in ``mnist_addition``), its query template and a label expression; neural predicates
  bound to the spec's model by name;
* protocol ``hierarchical``: classification that must respect a class DAG from a knowledge
  base, reporting constraint violations;
* protocol ``kinship`` and dataset ``kinship``: CLUTRR-style stories generated from family
  trees, a relation extractor trained from the stories' relations through the kinship
  program's composition rules (``data/kinship.pl``), tested on longer chains;
* protocol ``grid_path``: path finding on grids of digit images, walls read by the network,
  trained from connectivity alone through the compiled reachability program;
* model ``lenet`` (DeepProbLog's MNIST network);
* (both protocols train with any :class:`paralab.GradientMethod`, the host's ``adam``,
  ``sgd`` ..., through its ``step`` with the protocol's task loss as the objective);
* loss ``semantic_loss`` (Xu et al. 2018): exactly-one or hierarchy consistency, under any
  protocol;
* dataset ``class_hierarchy`` (a base dataset whose classes are a DAG's nodes);
* metrics ``exactly_one_violations`` and ``hierarchy_violations``.

Nothing heavy is imported here (no torch, no networkx).
"""

from __future__ import annotations

from paralab import (
    DatasetSpec,
    LossSpec,
    MetricSpec,
    ModelSpec,
    Option,
    ProtocolSpec,
    count,
    hookimpl,
    non_negative,
    one_of,
)

PARALAB_API = "1.0"

INFERENCE_MODES = ("exact", "auto", "topk", "sample", "sdd")
"""The ``inference`` choices: ``paralab_neurosymbolic.logic.MODES``, repeated here so that
listing the plugin imports no torch (a test keeps the two equal)."""

CONSTRAINTS = ("exactly_one", "hierarchy")
"""The ``constraint`` choices of ``semantic_loss`` (``semantic.CONSTRAINTS``, kept equal)."""

SEMANTICS = ("probabilistic", "ltn")
"""The ``semantics`` choices of ``semantic_loss`` (``semantic.SEMANTICS``, kept equal)."""

TNORMS = ("product", "lukasiewicz")
"""The ``tnorm`` choices of ``semantic_loss`` (``fuzzy.TNORMS``, kept equal)."""

MAX_DIGITS = 15
"""The most digits per number ``addition`` grounds (``addition.MAX_DIGITS``, kept equal);
beyond 4 only top-k proofs (``inference = "topk"`` or ``"auto"``) run."""

_HIERARCHY = Option(
    "digits", type=str, min_length=1,
    help="the class DAG: a built-in name (digits) or a .kb/.json knowledge file",
)
_TRAIN_SPLIT = Option("train", type=str, min_length=1, help="the split trained on")
_EVAL_SPLITS = Option(["test"], items=Option("test", type=str, min_length=1),
                      help="the splits evaluated after each epoch")
_GRADIENT = {"accepts": ("gradient",), "method_interface": "GradientMethod",
             "applies_losses": True, "middleware_hooks": (), "resumable": True}
"""What both protocols consume: any GradientMethod, stepped with the protocol's objective, so
the method's loss (and the spec's loss terms) decide what is minimized; no middleware. Both
resume from phase checkpoints (``checkpoint_every``)."""


@hookimpl
def paralab_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            "class_hierarchy",
            "paralab_neurosymbolic.hierarchy:class_hierarchy",
            "A base dataset (digits, mnist ...) whose classes are the nodes of a class DAG from a "
            "knowledge file: leaves = the base classes, then superclasses. Shares the base tensors.",
            {"base": Option("digits", type=str, min_length=1,
                            help="the dataset whose classes are the DAG's leaves"),
             "hierarchy": _HIERARCHY},
            example={"base": "digits", "hierarchy": "digits"},
        ),
        DatasetSpec(
            "kinship",
            "paralab_neurosymbolic.kinship:kinship_dataset",
            "CLUTRR-style stories generated from random family trees: a row per story edge "
            "(a noisy embedded sentence of its relation, 14 classes), the stories as "
            "(inputs, query, label) examples per chain length; splits train, test, k<n>.",
            {"train_lengths": Option([2, 3], items=count(2, le=12),
                                     help="chain lengths of the training stories"),
             "test_lengths": Option([4, 5, 6], items=count(4, le=12),
                                    help="chain lengths of the test stories (split test, and "
                                         "k<n> each)"),
             "stories_per_length": count(300, help="training stories per length"),
             "test_stories": count(150, help="test stories per length"),
             "dim": count(16, help="width of an edge sentence's embedding"),
             "noise": non_negative(0.6, help="Gaussian noise added to each sentence"),
             "seed": count(0, low=0, help="the generator's seed (trees, stories, noise)")},
            example={"stories_per_length": 50, "test_stories": 20},
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
                "digits_per_number": count(1, le=MAX_DIGITS,
                                           help="digits N of each number: sums of two N-digit numbers "
                                                "(beyond 4: inference topk or auto)"),
                "pairs": count(0, low=0, help="training examples per epoch; 0: one pass over "
                                              "the train images, more recombines them"),
                "test_pairs": count(0, low=0, help="test examples per eval split; 0: one pass"),
                "epochs": count(1),
                "batch_size": count(32, help="examples (sums) per step"),
                "inference": Option("exact", type=str, choices=INFERENCE_MODES,
                                    help="exact; auto (exact within exact_budget, else topk); "
                                         "topk; sample; sdd (knowledge compilation with "
                                         "PySDD, exact)"),
                "top_k": count(64, help="proofs kept by topk inference"),
                "samples": count(1000, help="worlds drawn by sample inference"),
                "exact_budget": count(10_000_000, help="work units exact inference may take "
                                                       "per example"),
                "train_split": _TRAIN_SPLIT,
                "eval_splits": _EVAL_SPLITS,
            },
            example={"epochs": 1, "pairs": 40, "test_pairs": 20, "batch_size": 8},
            **_GRADIENT,
        ),
        ProtocolSpec(
            "logic",
            "paralab_neurosymbolic.logic_protocol:LogicTask",
            "A task from a program file: examples are (inputs: images bound to the query "
            "template's constants, query, label); trains the network named in the program's "
            "nn(...) through probabilistic inference of the labelled query.",
            {
                "program": Option("mnist_addition", type=str, min_length=1,
                                  help="a .pl program file, or a built-in: mnist_addition"),
                "label": Option("A + B", type=str, min_length=1,
                                help="the observed output of an example: an arithmetic "
                                     "expression over its inputs' classes, named by the "
                                     "upper-cased input constants (A for a)"),
                "query": Option("", type=str,
                                help="the query template, e.g. addition(a, b, Z); empty: the "
                                     "program's one query(...) directive"),
                "network": Option("", type=str,
                                  help="the network name in the program's nn(...) that the "
                                       "spec's model implements; empty: the program's only one"),
                "examples": count(0, low=0, help="training examples per epoch; 0: one pass"),
                "test_examples": count(0, low=0, help="test examples per eval split; 0: one "
                                                      "pass"),
                "epochs": count(1),
                "batch_size": count(32, help="examples (queries) per step"),
                "inference": Option("exact", type=str, choices=INFERENCE_MODES,
                                    help="as the addition protocol's"),
                "top_k": count(64, help="proofs kept by topk inference"),
                "samples": count(1000, help="worlds drawn by sample inference"),
                "exact_budget": count(10_000_000, help="work units exact inference may take "
                                                       "per example"),
                "train_split": _TRAIN_SPLIT,
                "eval_splits": _EVAL_SPLITS,
            },
            example={"program": "mnist_addition", "label": "A + B", "epochs": 1,
                     "examples": 40, "test_examples": 20, "batch_size": 8},
            **_GRADIENT,
        ),
        ProtocolSpec(
            "hierarchical",
            "paralab_neurosymbolic.hierarchy:Hierarchical",
            "Hierarchical classification over a class DAG (a knowledge base): one sigmoid per "
            "node, consistent decoding, constraint violations reported.",
            {
                "hierarchy": Option("digits", type=str, min_length=1,
                                    help="the class DAG when the dataset carries none (a "
                                         "class_hierarchy dataset's own DAG wins)"),
                "epochs": count(10),
                "batch_size": count(32),
                "semantic_weight": non_negative(0.0, help="weight of the hierarchy's semantic "
                                                          "loss in the objective"),
                "labelled": Option(1.0, type=float, gt=0, le=1,
                                   help="fraction of training rows that keep their labels"),
                "train_split": _TRAIN_SPLIT,
                "eval_splits": _EVAL_SPLITS,
            },
            example={"epochs": 1, "hierarchy": "digits",
                     "dataset": {"name": "class_hierarchy", "base": "digits"}},
            **_GRADIENT,
        ),
        ProtocolSpec(
            "kinship",
            "paralab_neurosymbolic.kinship:Kinship",
            "CLUTRR-style kinship: the model reads each story edge's relation; trained from "
            "the story's relation only, through the composition rules of data/kinship.pl "
            "(exact fold over the chain); reports chain accuracy per length.",
            {
                "epochs": count(25),
                "batch_size": count(64, help="stories per step"),
                "train_split": _TRAIN_SPLIT,
                "eval_splits": _EVAL_SPLITS,
            },
            example={"epochs": 1, "dataset": {"name": "kinship", "stories_per_length": 50,
                                              "test_stories": 20}},
            **{**_GRADIENT, "resumable": False},
        ),
        ProtocolSpec(
            "grid_path",
            "paralab_neurosymbolic.gridpath:GridPath",
            "Path finding on grids of digit images: a cell is open when its digit is >= 5; "
            "trained from whether the corners connect, through the compiled (SDD) recursive "
            "reachability program; reports path and cell accuracy.",
            {
                "size": count(3, low=2, le=4, help="grid side (its corners always open)"),
                "examples": count(600, help="training grids"),
                "test_examples": count(200, help="test grids per eval split"),
                "epochs": count(5),
                "batch_size": count(16, help="grids per step"),
                "train_split": _TRAIN_SPLIT,
                "eval_splits": _EVAL_SPLITS,
            },
            example={"epochs": 1, "examples": 32, "test_examples": 16, "size": 2},
            **{**_GRADIENT, "resumable": False},
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
            {"constraint": one_of("exactly_one", CONSTRAINTS,
                                  help="exactly_one output true, or a valid world of the DAG"),
             "weight": non_negative(0.1, help="the term is weight * mean(-log P(constraint))"),
             "hierarchy": _HIERARCHY,
             "semantics": one_of("probabilistic", SEMANTICS,
                                 help="probabilistic: -log P(constraint) (Xu et al.); ltn: "
                                      "1 - fuzzy satisfaction (Logic Tensor Networks)"),
             "tnorm": one_of("product", TNORMS, help="the ltn t-norm family"),
             "p_exists": Option(2.0, type=float, ge=1, help="p of ltn's exists (pMean)"),
             "p_forall": Option(2.0, type=float, ge=1, help="p of ltn's forall (pMeanError)")},
            example={"constraint": "exactly_one", "weight": 0.1},
            used_when={key: {"semantics": ("ltn",)} for key in ("tnorm", "p_exists", "p_forall")},
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
            {"hierarchy": _HIERARCHY},
        ),
    ]
