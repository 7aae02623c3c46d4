"""BiC, bias correction (Wu et al. 2019, "Large Scale Incremental Learning"): replay with
distillation, then a two-parameter linear correction of the newest classes' logits fitted on
a small balanced validation set, because a model trained on many new rows and few exemplars
is biased toward the new classes.

Per experience ``i`` (class-incremental):

1. **split**: ``k`` rows per class are held out for validation (``k = max(1, val_fraction *
   the memory's rows per old class)``): the first ``k`` exemplars of each old class, and ``k``
   random rows of each new class; the rest trains.
2. **train**: new rows and the other exemplars, loss ``(1 - lam) * CE + lam * KD``, ``lam =
   old classes / classes seen`` (0 in the first experience), KD the cross-entropy of the
   student's softened outputs on the old classes against the previous (bias-corrected)
   model's (temperature ``T``).
3. **correct** (``i > 0``): the model frozen, ``alpha`` and ``beta`` for the new classes'
   logits (``alpha * o + beta``, the others unchanged) fitted by full-batch L-BFGS (step
   ``bias_lr``, at most ``bias_steps`` iterations, strong-Wolfe line search) on the validation
   rows' cross-entropy over the classes seen. Only the newest classes are corrected (as the
   paper: an earlier correction was for classes that were new then, and the model has
   trained on them since); evaluation and the next teacher apply it.
4. the class-balanced memory takes the experience's rows; the corrected model becomes the
   teacher.

Avalanche's ``BiC`` cannot run through the adapter (see ``avalanche_adapter.UNSUPPORTED``),
so its tests are properties: the fitted correction reduces the share of old classes' test
rows predicted as the newest classes, which an identity correction would not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from paralab_continual.buffers import IndexBuffer
from paralab_continual.composition import frozen_copy, tensor_bytes
from paralab_continual.rehearsal import MemoryPlugin
from paralab_continual.rows import gather
from paralab_continual.scenarios import ScenarioError

if TYPE_CHECKING:
    from paralab import RunContext, SharedDataset
    from paralab_continual.scenarios import Experience, Stream


class Corrected(torch.nn.Module):
    """``model``'s outputs with each correction ``(classes, alpha, beta)`` applied to its
    classes' logits."""

    def __init__(self, model: torch.nn.Module, corrections: list[tuple[torch.Tensor, float, float]]
                 ) -> None:
        super().__init__()
        self.model = model
        self.corrections = corrections

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return correct(self.model(x), self.corrections)


def correct(logits: torch.Tensor, corrections: list[tuple[torch.Tensor, Any, Any]]
            ) -> torch.Tensor:
    out = logits
    for classes, alpha, beta in corrections:
        out = out.clone() if out is logits else out
        columns = classes.to(out.device)
        out[:, columns] = alpha * out[:, columns] + beta
    return out


