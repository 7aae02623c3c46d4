"""paralab_continual: continual learning as a paralab protocol.

Contributes the ``continual`` protocol (class-, task- and domain-incremental streams as index
views into the shared dataset), native strategies (``naive``, ``joint`` (offline, the upper
bound), ``cumulative``, ``ewc``, ``online_ewc``, ``si``, ``lwf``, ``replay``, ``agem``,
``der`` (DER/DER++), ``er_ace``, ``gdumb``, ``icarl``, ``bic``), each a base loop plus strategy plugins that compose in the
spec (``plugins = [...]``, :mod:`paralab_continual.composition`), the ``avalanche`` method that
runs any Avalanche strategy on a paralab stream, and the accuracy matrix with average
accuracy, forgetting, backward and forward transfer, and memory figures per experience.

This module is the entry point: names, option declarations and ``"module:attribute"`` strings
only, no torch. The choice tuples below are the one source of the valid values; the modules
that act on them (``scenarios``, ``buffers``, ``strategies``) import them from here.
"""

from __future__ import annotations

from typing import Any

from paralab import (
    MethodSpec,
    Option,
    ProtocolSpec,
    count,
    hookimpl,
    non_negative,
    one_of,
    positive,
)

PARALAB_API = "1.0"

SCENARIOS = ("class_incremental", "task_incremental", "domain_incremental")
DOMAINS = ("permuted", "rotated", "split")
OPTIMIZERS = ("sgd", "adam")
HEADS = ("auto", "shared", "multi")
EWC_MODES = ("separate", "online")
POLICIES = ("reservoir", "class_balanced", "experience_balanced")
AVALANCHE_STRATEGIES = (
    "AETraining", "AGEM", "AR1", "BiC", "CWRStar", "CoPE", "Cumulative", "DER", "ER_ACE",
    "ER_AML", "EWC", "ExpertGateStrategy", "FeatureReplay", "FromScratchTraining", "GDumb",
    "GEM", "GSS_greedy", "GenerativeReplay", "ICaRL", "JointTraining", "LFL",
    "LearningToPrompt", "LwF", "MAS", "MIR", "Naive", "PNNStrategy", "PackNet", "Replay",
    "SCR", "SI", "StreamingLDA", "SynapticIntelligence", "VAETraining",
)
"""The supervised strategies of ``avalanche.training`` (avalanche-lib 0.6, the pinned range),
plus ``SI``, an alias of ``SynapticIntelligence``; a test checks the list against the
installed Avalanche."""

_PROTOCOLS = ("continual",)

PLUGIN_FAMILY = "continual_plugin"
"""The ``family`` of a method that can also be a strategy plugin (``method.plugins``); a
third party's plugin-only component is a MethodSpec of this family with ``protocols = ()``."""

_LR = positive(0.05, help="learning rate")
_MOMENTUM = Option(0.0, ge=0, lt=1, help="SGD momentum (optimizer = 'sgd')")
_OPTIMIZER_NAME = one_of("sgd", OPTIMIZERS, help="the torch optimizer")

_OPTIMIZER: dict[str, Any] = {
    "lr": _LR,
    "optimizer": _OPTIMIZER_NAME,
    "momentum": _MOMENTUM,
    "weight_decay": non_negative(0.0, help="L2 weight decay of the optimizer"),
    "reset_optimizer": Option(True, help="fresh optimizer state at each experience"),
    "heads": one_of("auto", HEADS,
                    help="multi: outputs masked to the experience's classes (needs task labels); "
                         "auto: multi in task-incremental streams"),
    "plugins": Option((), type=list, items=Option({}, type=dict),
                      help="strategy plugins after the method's own, in callback order: "
                           "[{name = 'replay', buffer_size = 200}, {name = 'ewc'}]"),
}
"""The options every native strategy takes (those of ``strategies.ContinualStrategy``)."""

