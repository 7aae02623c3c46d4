"""paralab_fewshot: few-shot learning as index-tensor episodes on any shared dataset.

Contributes the ``episodic`` protocol (class-split N-way K-shot episodes, meta-validation,
meta-test accuracy with a 95% confidence interval), the methods ``protonet``, ``maml``,
``fomaml``, ``anil``, ``reptile``, ``finetune`` and ``l2l_maml`` (learn2learn's MAML on
paralab episodes), and the ``conv4`` backbone. MAML-family inner loops run for a whole
meta-batch at once with ``torch.func``.

This module is what the registry imports to list the plugin: names, ``"module:attribute"``
strings and option declarations only, nothing heavy. Every option is declared here once,
with its constraint; what depends on the data (``ways`` against the classes of a split,
``shots + queries`` against a class's examples, the model against the method) or on several
options (``class_split`` summing to 1) is checked by the protocol's and the methods'
``validate(run)``, before any run folder exists.
"""

from __future__ import annotations

from paralab import MethodSpec, ModelSpec, Option, ProtocolSpec, count, hookimpl, one_of, positive

PARALAB_API = "1.0"

_EPISODIC = ("episodic",)

_TINY_EPISODES = {
    "ways": 2,
    "shots": 1,
    "queries": 2,
    "meta_batch": 2,
    "meta_iterations": 2,
    "eval_every": 1,
    "val_episodes": 4,
    "eval_episodes": 6,
    "eval_meta_batch": 4,
    "class_split": [0.4, 0.3, 0.3],
}
"""The conformance kit's tiny run: 2-way episodes on its 10-class blobs."""

_SHARE = Option(0.2, type=float, ge=0, le=1, help="a share of the classes")

EPISODIC_OPTIONS = {
    "ways": count(5, low=2, help="N: classes per episode (meta-training: unless train_ways)"),
    "shots": count(1, help="K: labelled support examples per class"),
    "queries": count(15, help="Q: query examples per class, scored"),
    "train_ways": count(0, low=0, help="classes per meta-training episode (0: ways; else >= 2)"),
    "meta_batch": count(32, help="episodes per outer step"),
    "meta_iterations": count(1000, help="outer steps"),
    "eval_every": count(100, help="outer steps per meta_batch phase (each ends in validation)"),
    "val_episodes": count(100, low=0, help="meta-validation episodes per phase (0: none)"),
    "eval_episodes": count(600, help="meta-test episodes (600 as the papers report)"),
    "eval_meta_batch": count(100, help="episodes per evaluation batch"),
    "class_split": Option(
        [0.6, 0.2, 0.2],
        min_length=3,
        max_length=3,
        items=_SHARE,
        help="shares of the classes (or groups) for meta-train, meta-val, meta-test; sum 1",
    ),
    "split_seed": Option(0, type=int, help="seed of the class split (not the run's seed)"),
    "split_by": Option("", type=str, help="a per-example feature to split by group ('': class)"),
    "lake_runs": Option(False, help="also evaluate Lake et al.'s 20-way one-shot runs"),
    "select": one_of("auto", ("auto", "best_val", "last"),
                     help="the model meta-test evaluates: best_val (the phase with the best "
                          "meta-validation accuracy), last, or auto (best_val when there is "
                          "meta-validation)"),
    "lr_halving_every": count(0, low=0, help="halve the outer learning rate every N outer "
                                             "steps (Snell et al.: every 2,000 episodes); 0: "
                                             "constant"),
}
"""The ``episodic`` protocol's options (``Episodic.__init__`` takes exactly these)."""

_META_LR = positive(0.001, help="learning rate of the outer (Adam) optimizer")
_INNER_LR = positive(0.4, help="step size of the inner-loop SGD")
_INNER_STEPS = count(1, help="inner-loop steps in meta-training")
_EVAL_INNER_STEPS = count(0, low=0, help="inner-loop steps at evaluation (0: inner_steps)")
_FIRST_ORDER = Option(False, help="treat inner-loop gradients as constants")

MAML_ENGINES = ("auto", "factored", "vmap", "loop")
"""How MAML's and FOMAML's inner loops run for a meta-batch: ``factored`` (stacks of linear
layers, :mod:`paralab_fewshot.lowrank`), ``vmap`` (any functional model), ``loop`` (task by
task); ``auto`` picks ``factored`` when the model allows, else ``vmap``."""
VMAP_ENGINES = ("auto", "vmap", "loop")
"""The engines of ANIL and Reptile, which have no factored path (``auto`` is ``vmap``)."""
EMBEDDINGS = ("penultimate", "output")
"""What ProtoNets embed with: the model minus its last linear layer, or its outputs."""

_MAML_OPTIONS = {
    "inner_lr": _INNER_LR,
    "inner_steps": _INNER_STEPS,
    "eval_inner_steps": _EVAL_INNER_STEPS,
    "meta_lr": _META_LR,
    "first_order": _FIRST_ORDER,
    "engine": one_of(
        "auto", MAML_ENGINES, help="factored (linear stacks), vmap, loop; auto: best that fits"
    ),
}


