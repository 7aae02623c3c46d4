"""The ``episodic`` protocol: meta-training on sampled episodes, meta-testing with a 95% CI.

Classes (not examples) are split into meta-train, meta-validation and meta-test sets; every
problem with the episodes (too few classes for ``ways``, too few examples for
``shots + queries``, an empty split) is reported before the first meta-batch. Outer steps are
grouped into phases of ``eval_every`` steps (``meta_batch`` phases, each ending with a
meta-validation), and a final ``meta_test`` phase evaluates ``eval_episodes`` episodes of the
held-out classes. Evaluation episodes come from generators seeded by the run's seed alone,
so every method of a comparison sees the same validation and test episodes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from paralab import DataNotFoundError, Protocol
from paralab_fewshot.episodes import (
    EpisodeError,
    EpisodeSampler,
    EpisodeShape,
    TaskBatch,
    split_classes,
)
from paralab_fewshot.evaluation import evaluate_episodes, lake_runs_batch, record

if TYPE_CHECKING:
    from paralab import EpisodicMethod, RunContext, SharedDataset

_VALIDATION_STREAM, _TEST_STREAM = 1, 2


def _untouched_rng(device: torch.device) -> Any:
    """A block whose draws from torch's global generators are undone on exit: the method's
    setup probes the model (a forward of a dropout model draws), and a resumed run sets up
    again after its generators are restored, so the probe must not shift the stream that
    training draws from."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    return torch.random.fork_rng(devices=cuda)


def _generator(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1000 + stream)


