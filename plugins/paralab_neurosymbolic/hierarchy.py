"""Hierarchical classification over a class DAG from a knowledge base.

The ``class_hierarchy`` dataset is a base dataset (digits, mnist ...) whose classes are the
nodes of a DAG: the base classes are the leaves, the superclasses follow. It shares the base
dataset's tensors (no copy). Any model therefore outputs one logit per node, and the
``hierarchical`` protocol trains them as independent sigmoids (multi-label, each example's
targets being its leaf and the leaf's ancestors), optionally with the semantic loss of the
hierarchy. Evaluation reports, per split:

* ``violations``: rows whose nodes thresholded at 0.5 form no valid world (the naive decoding);
* ``naive_accuracy``: the leaf with the highest logit;
* ``accuracy`` (through the run's metrics): consistent decoding, the most probable valid world.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from paralab_neurosymbolic.semantic import HierarchyWorlds, hierarchy_of

if TYPE_CHECKING:
    from paralab.context import RunContext
    from paralab.data import SharedDataset


def class_hierarchy(
    root: str | None = None, base: str = "digits", hierarchy: str = "digits"
) -> SharedDataset:
    """The base dataset with the DAG's nodes as classes (leaves first); ``hierarchy`` is a
    built-in name or a knowledge file (.kb text or .json node-link)."""
    from paralab.data import SharedDataset, load_dataset
    from paralab_neurosymbolic.knowledge import KnowledgeBase

    if base == "class_hierarchy":
        raise ValueError("class_hierarchy: base must be another dataset (digits, mnist ...)")
    knowledge = KnowledgeBase.load(hierarchy)
    data = load_dataset(base, **({"root": root} if root is not None else {}))
    leaves = tuple(data.class_names)
    worlds = HierarchyWorlds.from_knowledge(knowledge, leaves)
    return SharedDataset(
        name="class_hierarchy",
        x=data.x,
        y=data.y,
        splits=dict(data.splits),
        features=dict(data.features),
        sensitive=data.sensitive,
        categories=dict(data.categories),
        class_names=worlds.nodes,
        feature_names=data.feature_names,
        meta={**data.meta, "base": base, "hierarchy": knowledge.source,
              "hierarchy_worlds": worlds},
    )


def consistent_logits(worlds: HierarchyWorlds, node_logits: torch.Tensor) -> torch.Tensor:
    """Node-width logits whose argmax is the most probable valid world's leaf: leaf columns
    hold log P(world of that leaf), the other nodes a value far below."""
    scores = worlds.leaf_log_probabilities(node_logits)
    floor = scores.min(dim=-1, keepdim=True).values - 30.0
    rest = floor.expand(-1, len(worlds.nodes) - len(worlds.leaves))
    return torch.cat([scores, rest], dim=-1)


class Hierarchical:
    """The ``hierarchical`` protocol: multi-label training over a class DAG's nodes."""

    def __init__(
        self,
        hierarchy: str = "digits",
        epochs: int = 10,
        batch_size: int = 32,
        semantic_weight: float = 0.0,
        labelled: float = 1.0,
        train_split: str = "train",
        eval_splits: Sequence[str] = ("test",),
    ) -> None:
        if epochs < 1 or batch_size < 1:
            raise ValueError(f"hierarchical: epochs and batch_size must be >= 1, got "
                             f"{epochs}, {batch_size}")
        if semantic_weight < 0:
            raise ValueError(f"hierarchical: semantic_weight must be >= 0, got {semantic_weight}")
        self.hierarchy = hierarchy
        self.epochs, self.batch_size = epochs, batch_size
        if not 0.0 < labelled <= 1.0:
            raise ValueError(f"hierarchical: labelled must be in (0, 1], got {labelled}")
        self.semantic_weight = semantic_weight
        self.labelled = labelled
        self.train_split = train_split
        self.eval_splits = tuple(eval_splits)

    def worlds(self, run: RunContext) -> HierarchyWorlds:
        """The dataset's DAG, or the ``hierarchy`` option's DAG over a dataset whose classes
        already are its nodes."""
        if "hierarchy_worlds" in run.dataset.meta:
            return hierarchy_of(run.dataset)
        from paralab_neurosymbolic.knowledge import KnowledgeBase

        worlds = HierarchyWorlds.from_knowledge(KnowledgeBase.load(self.hierarchy))
        if tuple(run.dataset.class_names) != worlds.nodes:
            raise ValueError(
                f"hierarchical: dataset {run.dataset.name!r} has classes "
                f"{list(run.dataset.class_names)}, not the nodes of hierarchy {self.hierarchy!r}; "
                f"use dataset = {{ name = 'class_hierarchy', base = '{run.dataset.name}', "
                f"hierarchy = '{self.hierarchy}' }}"
            )
        return worlds

    def execute(self, run: RunContext) -> None:
        from paralab.context import Batch
        from paralab.methods import GradientMethod

        method, model = run.method, run.model
        if not isinstance(method, GradientMethod):
            raise TypeError(f"hierarchical: method {run.spec.method.name!r} is not a GradientMethod")
        worlds = self.worlds(run)
        train = run.dataset.split(self.train_split)
        for split in self.eval_splits:
            run.dataset.split(split)
        # Semi-supervised (Xu et al. 2018): only a seeded fraction of the training rows keep
        # their labels; the others are trained by the semantic loss (and loss terms) alone.
        known = torch.zeros(len(run.dataset), device=run.dataset.device)
        order = torch.randperm(len(train), generator=run.generator)
        chosen = train.indices[order[: max(1, round(self.labelled * len(train)))].to(
            train.indices.device)]
        known[chosen] = 1.0
        model.train()
        method.setup(run, model)
        optimizer = method.optimizer
        assert optimizer is not None
        for epoch in run.progress(range(self.epochs), desc="epochs", total=self.epochs):
            with run.phase("epoch", epoch, labelled=int(known.sum())) as phase:
                total, batches = 0.0, 0
                for x, y, index in train.batches(self.batch_size, shuffle=True,
                                                 generator=run.generator):
                    logits = model(x)
                    worlds.check_width(logits)
                    # summed over nodes: the log-likelihood of the target world, on the
                    # scale of the semantic loss (a log-probability of worlds, not per node)
                    supervised = F.binary_cross_entropy_with_logits(
                        logits, worlds.node_targets(y), reduction="none"
                    ).sum(-1)
                    mask = known[index]
                    loss = (supervised * mask).sum() / mask.sum().clamp_min(1.0)
                    if self.semantic_weight:
                        loss = loss - self.semantic_weight * worlds.log_probability(logits).mean()
                    loss = loss + run.extra_loss(Batch(x, y, index, logits, model, run))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach())
                    batches += 1
                phase.metrics["train/loss"] = total / max(batches, 1)
                for split in self.eval_splits:
                    self.evaluate(run, worlds, split)

    @torch.no_grad()
    def evaluate(self, run: RunContext, worlds: HierarchyWorlds, split: str) -> None:
        from paralab.evaluation import Predictions, predict

        model = run.model
        model.eval()
        view = run.dataset.split(split)
        raw = predict(model, run.dataset, view.indices, batch_size=run.spec.eval_batch_size,
                      split=split)
        node_logits = raw.logits
        leaves = len(worlds.leaves)
        run.record(f"{split}/violations", float(worlds.violations(node_logits).mean()))
        naive = node_logits[:, :leaves].argmax(dim=-1)
        run.record(f"{split}/naive_accuracy", float((naive == raw.targets).float().mean()))
        decoded = Predictions(
            logits=consistent_logits(worlds, node_logits),
            targets=raw.targets,
            indices=raw.indices,
            dataset=run.dataset,
            split=split,
            extras={"node_logits": node_logits},
        )
        run.evaluate(split, predictions=decoded)
        model.train()