_EWC_LAMBDA = non_negative(100.0, help="strength of the quadratic penalty")
_DECAY = Option(1.0, gt=0, le=1, help="online: the old Fisher is multiplied by this")
_FISHER_BATCH = count(0, low=0, help="minibatch size of the empirical Fisher (0: the protocol's "
                                      "batch_size, as Avalanche's train_mb_size)")


_OPTIMIZER_USED_WHEN = {"momentum": {"optimizer": ("sgd",)}}
"""Adam has no momentum option of this kind: set with it, momentum would do nothing."""


def _method(name: str, attribute: str, description: str, options: dict[str, Any],
            example: dict[str, Any], *, plugin: bool = True,
            used_when: dict[str, dict[str, tuple[Any, ...]]] | None = None) -> MethodSpec:
    """A native strategy; ``plugin``: also usable in another's ``plugins`` list (its own
    options there are ``options``, without the base loop's)."""
    return MethodSpec(
        name,
        f"paralab_continual.strategies:{attribute}",
        description,
        {**options, **_OPTIMIZER},
        protocols=_PROTOCOLS,
        example=example,
        family=PLUGIN_FAMILY if plugin else "",
        used_when={**_OPTIMIZER_USED_WHEN, **(used_when or {})},
    )


@hookimpl
def paralab_protocols() -> list[ProtocolSpec]:
    return [
        ProtocolSpec(
            "continual",
            "paralab_continual.vectorized:Continual",
            "A stream of experiences (class-, task- or domain-incremental index views of the "
            "dataset); records the accuracy matrix, average accuracy, forgetting, BWT and FWT.",
            {
                "scenario": one_of("class_incremental", SCENARIOS,
                                   help="how the stream changes from experience to experience"),
                "experiences": count(5, help="experiences in the stream (at most the classes "
                                             "when classes are split)"),
                "epochs": count(1, help="epochs over each experience"),
                "batch_size": count(32, help="minibatch size"),
                "domain": one_of("permuted", DOMAINS,
                                 help="the change of a domain-incremental stream"),
                "shuffle_classes": Option(True, help="shuffle the class order with "
                                                     "class_order_seed (else 0..C-1)"),
                "class_order_seed": Option(0, type=int, help="seed of the class shuffle"),
                "class_order": Option((), type=list, items=Option(0, type=int, ge=0),
                                      help="an explicit class order, each class once "
                                           "(overrides the shuffle)"),
                "max_rotation": Option(180.0, type=float,
                                       help="rotated: experience j turns j * max_rotation / "
                                            "experiences degrees"),
                "train_split": Option("train", type=str, min_length=1,
                                      help="the split experiences train on"),
                "eval_split": Option("test", type=str, min_length=1,
                                     help="the split experiences are evaluated on"),
                "forward_transfer": Option(True, help="evaluate the untrained model first "
                                                      "(the baseline of FWT)"),
                "plot": Option(True, help="write accuracy_matrix.png to the run folder"),
                "online": Option(False, help="one pass, a minibatch at a time: online and "
                                             "anytime accuracy (epochs must be 1)"),
                "eval_every": count(0, low=0, help="online: training steps between anytime "
                                                   "evaluations (0: at experience ends only)"),
                "blurry": Option(0.0, type=float, ge=0, lt=1,
                                 help="fraction of each experience's training rows moved to "
                                      "the others (blurry boundaries, class-incremental)"),
            },
            example={"experiences": 2, "epochs": 1},
            # Options that act only in some streams: set elsewhere they would do nothing.
            used_when={
                "domain": {"scenario": ("domain_incremental",)},
                "max_rotation": {"scenario": ("domain_incremental",), "domain": ("rotated",)},
                "class_order_seed": {"shuffle_classes": (True,)},
            },
            main_metric="average_accuracy",
            method_interface="ContinualStrategy",
            # Every native strategy's loss is OptimizerMethod.loss (cross-entropy plus
            # run.extra_loss); the avalanche method, which does not add them, says so itself.
            applies_losses=True,
            middleware_hooks=(),
            seed_axis=True,
            resumable=True,
        )
    ]