class BiCPlugin(MemoryPlugin):
    """BiC's memory, validation split, distillation and bias correction."""

    name = "bic"

    def __init__(self, memory_size: int = 500, val_fraction: float = 0.1,
                 temperature: float = 2.0, bias_lr: float = 1.0, bias_steps: int = 100) -> None:
        self.buffer = IndexBuffer(memory_size, "class_balanced")
        self.memory_batch_size = 0
        self.val_fraction = float(val_fraction)
        self.temperature = float(temperature)
        self.bias_lr = float(bias_lr)
        self.bias_steps = int(bias_steps)
        self.corrections: list[tuple[torch.Tensor, float, float]] = []
        self.old_classes: list[int] = []
        self.teacher: torch.nn.Module | None = None
        self.model: torch.nn.Module | None = None
        self.train_rows = torch.empty(0, dtype=torch.long)
        self.train_ids = torch.empty(0, dtype=torch.long)
        self.val_rows = torch.empty(0, dtype=torch.long)
        self.val_ids = torch.empty(0, dtype=torch.long)
        self.new_classes: list[int] = []

    def check(self, strategy: Any, stream: Stream, dataset: SharedDataset) -> None:
        available = sum(len(e.train) for e in stream)
        if self.buffer.size > available:
            raise ScenarioError(
                f"{strategy.where(self)}: memory_size = {self.buffer.size} is larger than the "
                f"{available} training rows of the whole stream; use memory_size <= {available}")
        if stream.scenario != "class_incremental":
            raise ScenarioError(
                f"{strategy.where(self)}: BiC corrects the bias toward new classes of a "
                f"class-incremental stream; scenario {stream.scenario!r} is not one: use "
                f"scenario = 'class_incremental'")

    def setup(self, strategy: Any, run: RunContext | None, model: torch.nn.Module) -> None:
        self.model = model

    def before_experience(self, strategy: Any, run: RunContext, experience: Experience) -> None:
        rows = experience.train
        ids = torch.full_like(rows, experience.index)
        self.new_classes = [int(c) for c in experience.classes]
        if not self.old_classes:
            self.train_rows, self.train_ids = rows, ids
            self.val_rows, self.val_ids = rows[:0], ids[:0]
            return
        groups = self.buffer.groups.to(rows.device)
        per_class = len(self.buffer) // max(1, len(self.old_classes))
        k = max(1, int(self.val_fraction * per_class))
        val, val_ids, train, train_ids = [], [], [], []
        for c in self.old_classes:  # the first k exemplars of each old class validate
            slots = (groups == c).nonzero().flatten()
            val.append(self.buffer.indices[slots[:k]])
            val_ids.append(self.buffer.experiences[slots[:k]])
            train.append(self.buffer.indices[slots[k:]])
            train_ids.append(self.buffer.experiences[slots[k:]])
        targets = run.dataset.y[rows].to(rows.device)
        for c in experience.classes:  # k random rows of each new class validate
            members = rows[targets == c]
            order = torch.randperm(len(members), generator=run.generator).to(rows.device)
            val.append(members[order[:k]])
            train.append(members[order[k:]])
            val_ids.append(torch.full_like(members[order[:k]], experience.index))
            train_ids.append(torch.full_like(members[order[k:]], experience.index))
        self.val_rows, self.val_ids = torch.cat(val), torch.cat(val_ids)
        self.train_rows, self.train_ids = torch.cat(train), torch.cat(train_ids)

    def objective(self, strategy: Any, run: RunContext, ids: torch.Tensor) -> Any:
        teacher, old, temperature = self.teacher, list(self.old_classes), self.temperature
        if teacher is None:
            return None
        lam = len(old) / (len(old) + len(self.new_classes))

        def distilled(batch: Any) -> torch.Tensor:
            with torch.no_grad():
                soft = F.softmax(teacher(batch.inputs)[:, old] / temperature, dim=1)
            log_student = F.log_softmax(batch.logits[:, old] / temperature, dim=1)
            distillation = -(soft * log_student).sum(dim=1).mean()
            return (1 - lam) * F.cross_entropy(batch.logits, batch.targets) + lam * distillation

        return distilled

    def after_experience(self, strategy: Any, run: RunContext, experience: Experience) -> None:
        new = torch.tensor(list(experience.classes), dtype=torch.long)
        if self.old_classes and len(self.val_rows):
            # Only the newest classes are corrected (Wu et al.): earlier corrections were
            # for classes that were new then; the model has trained on them since, and the
            # teacher (corrected then) carried them into its distillation.
            self.corrections = [self._fit(strategy, run, new)]
        rows = experience.train
        self.buffer.add_experience(rows, experience.index, run.dataset.y[rows], run.generator)
        self.old_classes += [int(c) for c in experience.classes]
        assert self.model is not None
        self.teacher = Corrected(frozen_copy(self.model), list(self.corrections))

    def _fit(self, strategy: Any, run: RunContext, new: torch.Tensor
             ) -> tuple[torch.Tensor, float, float]:
        """Stage 2: alpha, beta of the new classes on the validation rows, model frozen."""
        assert self.model is not None
        model = self.model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            x, y = gather(run.dataset, strategy.stream, self.val_rows, self.val_ids)
            logits = model(x)
        model.train(was_training)
        alpha = torch.ones((), requires_grad=True)
        beta = torch.zeros((), requires_grad=True)
        # Two parameters, a smooth convex-in-beta loss: L-BFGS with a line search converges
        # where plain SGD at a fixed rate overshoots on raw logits of size ~10.
        optimizer = torch.optim.LBFGS([alpha, beta], lr=self.bias_lr, max_iter=self.bias_steps,
                                      line_search_fn="strong_wolfe")
        seen = torch.tensor(sorted({*self.old_classes, *new.tolist()}), device=logits.device)
        position = torch.searchsorted(seen, y)
        columns = new.to(logits.device)

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            out = logits.clone()
            out[:, columns] = alpha * logits[:, columns] + beta
            loss = F.cross_entropy(out[:, seen], position)
            loss.backward()
            return loss

        optimizer.step(closure)
        return new, float(alpha.detach()), float(beta.detach())

    def classifier(self, model: torch.nn.Module) -> torch.nn.Module:
        return Corrected(model, list(self.corrections)) if self.corrections else model

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(), "old_classes": list(self.old_classes),
                "corrections": [(c.clone(), a, b) for c, a, b in self.corrections],
                "teacher": None if self.teacher is None else self.teacher.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any], strategy: Any) -> None:
        self.buffer.load_state_dict(state["buffer"], strategy.device)
        self.old_classes = list(state["old_classes"])
        self.corrections = [(c, float(a), float(b)) for c, a, b in state["corrections"]]
        self.teacher = None
        if state["teacher"] is not None:
            assert self.model is not None, "setup before load_state_dict"
            self.teacher = Corrected(frozen_copy(self.model, state["teacher"]),
                                     list(self.corrections))

    def memory_bytes(self) -> int:
        teacher = None if self.teacher is None else self.teacher.model
        return tensor_bytes(self.buffer.indices, self.buffer.experiences, teacher) + 16 * len(
            self.corrections)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "memory_size": self.buffer.size,
                "corrections": [(c.tolist(), a, b) for c, a, b in self.corrections]}
