"""iCaRL (Rebuffi, Kolesnikov, Sperl and Lampert 2017): exemplars chosen by herding, a
distillation loss, and classification by the nearest mean of exemplars.

As Avalanche's ``ICaRL`` (``avalanche/training/supervised/icarl.py`` and
``ICaRLLossPlugin`` in ``avalanche/training/losses.py``), term by term:

* **model**: the run's model split before its last linear layer; the features train through
  that head, and evaluation ignores the head.
* **training rows**: the experience's rows joined by every exemplar (one shuffled set).
* **loss**: binary cross-entropy of ``sigmoid(logits)`` against one-hot targets whose columns
  of the classes of earlier experiences are replaced by ``sigmoid`` of the previous model's
  logits on the same rows (distillation), averaged over rows and units.
* **exemplars** (after each experience, model in eval mode): per new class, herding on the
  L2-normalised features: the running sum ``w`` starts at the class mean ``mu``; each step picks
  the row maximising ``w . f``, then ``w += mu - f``; a row already picked is skipped (1000
  steps at most). Memory ``K`` fixed: ``ceil(K / classes seen)`` per class, the older classes cut
  to their first ones in herding order.
* **classification**: the mean of each class's normalised exemplar features, normalised;
  scores are minus the distance of a row's normalised features to each mean. A class with no
  exemplars yet scores -3, below every seen class (Avalanche gives it a zero mean, at distance 1, so a row far
  from every seen mean can be assigned a class never seen: always wrong).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from paralab_continual.composition import StrategyPlugin, frozen_copy, tensor_bytes
from paralab_continual.rows import gather
from paralab_continual.scenarios import ScenarioError

if TYPE_CHECKING:
    from paralab import RunContext, SharedDataset
    from paralab_continual.scenarios import Experience, Stream


def split_model(model: torch.nn.Module, who: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``model`` as a feature extractor and its last linear layer: an ``nn.Sequential`` ending
    in ``nn.Linear``, as paralab's ``mlp``, ``linear`` and ``cnn``. Anything else is a
    :class:`ScenarioError` naming ``who``."""
    if (isinstance(model, torch.nn.Sequential) and len(model) >= 2
            and isinstance(model[-1], torch.nn.Linear)):
        return model[:-1], model[-1]
    raise ScenarioError(
        f"{who}: needs a model that is an nn.Sequential ending in an nn.Linear head (paralab's "
        f"mlp or cnn), to split into features and classifier; got {type(model).__name__}")


def herding(features: torch.Tensor, count: int) -> torch.Tensor:
    """Positions of ``features`` (rows) in the order herding picks them, ``count`` at most:
    Avalanche's loop on the L2-normalised features (``D = f.T / ||f||``)."""
    d = features.T / torch.norm(features.T, dim=0)
    mu = d.mean(dim=1)
    w = mu
    picked: list[int] = []
    steps = 0
    while len(picked) < count and steps < 1000:
        best = int(torch.argmax(w.unsqueeze(0) @ d))
        if best not in picked:
            picked.append(best)
        w = w + mu - d[:, best]
        steps += 1
    return torch.tensor(picked, dtype=torch.long)


def class_mean(features: torch.Tensor) -> torch.Tensor:
    """The normalised mean of the normalised ``features`` (rows)."""
    mean = F.normalize(features, dim=1).mean(dim=0)
    return mean / torch.norm(mean)


UNSEEN = -3.0
"""The score of a class with no exemplars: below any seen class's (unit vectors are at most 2
apart), and finite, so the evaluation's cross-entropy stays finite."""


class NearestMeanOfExemplars(torch.nn.Module):
    """Scores ``-||normalise(features(x)) - mean_c||`` per class; :data:`UNSEEN` without a
    mean."""

    def __init__(self, features: torch.nn.Module, means: torch.Tensor, known: torch.Tensor) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("means", means)
        self.register_buffer("known", known)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.normalize(self.features(x), dim=1)
        scores = -torch.cdist(f, self.means.to(f.dtype))
        return scores.masked_fill(~self.known, UNSEEN)


