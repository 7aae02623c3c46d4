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

The protocol trains only through the run's :class:`paralab.GradientMethod`: each batch is one
``method.step`` with :class:`NodeObjective` (the per-node likelihood of the target worlds, plus
the weighted semantic loss) as the objective, so the method's ``loss`` (an override included)
and the spec's loss terms decide what is minimized.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from paralab import Protocol
from paralab_neurosymbolic.addition import require_checkpointable
from paralab_neurosymbolic.semantic import (
    HierarchyWorlds,
    hierarchy_of,
    load_worlds,
    same_hierarchy,
)

if TYPE_CHECKING:
    from paralab import Batch, GradientMethod, RunContext, SharedDataset


def class_hierarchy(
    root: str | None = None, base: str = "digits", hierarchy: str = "digits"
) -> SharedDataset:
    """The base dataset with the DAG's nodes as classes (leaves first); ``hierarchy`` is a
    built-in name or a knowledge file (.kb text or .json node-link)."""
    from paralab import SharedDataset, load_dataset
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


@dataclass(frozen=True)
class NodeObjective:
    """The task loss of one batch, handed to the method as ``objective``
    (:meth:`paralab.GradientMethod.step`): the binary cross-entropy of every node against the
    target leaf's world, summed over nodes (the log-likelihood of that world, on the scale of
    the semantic loss: a log-probability of worlds, not per node), averaged over the rows that
    keep their labels (``known``), minus ``semantic_weight`` times the mean log-probability
    that the outputs form a valid world (every row, labelled or not)."""

    worlds: HierarchyWorlds
    known: torch.Tensor
    semantic_weight: float

    def __call__(self, batch: Batch) -> torch.Tensor:
        logits = batch.logits
        self.worlds.check_width(logits)
        supervised = F.binary_cross_entropy_with_logits(
            logits, self.worlds.node_targets(batch.targets), reduction="none"
        ).sum(-1)
        mask = self.known[batch.indices]
        loss = (supervised * mask).sum() / mask.sum().clamp_min(1.0)
        if self.semantic_weight:
            loss = loss - self.semantic_weight * self.worlds.log_probability(logits).mean()
        return loss


class Hierarchical(Protocol):
    """The ``hierarchical`` protocol: multi-label training over a class DAG's nodes.

    Options are declared (and range-checked) in the plugin's ``ProtocolSpec``; what depends
    on the data is checked by :meth:`validate`."""

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
        self.hierarchy = hierarchy
        self.epochs, self.batch_size = epochs, batch_size
        self.semantic_weight = semantic_weight
        self.labelled = labelled
        self.train_split = train_split
        self.eval_splits = tuple(eval_splits)
        self._restored: dict[str, Any] | None = None
        self._live: dict[str, Any] = {}

    def checkpoint_state(self, run: RunContext) -> dict[str, Any]:
        """After the epochs closed so far: the model, the method's optimizer, and the rows
        that keep their labels (drawn before the first epoch from ``run.generator``, whose
        saved state is past them)."""
        return {"epochs_done": self._live["epochs_done"], "model": run.model.state_dict(),
                "method": run.method.state_dict(), "labelled_rows": self._live["chosen"]}

    def restore_state(self, run: RunContext, state: dict[str, Any]) -> None:
        self._restored = state

    def worlds(self, run: RunContext) -> HierarchyWorlds:
        """The dataset's DAG, or the ``hierarchy`` option's DAG over a dataset whose classes
        already are its nodes."""
        if "hierarchy_worlds" in run.dataset.meta:
            return hierarchy_of(run.dataset)
        worlds = load_worlds(self.hierarchy)
        if tuple(run.dataset.class_names) != worlds.nodes:
            raise ValueError(
                f"hierarchy = {self.hierarchy!r}: dataset {run.dataset.name!r} has classes "
                f"{list(run.dataset.class_names)}, not the nodes of that hierarchy; "
                f"use dataset = {{ name = 'class_hierarchy', base = '{run.dataset.name}', "
                f"hierarchy = '{self.hierarchy}' }}"
            )
        return worlds

    def validate(self, run: RunContext) -> None:
        """The splits exist; the dataset's classes are the DAG's nodes; a ``hierarchy`` set
        in the spec is the one a ``class_hierarchy`` dataset carries (else it would be
        silently ignored)."""
        run.dataset.check_splits(self.train_split, self.eval_splits)
        require_checkpointable(run)
        self.worlds(run)
        carried = run.dataset.meta.get("hierarchy")
        if (
            "hierarchy_worlds" in run.dataset.meta
            and "hierarchy" in run.options.get("protocol", {})
            and carried
            and not same_hierarchy(self.hierarchy, carried)
        ):
            raise ValueError(
                f"hierarchy = {self.hierarchy!r}, but dataset {run.dataset.name!r} carries the "
                f"hierarchy {carried}, which is the one trained on; set the dataset's "
                f"hierarchy option instead, or drop the protocol's"
            )

    def execute(self, run: RunContext) -> None:
        method: GradientMethod = run.method
        model = run.model
        worlds = self.worlds(run)
        train = run.dataset.split(self.train_split)
        # Semi-supervised (Xu et al. 2018): only a seeded fraction of the training rows keep
        # their labels; the others are trained by the semantic loss (and loss terms) alone.
        known = torch.zeros(len(run.dataset), device=run.dataset.device)
        restored, self._restored = self._restored, None
        if restored is None:
            order = torch.randperm(len(train), generator=run.generator)
            chosen = train.indices[order[: max(1, round(self.labelled * len(train)))].to(
                train.indices.device)]
        else:  # paralab resume: the rows the interrupted run kept labelled
            chosen = restored["labelled_rows"].to(train.indices.device)
        known[chosen] = 1.0
        objective = NodeObjective(worlds, known, self.semantic_weight)
        model.train()
        method.setup(run, model)
        start = 0
        if restored is not None:
            model.load_state_dict(restored["model"])
            method.load_state_dict(restored["method"])
            start = int(restored["epochs_done"])
        self._live = {"epochs_done": start, "chosen": chosen}
        epochs = range(start, self.epochs)
        for epoch in run.progress(epochs, desc="epochs", total=self.epochs, done=start):
            with run.phase("epoch", epoch, labelled=int(known.sum())) as phase:
                total, batches = 0.0, 0
                for x, y, index in train.batches(self.batch_size, shuffle=True,
                                                 generator=run.generator):
                    total += method.step(run, model, x, y, index, objective=objective)
                    batches += 1
                phase.metrics["train/loss"] = total / max(batches, 1)
                for split in self.eval_splits:
                    self.evaluate(run, worlds, split)
                self._live["epochs_done"] = epoch + 1

    @torch.no_grad()
    def evaluate(self, run: RunContext, worlds: HierarchyWorlds, split: str) -> None:
        from paralab import Predictions, predict

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
