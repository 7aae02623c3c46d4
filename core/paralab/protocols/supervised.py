"""The supervised protocol: epochs over the train split, evaluation every ``eval_every``.

With middleware on per-example gradients (the ``dp`` middleware's DP-SGD), each epoch takes
``ceil(N / batch_size)`` steps on **Poisson-sampled** batches: every training example joins a
step's batch independently with probability ``q = batch_size / N``, the sampling the privacy
accountant assumes (Abadi et al. 2016; Opacus' ``DPDataLoader``). Batch sizes then vary around
``batch_size`` (an empty batch still takes its noisy step); the epoch's ``info["sampling"]``
records the scheme and the rate. ``sampling = "shuffle"`` keeps fixed-size shuffled batches
instead (the common approximation, which the accountant does not strictly cover).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from paralab.interfaces import GradientMethod, Protocol
from paralab.methods import GRADIENT_HOOK

if TYPE_CHECKING:
    from paralab.context import RunContext
    from paralab.data.shared import DataView

SAMPLINGS = ("auto", "shuffle", "poisson")


def poisson_batches(
    view: DataView, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One epoch of ``ceil(N / batch_size)`` Poisson-sampled batches ``(x, y, indices)``: each
    row of ``view`` is in each batch independently with probability ``batch_size / N``."""
    n = len(view)
    rate = min(1.0, batch_size / max(n, 1))
    for _ in range(math.ceil(n / batch_size)):
        chosen = torch.rand(n, generator=generator) < rate
        index = view.indices[chosen.to(view.indices.device)]
        yield view.dataset.x[index], view.dataset.y[index], index


