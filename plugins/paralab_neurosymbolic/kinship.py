"""CLUTRR-style kinship reasoning (Sinha et al. 2019), generated here: family trees, stories
that are chains of k kinship edges between two people, and the relation between the chain's
ends as the label; a neural predicate reads each edge's relation from an embedded "sentence".

Why generated: CLUTRR's point is systematic generalisation, training on chains of length 2-3
and testing on longer ones, which a generator of family trees reproduces exactly (its text is
replaced by a noisy embedding per edge, the relation-extraction part a small network learns).

Relations are blood lines in a family tree: ``(up, down, gender)`` names the person reached by
going ``up`` generations from X and ``down`` again (father = (1, 0, m), nephew = (1, 2, m)).
Fourteen are named (parents, children, siblings, grandparents, grandchildren, uncles/aunts,
nephews/nieces); composing two relations along a simple path is the algebra in
:func:`compose`, which equals the tree's relation (test: every generated chain). The program
(``data/kinship.pl``) folds the chain with those composition facts; :func:`chain_distribution`
is the same fold over distributions (the chain's relation so far is all the rest needs, so
the fold is exact), checked against ProbLog 2.3 on the program.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from paralab import Protocol

NAMES = {
    (1, 0, "m"): "father", (1, 0, "f"): "mother", (0, 1, "m"): "son", (0, 1, "f"): "daughter",
    (1, 1, "m"): "brother", (1, 1, "f"): "sister", (2, 0, "m"): "grandfather",
    (2, 0, "f"): "grandmother", (0, 2, "m"): "grandson", (0, 2, "f"): "granddaughter",
    (2, 1, "m"): "uncle", (2, 1, "f"): "aunt", (1, 2, "m"): "nephew", (1, 2, "f"): "niece",
}
RELATIONS = sorted(NAMES.values())
"""The 14 relations, in the order of the neural predicate's domain."""
SHAPE = {name: key for key, name in NAMES.items()}
BASE = ("father", "mother", "son", "daughter", "brother", "sister")
"""The relations a story's edges state (parent, child, sibling)."""
PROGRAM = Path(__file__).with_name("data") / "kinship.pl"


def compose(first: str, second: str) -> str | None:
    """The relation of Z to X when Y is X's ``first`` and Z is Y's ``second``, or ``None``
    outside the 14 named ones (cousins, great-grandparents, X itself).

    Up ``u1``, down ``d1``, then up ``u2``, down ``d2``: going up no further than came down
    stays on the same line (``(u1, d1 - u2 + d2)``); going higher climbs past the turning
    point (``(u1 + u2 - d1, d2)``). The gender is Z's, the second relation's."""
    u1, d1, _ = SHAPE[first]
    u2, d2, gender = SHAPE[second]
    up, down = (u1, d1 - u2 + d2) if u2 <= d1 else (u1 + u2 - d1, d2)
    return NAMES.get((up, down, gender))


def composition_table() -> torch.Tensor:
    """``(R, R, R)`` 0/1 tensor: ``table[a, b, c] = 1`` when ``compose(a, b) = c``."""
    index = {name: i for i, name in enumerate(RELATIONS)}
    table = torch.zeros(len(RELATIONS), len(RELATIONS), len(RELATIONS))
    for a, b in itertools.product(RELATIONS, repeat=2):
        c = compose(a, b)
        if c is not None:
            table[index[a], index[b], index[c]] = 1.0
    return table


def program_text() -> str:
    """The kinship program: the composition facts and the chain fold (also data/kinship.pl)."""
    facts = "\n".join(
        f"compose({a}, {b}, {c})." for a, b in itertools.product(RELATIONS, repeat=2)
        if (c := compose(a, b)) is not None
    )
    return (
        "% CLUTRR-style kinship: the relation of a chain's last person to its first.\n"
        "% chain(Rs, R): folding the edge relations Rs left to right by compose/3 gives R.\n"
        f"{facts}\n"
        "chain([R], R).\n"
        "chain([R1, R2 | T], R) :- compose(R1, R2, R12), chain([R12 | T], R).\n"
    )


