"""The semantic loss of Xu et al. (ICML 2018), as a loss term under any protocol.

The outputs are read as independent Bernoulli variables ``p_i = sigmoid(logit_i)``; the
semantic loss of a constraint ``alpha`` is ``-log sum_{x |= alpha} prod_i p_i^x_i (1-p_i)^(1-x_i)``,
the negative log weighted model count of the constraint. Two constraints have closed forms here,
computed in log space on the logits' device:

* ``exactly_one``: the worlds with one true output; their count is a log-sum-exp over outputs.
* ``hierarchy``: the outputs are the nodes of a class DAG (leaves = the dataset's classes);
  the valid worlds are "one leaf and exactly its ancestors true", one per leaf, so the count is
  a log-sum-exp over leaves of a ``(batch, nodes) @ (nodes, leaves)`` product.

Both are checked against brute-force weighted model counting by the logic engine in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from paralab import LossTerm, Metric
from paralab_neurosymbolic.fuzzy import FuzzyLogic, exactly_one_satisfaction

if TYPE_CHECKING:
    from paralab import Batch, Predictions, RunContext, SharedDataset

CONSTRAINTS = ("exactly_one", "hierarchy")
SEMANTICS = ("probabilistic", "ltn")


def exactly_one_log_probability(logits: torch.Tensor) -> torch.Tensor:
    """log P(exactly one output true) per row, outputs independent Bernoullis."""
    positive, negative = F.logsigmoid(logits), F.logsigmoid(-logits)
    return torch.logsumexp(positive - negative, dim=-1) + negative.sum(-1)


@dataclass(frozen=True)
class HierarchyWorlds:
    """The valid worlds of a class DAG: ``mask[l, j]`` is 1 when node ``j`` is leaf ``l`` or one
    of its ancestors. Nodes are ordered leaves first (the dataset's classes), then the rest."""

    nodes: tuple[str, ...]
    leaves: tuple[str, ...]
    mask: torch.Tensor

    @classmethod
    def from_knowledge(cls, knowledge: Any, leaves: tuple[str, ...] | None = None) -> HierarchyWorlds:
        dag = knowledge.hierarchy()
        found = knowledge.leaves()
        leaves = tuple(leaves) if leaves is not None else tuple(found)
        if sorted(leaves) != sorted(found):
            raise ValueError(
                f"hierarchy {knowledge.source or '(in memory)'}: its leaves {found} are not the "
                f"dataset's classes {list(leaves)}"
            )
        import networkx as nx

        inner = [n for n in nx.topological_sort(dag) if n not in leaves]
        nodes = (*leaves, *inner)
        position = {node: j for j, node in enumerate(nodes)}
        mask = torch.zeros(len(leaves), len(nodes))
        for row, leaf in enumerate(leaves):
            for node in {leaf} | nx.descendants(dag, leaf):
                mask[row, position[node]] = 1.0
        return cls(nodes, leaves, mask)

    def leaf_log_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``(batch, leaves)``: log P(world of leaf l) with independent node sigmoids."""
        mask = self.mask.to(logits.device, logits.dtype)
        return F.logsigmoid(logits) @ mask.T + F.logsigmoid(-logits) @ (1 - mask).T

    def log_probability(self, logits: torch.Tensor) -> torch.Tensor:
        """log P(the outputs form a valid world) per row."""
        self.check_width(logits)
        return torch.logsumexp(self.leaf_log_probabilities(logits), dim=-1)

    def node_targets(self, leaf_targets: torch.Tensor) -> torch.Tensor:
        """The indicator of each target leaf's world, ``(batch, nodes)``."""
        return self.mask.to(leaf_targets.device)[leaf_targets]

    def violations(self, logits: torch.Tensor) -> torch.Tensor:
        """Per row: 1.0 when thresholding each node at 0.5 gives no valid world."""
        self.check_width(logits)
        predicted = (logits > 0).to(self.mask.dtype)
        valid = (predicted[:, None, :] == self.mask.to(logits.device)[None]).all(-1).any(-1)
        return (~valid).float()

    def check_width(self, logits: torch.Tensor) -> None:
        if logits.shape[-1] != len(self.nodes):
            raise ValueError(
                f"hierarchy constraint: outputs have {logits.shape[-1]} columns but the class DAG "
                f"has {len(self.nodes)} nodes {list(self.nodes)}; use the class_hierarchy dataset "
                "so that models output one logit per node"
            )


def hierarchy_of(dataset: SharedDataset) -> HierarchyWorlds:
    """The DAG a ``class_hierarchy`` dataset carries (clear error for other datasets)."""
    worlds = dataset.meta.get("hierarchy_worlds")
    if worlds is None:
        raise ValueError(
            f"dataset {dataset.name!r} carries no class hierarchy; use the class_hierarchy "
            "dataset (its classes are the DAG's nodes)"
        )
    return worlds


def load_worlds(hierarchy: str) -> HierarchyWorlds:
    """The valid worlds of the knowledge file (or built-in name) ``hierarchy``; a file that
    is missing, unreadable or not a DAG is a ``ValueError`` naming the ``hierarchy`` option."""
    from paralab_neurosymbolic.knowledge import KnowledgeBase, KnowledgeError

    try:
        return HierarchyWorlds.from_knowledge(KnowledgeBase.load(hierarchy))
    except KnowledgeError as error:
        raise ValueError(f"hierarchy = {hierarchy!r}: {error}") from error


def same_hierarchy(hierarchy: str, source: str) -> bool:
    """Whether the option ``hierarchy`` (a built-in name or a path) names the knowledge file
    ``source`` (what a ``class_hierarchy`` dataset records as its ``meta["hierarchy"]``)."""
    from paralab_neurosymbolic.knowledge import BUILTIN

    return Path(BUILTIN.get(hierarchy, hierarchy)).resolve() == Path(source).resolve()


def _worlds_for(run: RunContext, hierarchy: str) -> HierarchyWorlds:
    """The run's dataset's DAG when it carries one, else the ``hierarchy`` file's."""
    if "hierarchy_worlds" in run.dataset.meta:
        return hierarchy_of(run.dataset)
    return load_worlds(hierarchy)


class SemanticLoss(LossTerm):
    """``weight * mean(-log P(constraint))`` over a batch's logits, under any protocol that
    applies loss terms; with ``semantics = "ltn"``, ``weight * (1 - sat)`` where ``sat`` is the
    fuzzy satisfaction of the constraint over the batch (:mod:`.fuzzy`, Logic Tensor
    Networks). Options are declared in the plugin's ``LossSpec``."""

    def __init__(self, constraint: str = "exactly_one", weight: float = 0.1,
                 hierarchy: str = "digits", semantics: str = "probabilistic",
                 tnorm: str = "product", p_exists: float = 2.0, p_forall: float = 2.0) -> None:
        self.constraint = constraint
        self.weight = weight
        self.hierarchy = hierarchy
        self.semantics = semantics
        self.logic = FuzzyLogic(tnorm, p_exists, p_forall) if semantics == "ltn" else None
        self._worlds: HierarchyWorlds | None = None

    def validate(self, run: RunContext) -> None:
        """For ``constraint = "hierarchy"``: the DAG (the dataset's, else the ``hierarchy``
        file's) loads, and the model's outputs, one per class, are its nodes; ``semantics =
        "ltn"`` has the ``exactly_one`` formula only."""
        if self.semantics == "ltn" and self.constraint != "exactly_one":
            raise ValueError(self._ltn_refusal())
        if self.constraint != "hierarchy":
            return
        worlds = _worlds_for(run, self.hierarchy)
        classes = run.dataset.info.n_classes
        if classes != len(worlds.nodes):
            raise ValueError(
                f"constraint = 'hierarchy', hierarchy = {self.hierarchy!r}: the DAG has "
                f"{len(worlds.nodes)} nodes but dataset {run.dataset.name!r} has {classes} "
                f"classes (the model's outputs); use dataset = {{ name = 'class_hierarchy', "
                f"base = '{run.dataset.name}', hierarchy = '{self.hierarchy}' }}, or "
                f"constraint = 'exactly_one'"
            )
        self._worlds = worlds

    def _ltn_refusal(self) -> str:
        return (f"semantics = 'ltn', constraint = {self.constraint!r}: the LTN semantics has "
                "the exactly_one formula only; use constraint = 'exactly_one', or semantics = "
                "'probabilistic'")

    def __call__(self, batch: Batch) -> torch.Tensor:
        if self.logic is not None:
            if self.constraint != "exactly_one":
                raise ValueError(self._ltn_refusal())
            truth = torch.sigmoid(batch.logits)
            return self.weight * (1.0 - exactly_one_satisfaction(truth, self.logic))
        if self.constraint == "exactly_one":
            log_p = exactly_one_log_probability(batch.logits)
        else:
            log_p = self.worlds(batch).log_probability(batch.logits)
        return -self.weight * log_p.mean()

    def worlds(self, batch: Batch) -> HierarchyWorlds:
        if self._worlds is None:
            if batch.run is not None:
                self._worlds = _worlds_for(batch.run, self.hierarchy)
            else:
                self._worlds = load_worlds(self.hierarchy)
        return self._worlds


def exactly_one_violations(predictions: Predictions, dataset: SharedDataset) -> float:
    """Fraction of rows whose independently thresholded outputs do not mark exactly one class."""
    marked = (predictions.logits > 0).sum(dim=-1)
    return float((marked != 1).float().mean())


class ExactlyOneViolations(Metric):
    """The ``exactly_one_violations`` metric (:func:`exactly_one_violations`)."""

    def __call__(self, predictions: Predictions, dataset: SharedDataset) -> float:
        return exactly_one_violations(predictions, dataset)


def exactly_one_violations_metric() -> ExactlyOneViolations:
    """The ``exactly_one_violations`` metric (a factory, as MetricSpec expects)."""
    return ExactlyOneViolations()


class HierarchyViolations(Metric):
    """The fraction of rows whose outputs, thresholded at 0.5, form no valid world of the
    class DAG (the dataset's, else the ``hierarchy`` file's).

    Outputs over every node are checked against the DAG; outputs over the leaves only (a flat
    classifier) are valid when exactly one leaf is marked, its ancestors being implied."""

    def __init__(self, hierarchy: str = "digits") -> None:
        self.hierarchy = hierarchy
        self._fallback: HierarchyWorlds | None = None

    def validate(self, run: RunContext) -> None:
        """The ``hierarchy`` file loads when the dataset carries no DAG of its own."""
        if "hierarchy_worlds" not in run.dataset.meta:
            self._fallback = load_worlds(self.hierarchy)

    def __call__(self, predictions: Predictions, dataset: SharedDataset) -> float:
        logits = predictions.extras.get("node_logits", predictions.logits)
        if "hierarchy_worlds" in dataset.meta:
            worlds = hierarchy_of(dataset)
        else:
            if self._fallback is None:
                self._fallback = load_worlds(self.hierarchy)
            worlds = self._fallback
        if logits.shape[-1] == len(worlds.leaves) != len(worlds.nodes):
            return float(((logits > 0).sum(-1) != 1).float().mean())
        return float(worlds.violations(logits).mean())


def hierarchy_violations_metric(hierarchy: str = "digits") -> HierarchyViolations:
    """The ``hierarchy_violations`` metric (a factory, as MetricSpec expects)."""
    return HierarchyViolations(hierarchy)