class Supervised(Protocol):
    """Train with the run's :class:`~paralab.interfaces.GradientMethod`; each epoch is a phase
    named ``epoch``. Options are declared (and checked) in ``paralab.builtin``."""

    def __init__(
        self,
        epochs: int = 10,
        batch_size: int = 32,
        eval_every: int = 1,
        train_split: str = "train",
        eval_splits: Sequence[str] = ("test",),
        sampling: str = "auto",
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.eval_every = eval_every
        self.train_split = train_split
        self.eval_splits = tuple(eval_splits)
        self.sampling = sampling
        self._restored: dict[str, Any] | None = None

    def checkpoint_state(self, run: RunContext) -> dict[str, Any]:
        """After the epochs closed so far: the model, the method's state (its optimizer)."""
        method_state = getattr(run.method, "state_dict", None)
        return {"epochs_done": len(run.result.phases), "model": run.model.state_dict(),
                "method": method_state() if callable(method_state) else None}

    def restore_state(self, run: RunContext, state: dict[str, Any]) -> None:
        self._restored = state

    # The seed axis (issue 16): several seeds as one stacked model, in its own module.

    def seed_axis_why_not(self, runs: list[RunContext]) -> str:
        if type(self).execute is not Supervised.execute:
            # A subclass that trains differently must not be replaced by the stacked loop.
            return f"{type(self).__name__} overrides execute(); its seeds run one by one"
        from paralab.protocols.stacked_supervised import SupervisedSeeds

        return SupervisedSeeds(self).seed_axis_why_not(runs)

    def execute_seeds(self, runs: list[RunContext], axis: Any) -> None:
        from paralab.protocols.stacked_supervised import SupervisedSeeds

        SupervisedSeeds(self).execute_seeds(runs, axis)

    def validate(self, run: RunContext) -> None:
        """Every split named must exist in the dataset; middleware on per-example gradients
        needs a model whose examples do not mix (no batch norm); checkpoints need a method
        whose state can be saved (else a resumed run would restart its optimizer)."""
        run.dataset.check_splits(self.train_split, self.eval_splits)
        if run.spec.checkpoint_every and not (
                callable(getattr(run.method, "state_dict", None))
                and callable(getattr(run.method, "load_state_dict", None))):
            raise ValueError(
                f"checkpoint_every = {run.spec.checkpoint_every}: method "
                f"{run.spec.method.name!r} has no state_dict()/load_state_dict(), so a resumed "
                f"run could not restore its state; use a paralab.OptimizerMethod (sgd, adam) "
                f"or add both methods"
            )
        acting = run.hooks.middleware_for(GRADIENT_HOOK)
        if acting and run.model is not None:
            mixing = sorted({type(m).__name__ for m in run.model.modules()
                             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)})
            if mixing:
                raise ValueError(
                    f"{', '.join(acting)} acts on per-example gradients (DP-SGD), but model "
                    f"{run.spec.model.name!r} has {', '.join(mixing)} layers, which mix the "
                    f"examples of a batch, so no example has a gradient of its own; use a model "
                    f"without batch norm (group or layer norm instead)"
                )

    def sampling_info(self, run: RunContext, private: bool) -> dict[str, Any]:
        """How this run's epochs sample batches, as the phase ``info`` records it."""
        poisson = self.sampling == "poisson" or (self.sampling == "auto" and private)
        if not poisson and not private:
            return {}
        n = len(run.dataset.split(self.train_split))
        return {"sampling": {"scheme": "poisson" if poisson else "shuffle",
                             "sample_rate": min(1.0, self.batch_size / max(n, 1)),
                             "expected_batch_size": float(self.batch_size)}}

    def execute(self, run: RunContext) -> None:
        method: GradientMethod = run.method
        train = run.dataset.split(self.train_split)
        model = run.model
        model.train()
        method.setup(run, model)
        start = 0
        if self._restored is not None:  # paralab resume: continue after the saved epochs
            start = self._restored["epochs_done"]
            model.load_state_dict(self._restored["model"])
            if self._restored["method"] is not None:
                method.load_state_dict(self._restored["method"])
        private = run.hooks.has_middleware_for(GRADIENT_HOOK)
        info = self.sampling_info(run, private)
        poisson = info.get("sampling", {}).get("scheme") == "poisson"
        epochs = range(start, self.epochs)
        for epoch in run.progress(epochs, desc="epochs", total=self.epochs, done=start):
            with run.phase("epoch", epoch, **info) as phase:
                if info:
                    loss = self._sampled_epoch(run, method, model, train, private, poisson)
                else:  # the plain path: shuffled batches, batched gradients
                    total, batches = 0.0, 0
                    for x, y, index in train.batches(
                        self.batch_size, shuffle=True, generator=run.generator
                    ):
                        total += method.step(run, model, x, y, index)
                        batches += 1
                    loss = total / max(batches, 1)
                phase.metrics["train/loss"] = loss
                if (epoch + 1) % self.eval_every == 0 or epoch + 1 == self.epochs:
                    for split in self.eval_splits:
                        run.evaluate(split)

    def _sampled_epoch(self, run: RunContext, method: GradientMethod, model: torch.nn.Module,
                       train: DataView, private: bool, poisson: bool) -> float:
        """One epoch on Poisson-sampled (or, with ``sampling = "shuffle"``, shuffled) batches,
        checking that the method passes its gradients through the middleware; the mean loss
        over the non-empty batches."""
        if poisson:
            batches = poisson_batches(train, self.batch_size, run.generator)
        else:
            batches = train.batches(self.batch_size, shuffle=True, generator=run.generator)
        total, counted = 0.0, 0
        for x, y, index in batches:
            if not len(index) and not private:
                continue  # nothing to learn from and no noise to add
            before = run.hooks.gradient_calls
            loss = method.step(run, model, x, y, index)
            if private and run.hooks.gradient_calls == before:
                raise RuntimeError(
                    f"method {run.spec.method.name!r} took a step without passing its "
                    f"gradients through {GRADIENT_HOOK}, so "
                    f"{', '.join(run.hooks.middleware_for(GRADIENT_HOOK))} would not act; use a "
                    f"paralab.OptimizerMethod (sgd, adam) or call run.hooks.process_gradients "
                    f"in its step"
                )
            if len(index):
                total += loss
                counted += 1
        return total / max(counted, 1)