@hookimpl
def paralab_protocols() -> list[ProtocolSpec]:
    return [
        ProtocolSpec(
            "episodic",
            "paralab_fewshot.seeds:Episodic",
            "Few-shot meta-learning: N-way K-shot Q-query episodes from a class split "
            "(meta-train/val/test); meta-test accuracy with a 95% CI over eval_episodes.",
            EPISODIC_OPTIONS,
            example=_TINY_EPISODES,
            main_metric="meta_test/accuracy",
            method_interface="EpisodicMethod",
            # Every episodic method but reptile adds run.extra_loss to what it optimizes;
            # reptile declares applies_losses=False, so the spec check refuses losses with it.
            applies_losses=True,
            middleware_hooks=(),
            # paralab_fewshot.seeds: K seeds of protonet, maml and fomaml meta-train stacked.
            seed_axis=True,
            resumable=True,
        ),
    ]


@hookimpl
def paralab_methods() -> list[MethodSpec]:
    return [
        MethodSpec(
            "protonet",
            "paralab_fewshot.methods.protonet:ProtoNet",
            "Prototypical Networks (Snell et al. 2017): nearest class-mean embedding.",
            {
                "meta_lr": _META_LR,
                "embedding": one_of(
                    "penultimate", EMBEDDINGS, help="the model minus its head, or its outputs"
                ),
            },
            protocols=_EPISODIC,
        ),
        MethodSpec(
            "maml",
            "paralab_fewshot.methods.maml:MAML",
            "MAML (Finn et al. 2017), second order; a meta-batch adapts at once (torch.func).",
            _MAML_OPTIONS,
            protocols=_EPISODIC,
            example={"inner_steps": 2},
        ),
        MethodSpec(
            "fomaml",
            "paralab_fewshot.methods.maml:FOMAML",
            "First-order MAML: inner-loop gradients treated as constants.",
            {k: v for k, v in _MAML_OPTIONS.items() if k != "first_order"},
            protocols=_EPISODIC,
            example={"inner_steps": 2},
        ),
        MethodSpec(
            "anil",
            "paralab_fewshot.methods.maml:ANIL",
            "ANIL (Raghu et al. 2020): MAML adapting only the last linear layer.",
            {
                **_MAML_OPTIONS,
                "engine": one_of("auto", VMAP_ENGINES, help="vmap or loop over tasks' heads"),
            },
            protocols=_EPISODIC,
            example={"inner_steps": 2},
        ),
        MethodSpec(
            "reptile",
            "paralab_fewshot.methods.reptile:Reptile",
            "Reptile (Nichol et al. 2018): move the initialisation towards adapted weights.",
            {
                "inner_lr": positive(0.1, help="step size of the inner-loop SGD"),
                "inner_steps": count(5, help="inner-loop SGD steps per task"),
                "eval_inner_steps": _EVAL_INNER_STEPS,
                "meta_lr": positive(1.0, help="Reptile's epsilon: the outer SGD step size"),
                "engine": one_of("auto", VMAP_ENGINES, help="vmap or loop over tasks"),
            },
            protocols=_EPISODIC,
            # Its outer step is "parameters - mean adapted parameters", not the gradient of a
            # loss: there is nothing to add a loss term to.
            applies_losses=False,
            example={"inner_steps": 2},
        ),
        MethodSpec(
            "finetune",
            "paralab_fewshot.methods.finetune:Finetune",
            "Fine-tuning baseline (Chen et al. 2019): pretrain on meta-train classes, fit a "
            "linear head per episode.",
            {
                "meta_lr": _META_LR,
                "head_steps": count(100, help="gradient steps fitting each episode's head"),
                "head_lr": positive(1.0, help="learning rate of the head's SGD"),
            },
            protocols=_EPISODIC,
            example={"head_steps": 5},
        ),
        MethodSpec(
            "l2l_maml",
            "paralab_fewshot.methods.l2l:L2LMAML",
            "learn2learn's MAML (clone/adapt per task) on paralab episodes; needs learn2learn.",
            {k: v for k, v in _MAML_OPTIONS.items() if k != "engine"},
            protocols=_EPISODIC,
            requires=("learn2learn",),
            install="pip install 'paralab[fewshot]' (on Python 3.11: bash "
                    "scripts/build_learn2learn.sh, a Cython-3 rebuild of learn2learn 0.2.0)",
        ),
    ]


@hookimpl
def paralab_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            "conv4",
            "paralab_fewshot.models:conv4",
            "Conv-4, the standard few-shot backbone: 4 x (conv3x3, batch norm, ReLU, "
            "maxpool), then a linear head.",
            {
                "hidden": count(64, help="channels of each block"),
                "layers": count(4, help="conv blocks"),
                "out_features": count(0, low=0, help="outputs of the head (0: the classes)"),
            },
            example={"hidden": 8, "layers": 2},
        ),
    ]
