"""paralab_fewshot: few-shot learning as index-tensor episodes on any shared dataset.

Contributes the ``episodic`` protocol (class-split N-way K-shot episodes, meta-validation,
meta-test accuracy with a 95% confidence interval), the methods ``protonet``, ``maml``,
``fomaml``, ``anil``, ``reptile``, ``finetune`` and ``l2l_maml`` (learn2learn's MAML on
paralab episodes), and the ``conv4`` backbone. MAML-family inner loops run for a whole
meta-batch at once with ``torch.func``.

This module is what the registry imports to list the plugin: names and
``"module:attribute"`` strings only, nothing heavy.
"""

from __future__ import annotations

from paralab.components import MethodSpec, ModelSpec, ProtocolSpec
from paralab.hookspecs import hookimpl

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

_MAML_OPTIONS = {
    "inner_lr": 0.4,
    "inner_steps": 1,
    "eval_inner_steps": 0,
    "meta_lr": 0.001,
    "first_order": False,
    "engine": "auto",
}


@hookimpl
def paralab_protocols() -> list[ProtocolSpec]:
    return [
        ProtocolSpec(
            "episodic",
            "paralab_fewshot.protocol:Episodic",
            "Few-shot meta-learning: N-way K-shot Q-query episodes from a class split "
            "(meta-train/val/test); meta-test accuracy with a 95% CI over eval_episodes.",
            {
                "ways": 5,
                "shots": 1,
                "queries": 15,
                "train_ways": 0,
                "meta_batch": 32,
                "meta_iterations": 1000,
                "eval_every": 100,
                "val_episodes": 100,
                "eval_episodes": 600,
                "eval_meta_batch": 100,
                "class_split": [0.6, 0.2, 0.2],
                "split_seed": 0,
                "split_by": "",
                "lake_runs": False,
            },
            example=_TINY_EPISODES,
            main_metric="meta_test/accuracy",
        ),
    ]


@hookimpl
def paralab_methods() -> list[MethodSpec]:
    return [
        MethodSpec(
            "protonet",
            "paralab_fewshot.methods.protonet:ProtoNet",
            "Prototypical Networks (Snell et al. 2017): nearest class-mean embedding.",
            {"meta_lr": 0.001, "embedding": "penultimate"},
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
            _MAML_OPTIONS,
            protocols=_EPISODIC,
            example={"inner_steps": 2},
        ),
        MethodSpec(
            "reptile",
            "paralab_fewshot.methods.reptile:Reptile",
            "Reptile (Nichol et al. 2018): move the initialisation towards adapted weights.",
            {
                "inner_lr": 0.1,
                "inner_steps": 5,
                "eval_inner_steps": 0,
                "meta_lr": 1.0,
                "engine": "auto",
            },
            protocols=_EPISODIC,
            example={"inner_steps": 2},
        ),
        MethodSpec(
            "finetune",
            "paralab_fewshot.methods.finetune:Finetune",
            "Fine-tuning baseline (Chen et al. 2019): pretrain on meta-train classes, fit a "
            "linear head per episode.",
            {"meta_lr": 0.001, "head_steps": 100, "head_lr": 1.0},
            protocols=_EPISODIC,
            example={"head_steps": 5},
        ),
        MethodSpec(
            "l2l_maml",
            "paralab_fewshot.methods.l2l:L2LMAML",
            "learn2learn's MAML (clone/adapt per task) on paralab episodes; needs learn2learn.",
            {k: v for k, v in _MAML_OPTIONS.items() if k != "engine"},
            protocols=_EPISODIC,
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
            {"hidden": 64, "layers": 4, "out_features": 0},
            example={"hidden": 8, "layers": 2},
        ),
    ]