@hookimpl
def paralab_methods() -> list[MethodSpec]:
    return [
        _method("naive", "Naive", "Fine-tuning on each experience in turn (the lower bound); "
                "with plugins, the base loop of a composed strategy.",
                {}, {"lr": 0.05}, plugin=False),
        _method("joint", "Joint",
                "Offline joint training on the union of every experience (the upper bound): "
                "all of it in the first experience's phase, nothing after. Memory: the whole "
                "stream's rows at once.",
                {}, {"lr": 0.05}, plugin=False),
        _method("cumulative", "Cumulative",
                "Training on the union of every experience seen so far, at each experience. "
                "Memory: every row seen so far.",
                {}, {"lr": 0.05}, plugin=False),
        _method("ewc", "EWC", "Elastic weight consolidation (Kirkpatrick et al. 2017). Memory: two model-sized "
                "tensors (the folded penalty A, B), whatever the number of experiences.",
                {"ewc_lambda": _EWC_LAMBDA,
                 "mode": one_of("separate", EWC_MODES,
                                help="one penalty per experience, or one decayed (online)"),
                 "decay": _DECAY, "fisher_batch_size": _FISHER_BATCH},
                {"ewc_lambda": 10.0}, used_when={"decay": {"mode": ("online",)}}),
        _method("online_ewc", "OnlineEWC",
                "Online EWC (Schwarz et al. 2018): one decayed Fisher around the newest weights. "
                "Memory: two model-sized tensors.",
                {"ewc_lambda": _EWC_LAMBDA, "decay": _DECAY, "fisher_batch_size": _FISHER_BATCH},
                {"ewc_lambda": 10.0}),
        _method("si", "SI", "Synaptic intelligence (Zenke et al. 2017). Memory: four model-sized tensors "
                "(A, B, the summed importance, the start of the experience).",
                {"si_lambda": non_negative(1.0, help="strength of the quadratic penalty"),
                 "damping": positive(0.1, help="added to the squared parameter change")},
                {"si_lambda": 1.0}),
        _method("lwf", "LwF", "Learning without forgetting (Li and Hoiem 2016): distillation. Memory: one "
                "frozen copy of the model.",
                {"alpha": non_negative(1.0, help="weight of the distillation loss"),
                 "temperature": positive(2.0, help="softmax temperature of the distillation")},
                {"alpha": 1.0}),
        _method("replay", "Replay",
                "Experience replay from a memory of indices into the shared data "
                "(reservoir, class-balanced or experience-balanced). Memory: buffer_size rows, "
                "stored as two int64 indices each (memory/buffer_bytes: their size as copies).",
                {"buffer_size": count(200, help="rows the memory holds"),
                 "policy": one_of("reservoir", POLICIES, help="which rows the memory keeps"),
                 "memory_batch_size": count(0, low=0,
                                            help="memory rows per minibatch (0: batch size)")},
                {"buffer_size": 20}),
        _method("der", "DER",
                "Dark experience replay (Buzzega et al. 2020), Avalanche's variant: a "
                "class-balanced memory with the outputs stored when each row's experience "
                "ended; alpha * MSE to them + beta * CE on a memory batch (beta = 0: DER, "
                "> 0: DER++). Memory: buffer_size rows as indices plus their output vectors.",
                {"buffer_size": count(200, help="rows the memory holds"),
                 "alpha": non_negative(0.1, help="weight of the MSE to the stored outputs"),
                 "beta": non_negative(0.5, help="weight of the memory's cross-entropy "
                                                "(0: DER, > 0: DER++)"),
                 "memory_batch_size": count(0, low=0,
                                            help="memory rows per step (0: batch size)")},
                {"buffer_size": 40}),  # a whole memory batch (32): DER waits for one
        _method("er_ace", "ERACE",
                "ER-ACE (Caccia et al. 2022), Avalanche's offline variant: a class-balanced "
                "memory that takes each experience's rows before it is trained; the loss "
                "averages the memory batch's CE and the current batch's CE over the classes "
                "present in it. Memory: buffer_size rows as indices.",
                {"buffer_size": count(200, help="rows the memory holds"),
                 "memory_batch_size": count(10, help="memory rows per step (Avalanche's "
                                                     "batch_size_mem)")},
                {"buffer_size": 20}),
        _method("gdumb", "GDumb",
                "GDumb (Prabhu et al. 2020): a class-balanced memory filled greedily; at each "
                "experience the model restarts from its initial weights and trains on the "
                "memory alone. Memory: buffer_size rows as indices and a copy of the initial "
                "weights.",
                {"buffer_size": count(200, help="rows the memory holds")},
                {"buffer_size": 20}, plugin=False),
        _method("icarl", "ICaRL",
                "iCaRL (Rebuffi et al. 2017), as Avalanche's: exemplars chosen by herding "
                "(memory_size in all, fixed), sigmoid cross-entropy with distillation of the old "
                "classes, nearest-mean-of-exemplars classification; class-incremental, a model "
                "ending in a linear head. Memory: memory_size rows as indices, the class means "
                "and a frozen copy of the model.",
                {"memory_size": count(2000, help="exemplars kept in all (ceil(memory_size / "
                                                 "classes seen) per class)")},
                {"memory_size": 20}, plugin=False),
        _method("bic", "BiC",
                "BiC (Wu et al. 2019): replay of a class-balanced memory with distillation "
                "((1 - lam) CE + lam KD, lam = old classes / classes seen), then alpha * o + "
                "beta on the newest classes' logits fitted on a small balanced validation "
                "split; class-incremental. Memory: memory_size rows as indices, a frozen "
                "copy of the model and two numbers per experience.",
                {"memory_size": count(500, help="rows the class-balanced memory holds (the "
                                                "paper's 2,000 is more than small streams have)"),
                 "val_fraction": Option(0.1, gt=0, lt=1,
                                        help="of each old class's exemplars, held out to fit "
                                             "the correction (as many rows of each new class)"),
                 "temperature": positive(2.0, help="temperature of the distillation"),
                 "bias_lr": positive(1.0, help="L-BFGS step of the correction's fit"),
                 "bias_steps": count(100, help="L-BFGS iterations of the correction's fit")},
                {"memory_size": 60}, plugin=False),
        _method("agem", "AGEM",
                "Averaged gradient episodic memory (Chaudhry et al. 2019): gradient projection. "
                "Memory: patterns_per_experience rows per experience, as indices.",
                {"patterns_per_experience": count(100, help="memory rows kept per experience"),
                 "sample_size": count(64, help="memory rows of each reference gradient")},
                {"patterns_per_experience": 10, "sample_size": 16}),
        MethodSpec(
            "avalanche",
            "paralab_continual.avalanche_adapter:AvalancheStrategy",
            "Any Avalanche strategy (Naive, EWC, Replay, LwF, SI, GEM, AGEM, ...) trained on "
            "a paralab stream; paralab evaluates.",
            {
                "strategy": Option("Naive", type=str, choices=AVALANCHE_STRATEGIES,
                                   help="an avalanche.training class (SI: SynapticIntelligence)"),
                "lr": _LR,
                "optimizer": _OPTIMIZER_NAME,
                "momentum": _MOMENTUM,
                "strategy_options": Option(None, type=(dict, None),
                                           help="extra constructor arguments of the strategy"),
                "avalanche_metrics": Option(False, help="also record Avalanche's own metrics"),
            },
            protocols=_PROTOCOLS,
            example={"strategy": "Naive"},
            used_when=_OPTIMIZER_USED_WHEN,
            requires=("avalanche",),
            install="pip install 'paralab[continual]'",
            # Avalanche trains through its own loop: the spec's loss terms never enter it.
            applies_losses=False,
        ),
    ]