def chain_distribution(edges: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
    """P(chain relation = r) for a batch: ``edges`` is ``(batch, k, R)`` edge-relation
    probabilities; the result ``(batch, R)`` (its mass below 1 is the chains whose fold leaves
    the 14 relations). Differentiable: one bilinear step a edge."""
    table = composition_table().to(edges) if table is None else table
    state = edges[:, 0]
    for j in range(1, edges.shape[1]):
        state = torch.einsum("ba,bc,acd->bd", state, edges[:, j], table)
    return state


@dataclass(frozen=True)
class Story:
    """One example: the edge relations along a path (the story), its true relation."""

    edges: tuple[str, ...]
    label: str


def family_tree(generator: torch.Generator, generations: int = 4,
                children: tuple[int, int] = (2, 3)) -> tuple[list[int], list[int], list[str]]:
    """A random lineage tree: ``(parent, depth, gender)`` per person (parent -1 at the root),
    each person having ``children[0]..children[1]`` children down to ``generations``."""
    parent, depth, gender = [-1], [0], ["m" if torch.rand(1, generator=generator) < 0.5 else "f"]
    frontier = [0]
    for level in range(1, generations):
        following = []
        for person in frontier:
            count = int(torch.randint(children[0], children[1] + 1, (1,), generator=generator))
            for _ in range(count):
                parent.append(person)
                depth.append(level)
                gender.append("m" if torch.rand(1, generator=generator) < 0.5 else "f")
                following.append(len(parent) - 1)
        frontier = following
    return parent, depth, gender


def _relation(x: int, z: int, parent: list[int], depth: list[int], gender: list[str]) -> str | None:
    """The tree's relation of ``z`` to ``x`` (via their lowest common ancestor)."""
    ancestors = {}
    node, steps = x, 0
    while node != -1:
        ancestors[node] = steps
        node, steps = parent[node], steps + 1
    node, down = z, 0
    while node not in ancestors:
        node, down = parent[node], down + 1
    return NAMES.get((ancestors[node], down, gender[z]))


def stories(k: int, count: int, generator: torch.Generator, max_tries: int = 200_000) -> list[Story]:
    """``count`` stories of ``k`` edges: random simple paths in random family trees along
    parent, child and sibling edges whose ends (and every prefix's end) stand in one of the
    14 relations. The label is the tree's relation, which :func:`compose` reproduces."""
    found: list[Story] = []
    tries = 0
    while len(found) < count:
        parent, depth, gender = family_tree(generator)
        people = len(parent)
        kids: dict[int, list[int]] = {}
        for person, p in enumerate(parent):
            kids.setdefault(p, []).append(person)
        for _ in range(50):
            tries += 1
            if tries > max_tries:
                raise RuntimeError(f"kinship: {count} stories of length {k} not found in "
                                   f"{max_tries} tries")
            path = [int(torch.randint(people, (1,), generator=generator))]
            edges: list[str] = []
            ok = True
            for _ in range(k):
                here = path[-1]
                options = [p for p in ([parent[here]] if parent[here] >= 0 else [])]
                options += kids.get(here, [])
                options += [s for s in kids.get(parent[here], []) if s != here] \
                    if parent[here] >= 0 else []
                options = [o for o in options if o not in path]
                if not options:
                    ok = False
                    break
                step = options[int(torch.randint(len(options), (1,), generator=generator))]
                edges.append(_relation(here, step, parent, depth, gender) or "")
                path.append(step)
                if _relation(path[0], step, parent, depth, gender) is None:
                    ok = False
                    break
            if ok:
                found.append(Story(tuple(edges), _relation(path[0], path[-1], parent, depth,
                                                           gender) or ""))
                if len(found) == count:
                    break
    return found


def sentences(batch: list[Story], prototypes: torch.Tensor, noise: float,
              generator: torch.Generator) -> torch.Tensor:
    """``(batch, k, dim)`` embedded edge sentences: the edge relation's prototype plus
    Gaussian noise of scale ``noise`` (what relation extraction must read)."""
    index = {name: i for i, name in enumerate(RELATIONS)}
    ids = torch.tensor([[index[e] for e in story.edges] for story in batch])
    clean = prototypes[ids]
    return clean + noise * torch.randn(clean.shape, generator=generator)


def labels(batch: list[Story]) -> torch.Tensor:
    index = {name: i for i, name in enumerate(RELATIONS)}
    return torch.tensor([index[story.label] for story in batch])


def kinship_dataset(
    root: str | None = None,
    train_lengths: tuple[int, ...] | list[int] = (2, 3),
    test_lengths: tuple[int, ...] | list[int] = (4, 5, 6),
    stories_per_length: int = 300,
    test_stories: int = 150,
    dim: int = 16,
    noise: float = 0.6,
    seed: int = 0,
) -> Any:
    """The ``kinship`` dataset: a row per story edge (its embedded sentence; ``y`` its true
    relation, never trained on, only to measure the extractor), and the stories as examples
    of (inputs: the story's rows, query: ``story(e0, .., e{k-1}, R)`` of data/kinship.pl,
    label: the relation) in ``meta["stories"][split]``, one ``(rows, labels)`` pair of
    tensors per chain length. Splits: ``train`` (``train_lengths``), ``test`` (all
    ``test_lengths``) and ``k<n>`` per test length."""
    from paralab import SharedDataset

    del root  # generated, nothing to read
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(len(RELATIONS), dim, generator=generator)
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    splits: dict[str, list[torch.Tensor]] = {}
    groups: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    index = {name: i for i, name in enumerate(RELATIONS)}
    offset = 0
    plan = [("train", k, stories_per_length) for k in train_lengths] + \
        [("test", k, test_stories) for k in test_lengths]
    for split, k, count_ in plan:
        batch = stories(k, count_, generator)
        x = sentences(batch, prototypes, noise, generator).reshape(-1, dim)
        rows = torch.arange(offset, offset + len(x)).reshape(len(batch), k)
        offset += len(x)
        xs.append(x)
        ys.append(torch.tensor([index[e] for s in batch for e in s.edges]))
        for name in (split, f"k{k}") if split == "test" else (split,):
            splits.setdefault(name, []).append(rows.reshape(-1))
            groups.setdefault(name, []).append((rows, labels(batch)))
    return SharedDataset(
        name="kinship", x=torch.cat(xs), y=torch.cat(ys),
        splits={name: torch.cat(parts) for name, parts in splits.items()},
        class_names=tuple(RELATIONS),
        feature_names=tuple(f"e{i}" for i in range(dim)),
        meta={"stories": groups, "program": str(PROGRAM), "noise": noise},
    )


@dataclass(frozen=True)
class ChainObjective:
    """The task loss of a batch of stories of one length: ``-mean log P(story relation =
    label)`` by the chain fold over the extractor's edge distributions (what the protocol
    hands the method as ``objective``; the edge labels are never read, so the batch's targets
    become the extractor's own guesses, as in MNIST addition)."""

    labels: torch.Tensor
    length: int
    table: torch.Tensor

    def __call__(self, batch: Any) -> torch.Tensor:
        logits = batch.logits
        batch.targets = logits.detach().argmax(dim=-1)
        probs = torch.softmax(logits, dim=-1).reshape(len(self.labels), self.length, -1)
        p = chain_distribution(probs, self.table.to(probs)).gather(1, self.labels[:, None])
        return -p[:, 0].clamp_min(1e-12).log().mean()


class Kinship(Protocol):
    """The ``kinship`` protocol: CLUTRR-style stories, the relation extractor (the run's
    model over edge sentences) trained from each story's relation through the kinship
    program's composition fold; evaluation reports the chain accuracy per split and per
    length, and the extractor's edge accuracy (``run.evaluate`` on the split's rows)."""

    protocol_name = "kinship"

    def __init__(self, epochs: int = 25, batch_size: int = 64, train_split: str = "train",
                 eval_splits: Sequence[str] = ("test",)) -> None:
        self.epochs, self.batch_size = epochs, batch_size
        self.train_split, self.eval_splits = train_split, tuple(eval_splits)

    def validate(self, run: Any) -> None:
        """A ``kinship`` dataset (it carries the stories) of the 14 relations, and splits
        that hold stories."""
        dataset = run.dataset
        if "stories" not in dataset.meta:
            raise ValueError(f"the kinship protocol needs dataset = 'kinship' (its stories), "
                             f"not {dataset.name!r}")
        if tuple(dataset.class_names) != tuple(RELATIONS):
            raise ValueError(f"dataset {dataset.name!r}: classes {list(dataset.class_names)} "
                             f"are not the 14 kinship relations")
        dataset.check_splits(self.train_split, self.eval_splits)
        for split in (self.train_split, *self.eval_splits):
            if split not in dataset.meta["stories"]:
                raise ValueError(f"split {split!r} holds no stories; the kinship dataset's "
                                 f"are {', '.join(sorted(dataset.meta['stories']))}")

    def execute(self, run: Any) -> None:
        method = run.method
        model, dataset = run.model, run.dataset
        table = composition_table().to(dataset.x.device)
        groups = dataset.meta["stories"][self.train_split]
        model.train()
        method.setup(run, model)
        for epoch in run.progress(range(self.epochs), desc="epochs", total=self.epochs):
            with run.phase("epoch", epoch, stories=sum(len(g[1]) for g in groups)) as phase:
                total, steps = 0.0, 0
                for rows, story_labels in groups:
                    order = torch.randperm(len(rows), generator=run.generator)
                    for start in range(0, len(order), self.batch_size):
                        chosen = order[start : start + self.batch_size]
                        images = rows[chosen].reshape(-1).to(dataset.x.device)
                        objective = ChainObjective(story_labels[chosen].to(dataset.x.device),
                                                   rows.shape[1], table)
                        total += method.step(run, model, dataset.x[images],
                                             torch.full_like(images, -1), images,
                                             objective=objective)
                        steps += 1
                phase.metrics["train/loss"] = total / max(steps, 1)
                self.evaluate(run, table)
        model.train()

    @torch.no_grad()
    def evaluate(self, run: Any, table: torch.Tensor) -> None:
        model, dataset = run.model, run.dataset
        model.eval()
        for split in self.eval_splits:
            correct = count_ = 0
            for rows, story_labels in dataset.meta["stories"][split]:
                images = rows.reshape(-1).to(dataset.x.device)
                probs = torch.softmax(model(dataset.x[images]), dim=-1)
                predicted = chain_distribution(probs.reshape(len(rows), rows.shape[1], -1),
                                               table).argmax(1)
                hits = int((predicted.cpu() == story_labels).sum())
                run.record(f"{split}/k{rows.shape[1]}/chain_accuracy", hits / len(rows))
                correct, count_ = correct + hits, count_ + len(rows)
            run.record(f"{split}/chain_accuracy", correct / max(count_, 1))
            run.evaluate(split)  # the extractor's accuracy on single edges
        model.train()