class ICaRLPlugin(StrategyPlugin):
    """iCaRL's exemplars, loss and class means (the strategy adds the exemplars to its rows
    and evaluates :meth:`classifier`)."""

    name = "icarl"

    def __init__(self, memory_size: int = 2000) -> None:
        self.memory_size = int(memory_size)
        self.rows = torch.empty(0, dtype=torch.long)  # exemplars, class by class,
        self.ids = torch.empty(0, dtype=torch.long)  # in herding order inside each class
        self.classes = torch.empty(0, dtype=torch.long)
        self.old_classes: list[int] = []
        self.means = torch.empty(0)
        self.teacher: torch.nn.Module | None = None
        self.features: torch.nn.Module | None = None
        self.model: torch.nn.Module | None = None

    def check(self, strategy: Any, stream: Stream, dataset: SharedDataset) -> None:
        if stream.scenario != "class_incremental":
            raise ScenarioError(
                f"{strategy.where(self)}: iCaRL learns new classes per experience and uses no "
                f"task labels; scenario {stream.scenario!r} is not class-incremental: use "
                f"scenario = 'class_incremental'")

    def setup(self, strategy: Any, run: RunContext | None, model: torch.nn.Module) -> None:
        self.features, _ = split_model(model, strategy.where(self))
        self.model = model

    def exemplars(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rows, self.ids

    def objective(self, strategy: Any, run: RunContext, ids: torch.Tensor) -> Any:
        teacher, old = self.teacher, list(self.old_classes)

        def distillation(batch: Any) -> torch.Tensor:
            logits = batch.logits
            targets = F.one_hot(batch.targets, logits.shape[1]).to(logits.dtype)
            if teacher is not None:
                with torch.no_grad():
                    previous = torch.sigmoid(teacher(batch.inputs))
                targets[:, old] = previous[:, old]
            return F.binary_cross_entropy(torch.sigmoid(logits), targets)

        return distillation

    @torch.no_grad()
    def after_experience(self, strategy: Any, run: RunContext, experience: Experience) -> None:
        model = run.model
        was_training = model.training
        model.eval()
        assert self.features is not None
        seen = len(self.old_classes) + len(experience.classes)
        per_class = math.ceil(self.memory_size / seen)
        keep = [self._first(c, per_class) for c in self.old_classes]
        rows, ids, classes = [self.rows[k] for k in keep], [self.ids[k] for k in keep], \
            [self.classes[k] for k in keep]
        targets = run.dataset.y[experience.train]
        for c in experience.classes:
            members = experience.train[(targets == c).to(experience.train.device)]
            member_ids = torch.full_like(members, experience.index)
            x, _ = gather(run.dataset, strategy.stream, members, member_ids)
            order = herding(self.features(x), per_class).to(members.device)
            rows.append(members[order])
            ids.append(member_ids[order])
            classes.append(torch.full_like(members[order], int(c)))
        self.rows, self.ids, self.classes = torch.cat(rows), torch.cat(ids), torch.cat(classes)
        self._means(run, strategy)
        self.old_classes += [int(c) for c in experience.classes]
        self.teacher = frozen_copy(model)
        model.train(was_training)

    def _first(self, c: int, count: int) -> torch.Tensor:
        """Positions of class ``c``'s first ``count`` exemplars (herding order)."""
        return (self.classes == c).nonzero().flatten()[:count]

    def _means(self, run: RunContext, strategy: Any) -> None:
        assert self.features is not None
        x, _ = gather(run.dataset, strategy.stream, self.rows, self.ids)
        features = self.features(x)
        units = run.dataset.info.n_classes
        means = features.new_zeros(units, features.shape[1])
        for c in self.classes.unique().tolist():
            means[c] = class_mean(features[(self.classes == c).to(features.device)])
        self.means = means

    def classifier(self, model: torch.nn.Module) -> torch.nn.Module | None:
        """The nearest-mean-of-exemplars classifier (None before the first experience ends:
        the model's own head is evaluated then, the untrained baseline of FWT)."""
        if not len(self.rows):
            return None
        features, _ = split_model(model, "icarl")
        known = torch.zeros(len(self.means), dtype=torch.bool, device=self.means.device)
        known[self.classes.unique().to(known.device)] = True
        return NearestMeanOfExemplars(features, self.means, known)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows.clone(), "ids": self.ids.clone(),
                "classes": self.classes.clone(), "old_classes": list(self.old_classes),
                "means": self.means.clone(),
                "teacher": None if self.teacher is None else self.teacher.state_dict()}

    def load_state_dict(self, state: dict[str, Any], strategy: Any) -> None:
        device = strategy.device
        self.rows, self.ids = state["rows"].to(device), state["ids"].to(device)
        self.classes = state["classes"].to(device)
        self.old_classes = list(state["old_classes"])
        self.means = state["means"].to(device)
        self.teacher = None
        if state["teacher"] is not None:
            assert self.model is not None, "setup before load_state_dict"
            self.teacher = frozen_copy(self.model, state["teacher"])

    def memory_bytes(self) -> int:
        return tensor_bytes(self.rows, self.ids, self.classes, self.means, self.teacher)

    def buffer_rows(self) -> int:
        return len(self.rows)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "memory_size": self.memory_size}