class Episodic(Protocol):
    """N-way K-shot meta-learning on any shared dataset with a class-split protocol.

    Options are declared (and range-checked) in ``paralab_fewshot.EPISODIC_OPTIONS``; what
    depends on several options or on the data is checked by :meth:`validate`. The run's
    method implements :class:`paralab.EpisodicMethod` (the host checks it at build).
    """

    def __init__(
        self,
        ways: int = 5,
        shots: int = 1,
        queries: int = 15,
        train_ways: int = 0,
        meta_batch: int = 32,
        meta_iterations: int = 1000,
        eval_every: int = 100,
        val_episodes: int = 100,
        eval_episodes: int = 600,
        eval_meta_batch: int = 100,
        class_split: Sequence[float] = (0.6, 0.2, 0.2),
        split_seed: int = 0,
        split_by: str = "",
        lake_runs: bool = False,
        select: str = "auto",
        lr_halving_every: int = 0,
    ) -> None:
        self.shape = EpisodeShape(ways, shots, queries)
        self.train_shape = EpisodeShape(train_ways or ways, shots, queries)
        self.meta_batch = meta_batch
        self.meta_iterations = meta_iterations
        self.eval_every = eval_every
        self.val_episodes = val_episodes
        self.eval_episodes = eval_episodes
        self.eval_meta_batch = eval_meta_batch
        self.class_split = tuple(float(f) for f in class_split)
        self.split_seed = split_seed
        self.split_by = split_by
        self.lake_runs = lake_runs
        self.select = select
        self.lr_halving_every = lr_halving_every
        self._best: tuple[float, int, dict[str, torch.Tensor]] | None = None
        """(meta-validation accuracy, phase, model state) of the best phase so far."""
        self._prepared: tuple[dict[str, EpisodeSampler | None], Any] | None = None
        self._restored: dict[str, Any] | None = None
        self._phases_done = 0

    # ------------------------------------------------------------------------- preparation

    def samplers(self, dataset: SharedDataset) -> dict[str, EpisodeSampler | None]:
        """The meta-train, meta-validation and meta-test samplers; raises on any bad option."""
        split = split_classes(
            dataset, self.class_split, seed=self.split_seed, group_by=self.split_by
        )
        if self.val_episodes and split.meta_val.numel() == 0:
            raise EpisodeError(
                f"val_episodes = {self.val_episodes} but the meta_val classes of dataset "
                f"{dataset.name!r} are empty (class_split = {list(self.class_split)}): give "
                "meta_val a share or set val_episodes = 0"
            )
        return {
            "meta_train": EpisodeSampler(dataset, split.meta_train, self.train_shape, "meta_train"),
            "meta_val": EpisodeSampler(dataset, split.meta_val, self.shape, "meta_val")
            if self.val_episodes
            else None,
            "meta_test": EpisodeSampler(dataset, split.meta_test, self.shape, "meta_test"),
        }

    def _lake_runs(self, run: RunContext) -> Any:
        from paralab import load_dataset

        options = {
            key: run.spec.dataset.options[key]
            for key in ("root", "image_size")
            if run.spec.dataset.options.get(key)
        }
        try:
            runs = load_dataset("omniglot_runs", device=run.device, **options)
        except DataNotFoundError as error:
            # a spec asking for data that is not there, like a missing dataset: not a bug
            raise EpisodeError(f"lake_runs = true needs Lake et al.'s runs: {error}") from error
        return runs, lake_runs_batch(runs)

    # ---------------------------------------------------------------------------- the loop

    def check_options(self) -> None:
        """What the declarations cannot say alone: ``class_split`` sums to 1 and
        ``train_ways`` is 0 (as ``ways``) or an episode of at least 2 classes."""
        total = sum(self.class_split)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise EpisodeError(
                f"class_split = {list(self.class_split)} sums to {total:g}: give the shares "
                "of the classes for meta-train, meta-validation and meta-test, summing to 1, "
                "e.g. [0.6, 0.2, 0.2]"
            )
        if self.select == "best_val" and not self.val_episodes:
            raise EpisodeError(
                "select = 'best_val' picks the model of the best meta-validation phase, but "
                "val_episodes = 0 validates nothing; give val_episodes or use select = 'last'"
            )
        if self.lr_halving_every and self.lr_halving_every >= self.meta_iterations:
            raise EpisodeError(
                f"lr_halving_every = {self.lr_halving_every} but meta_iterations = "
                f"{self.meta_iterations}: the learning rate would never be halved; use fewer "
                "steps between halvings, or 0 for a constant rate"
            )
        if self.train_shape.ways == 1:
            raise EpisodeError(
                "train_ways = 1: a 1-way episode has nothing to tell apart; use 0 (the same "
                f"as ways = {self.shape.ways}) or at least 2"
            )

    def validate(self, run: RunContext) -> None:
        """Check the options against each other and the episodes against the data before
        anything trains (the host reports a ``ValueError`` here as a spec error naming the
        protocol, before the run's folder exists)."""
        self.check_options()
        if run.spec.checkpoint_every and not all(
            callable(getattr(run.method, name, None)) for name in ("state_dict", "load_state_dict")
        ):
            raise ValueError(
                f"checkpoint_every = {run.spec.checkpoint_every}: method "
                f"{run.spec.method.name!r} has no state_dict()/load_state_dict(), so a "
                f"checkpoint could not hold its optimizer; set checkpoint_every = 0"
            )
        self._prepared = (
            self.samplers(run.dataset),
            self._lake_runs(run) if self.lake_runs else None,
        )

    # ------------------------------------------------------------------------ checkpoints

    def checkpoint_state(self, run: RunContext) -> dict[str, Any]:
        """After the phases closed so far: the model and the method's outer optimizer.
        Meta-training episodes come from ``run.generator`` (saved by the host); validation
        and test episodes from generators seeded by the run's seed alone, made afresh at
        every evaluation, so no sampler has a state to keep."""
        best = None if self._best is None else {
            "accuracy": self._best[0], "phase": self._best[1], "model": self._best[2]}
        return {"phases_done": self._phases_done, "model": run.model.state_dict(),
                "method": run.method.state_dict(), "best": best}

    def restore_state(self, run: RunContext, state: dict[str, Any]) -> None:
        self._restored = state
        best = state.get("best")
        self._best = None if best is None else (
            float(best["accuracy"]), int(best["phase"]), dict(best["model"]))

    # ---------------------------------------------------------------------- model selection

    def schedule(self, optimizer: torch.optim.Optimizer | None, step: int) -> None:
        """Before outer step ``step``: halve the outer learning rate every
        ``lr_halving_every`` steps (Snell et al. halve Adam's every 2,000 episodes)."""
        every = self.lr_halving_every
        if not every or step == 0 or step % every:
            return
        if optimizer is None:
            raise ValueError("lr_halving_every: the method has no outer optimizer to schedule")
        for group in optimizer.param_groups:
            group["lr"] *= 0.5

    def selects_best(self) -> bool:
        """Whether meta-test evaluates the best-on-validation model (``select``: ``auto``
        does whenever there is meta-validation) rather than the last one."""
        return self.select == "best_val" or (self.select == "auto" and bool(self.val_episodes))

    def keep_if_best(self, run: RunContext, phase_index: int, accuracy: float) -> None:
        """After a phase's meta-validation: remember the model when it is the best so far
        (ties keep the earlier phase)."""
        if not self.selects_best():
            return
        if self._best is None or accuracy > self._best[0]:
            state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
            self._best = (float(accuracy), phase_index, state)

    def restore_best(self, run: RunContext) -> None:
        """Before meta-test: load the best-on-validation model and record which it was."""
        if not self.selects_best() or self._best is None:
            return
        accuracy, index, state = self._best
        run.model.load_state_dict(state)
        run.record("meta_val/selected_phase", index)
        run.record("meta_val/selected_accuracy", accuracy)

    def ways_needed(self) -> int:
        """The most classes an episode of this run will have (Lake's runs are 20-way)."""
        lake = self._prepared[1] if self._prepared else None
        return max(self.shape.ways, self.train_shape.ways, lake[1].ways if lake else 0)

    def execute(self, run: RunContext) -> None:
        method: EpisodicMethod = run.method
        model, dataset = run.model, run.dataset
        if self._prepared is None:
            self.validate(run)
        samplers, lake = self._prepared
        train = samplers["meta_train"]
        assert train is not None
        with _untouched_rng(dataset.device):
            method.setup(
                run, model, self.ways_needed(),
                dataset.x[train.table[:, 0][:2].to(dataset.device)],
            )
        sizes = {f"{key}_classes": int(s.classes.numel()) for key, s in samplers.items() if s}
        restored, self._restored = self._restored, None
        done = 0
        if restored is not None:  # paralab resume: continue after the saved phases
            model.load_state_dict(restored["model"])
            method.load_state_dict(restored["method"])
            done = int(restored["phases_done"])
        self._phases_done = done
        model.train()
        phases = range(0, self.meta_iterations, self.eval_every)
        remaining = list(enumerate(phases))[done:]
        shown = run.progress(remaining, desc="meta-batches", total=len(phases),
                             done=min(done, len(phases)))
        for index, first in shown:
            last = min(first + self.eval_every, self.meta_iterations)
            with run.phase("meta_batch", index, steps=[first, last], **sizes) as phase:
                losses = []
                for step in range(first, last):
                    self.schedule(getattr(method, "optimizer", None), step)
                    indices = train.sample(self.meta_batch, run.generator)
                    batch = TaskBatch.gather(dataset, indices, self.shape.shots)
                    losses.append(method.meta_step(run, model, batch))
                phase.metrics["meta_train/loss"] = sum(losses) / len(losses)
                if self.lr_halving_every:
                    phase.metrics["meta_train/lr"] = method.optimizer.param_groups[0]["lr"]
                validation = samplers["meta_val"]
                if validation is not None:
                    accuracy, _ = evaluate_episodes(
                        run,
                        method,
                        validation,
                        episodes=self.val_episodes,
                        meta_batch=self.eval_meta_batch,
                        name="meta_val",
                        generator=_generator(run.seed, _VALIDATION_STREAM),
                    )
                    self.keep_if_best(run, index, accuracy)
                self._phases_done = index + 1
        if done > len(phases):  # the checkpoint came after meta-test too: nothing is left
            return
        self.restore_best(run)
        with run.phase(
            "meta_test",
            0,
            ways=self.shape.ways,
            shots=self.shape.shots,
            queries=self.shape.queries,
            **sizes,
        ):
            test = samplers["meta_test"]
            assert test is not None
            evaluate_episodes(
                run,
                method,
                test,
                episodes=self.eval_episodes,
                meta_batch=self.eval_meta_batch,
                name="meta_test",
                generator=_generator(run.seed, _TEST_STREAM),
            )
            if lake is not None:
                record(run, method, [lake[1]], "lake_runs", dataset=lake[0])
            self._phases_done = len(phases) + 1
