"""paralab_continual: continual learning as a paralab protocol.

Contributes the ``continual`` protocol (class-, task- and domain-incremental streams as index
views into the shared dataset), native strategies (``naive``, ``joint``, ``ewc``,
``online_ewc``, ``si``, ``lwf``, ``replay``, ``agem``), the ``avalanche`` method that runs any
Avalanche strategy on a paralab stream, and the accuracy matrix with average accuracy,
forgetting, backward and forward transfer.

This module is the entry point: names and ``"module:attribute"`` strings only, no torch.
"""

from __future__ import annotations

from paralab.components import MethodSpec, ProtocolSpec
from paralab.hookspecs import hookimpl

PARALAB_API = "1.0"

_PROTOCOLS = ("continual",)
_OPTIMIZER = {
    "lr": 0.05,
    "optimizer": "sgd",
    "momentum": 0.0,
    "weight_decay": 0.0,
    "reset_optimizer": True,
    "heads": "auto",
}


def _method(name: str, attribute: str, description: str, options: dict, example: dict) -> MethodSpec:
    return MethodSpec(
        name,
        f"paralab_continual.strategies:{attribute}",
        description,
        {**options, **_OPTIMIZER},
        protocols=_PROTOCOLS,
        example=example,
    )


@hookimpl
def paralab_protocols() -> list[ProtocolSpec]:
    return [
        ProtocolSpec(
            "continual",
            "paralab_continual.protocol:Continual",
            "A stream of experiences (class-, task- or domain-incremental index views of the "
            "dataset); records the accuracy matrix, average accuracy, forgetting, BWT and FWT.",
            {
                "scenario": "class_incremental",
                "experiences": 5,
                "epochs": 1,
                "batch_size": 32,
                "domain": "permuted",
                "shuffle_classes": True,
                "class_order_seed": 0,
                "class_order": [],
                "max_rotation": 180.0,
                "train_split": "train",
                "eval_split": "test",
                "forward_transfer": True,
                "plot": True,
            },
            example={"experiences": 2, "epochs": 1},
            main_metric="average_accuracy",
        )
    ]


@hookimpl
def paralab_methods() -> list[MethodSpec]:
    return [
        _method("naive", "Naive", "Fine-tuning on each experience in turn (the lower bound).",
                {}, {"lr": 0.05}),
        _method("joint", "Joint",
                "Training on every experience seen so far at each experience (the upper bound).",
                {}, {"lr": 0.05}),
        _method("ewc", "EWC", "Elastic weight consolidation (Kirkpatrick et al. 2017).",
                {"ewc_lambda": 100.0, "mode": "separate", "decay": 1.0, "fisher_batch_size": 32},
                {"ewc_lambda": 10.0}),
        _method("online_ewc", "OnlineEWC",
                "Online EWC (Schwarz et al. 2018): one decayed Fisher around the newest weights.",
                {"ewc_lambda": 100.0, "decay": 1.0, "fisher_batch_size": 32},
                {"ewc_lambda": 10.0}),
        _method("si", "SI", "Synaptic intelligence (Zenke et al. 2017).",
                {"si_lambda": 1.0, "damping": 0.1}, {"si_lambda": 1.0}),
        _method("lwf", "LwF", "Learning without forgetting (Li and Hoiem 2016): distillation.",
                {"alpha": 1.0, "temperature": 2.0}, {"alpha": 1.0}),
        _method("replay", "Replay",
                "Experience replay from a memory of indices into the shared data "
                "(reservoir, class-balanced or experience-balanced).",
                {"buffer_size": 200, "policy": "reservoir", "memory_batch_size": 0},
                {"buffer_size": 20}),
        _method("agem", "AGEM",
                "Averaged gradient episodic memory (Chaudhry et al. 2019): gradient projection.",
                {"patterns_per_experience": 100, "sample_size": 64},
                {"patterns_per_experience": 10, "sample_size": 16}),
        MethodSpec(
            "avalanche",
            "paralab_continual.avalanche_adapter:AvalancheStrategy",
            "Any Avalanche strategy (Naive, EWC, Replay, LwF, SI, GEM, AGEM, ...) trained on "
            "a paralab stream; paralab evaluates.",
            {
                "strategy": "Naive",
                "lr": 0.05,
                "optimizer": "sgd",
                "momentum": 0.0,
                "strategy_options": {},
                "avalanche_metrics": False,
            },
            protocols=_PROTOCOLS,
            example={"strategy": "Naive"},
        ),
    ]
