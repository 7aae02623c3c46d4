"""Online continual learning: one pass over the stream, a minibatch at a time, evaluated every
``eval_every`` steps; and blurry task boundaries.

With ``online = true`` each experience is seen once (``epochs`` must be 1), in minibatches of
``batch_size`` rows, and two families of metrics are recorded (both from the online-learning
literature, both computed here on paralab's own predictions):

* **online accuracy** (test-then-train, Cai et al. 2021): each incoming minibatch is predicted
  by the model *before* the step that trains on it; ``online/accuracy`` per experience and
  ``average_online_accuracy`` over the whole stream (the fraction of incoming rows predicted
  right). Memory rows a strategy appends to the batch are not counted.
* **anytime accuracy** (Caccia et al. 2022's average anytime accuracy, AAA): every
  ``eval_every`` training steps, and at each experience's end, the mean accuracy over the test
  views of the experiences seen so far; ``online/anytime_accuracy`` and ``online/anytime_steps``
  (global step numbers) per experience, ``average_anytime_accuracy`` their mean over the run.

``blurry = b`` (Bang et al. 2021's Blurry-M, with ``b = M / 100``) makes the boundaries
blurry: a fraction ``b`` of each experience's training rows moves to the other experiences,
each moved row to one of them drawn uniformly (seeded by the run's seed), so every experience
mixes its own classes with a few of everybody else's. Class-incremental streams only: a moved
row keeps its class, and no transform or output mask depends on its experience there.
Strategies still consolidate at each experience's end.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from paralab import predict

if TYPE_CHECKING:
    from paralab import RunContext
    from paralab_continual.scenarios import Experience, Stream


def blur_stream(stream: Stream, blur: float, seed: int) -> Stream:
    """``stream`` with a fraction ``blur`` of each experience's training rows moved to the
    other experiences (uniformly); test views are unchanged."""
    if blur <= 0 or len(stream) < 2:
        return stream
    generator = torch.Generator().manual_seed(int(seed) + 7919)
    kept: list[torch.Tensor] = []
    moved: list[list[torch.Tensor]] = [[] for _ in stream]
    for experience in stream:
        rows = experience.train
        order = torch.randperm(len(rows), generator=generator).to(rows.device)
        count = int(blur * len(rows))
        kept.append(rows[order[count:]])
        leaving = rows[order[:count]]
        # A destination among the other experiences, uniformly.
        draws = torch.randint(len(stream) - 1, (count,), generator=generator).to(rows.device)
        destinations = draws + (draws >= experience.index).long()
        for target in range(len(stream)):
            moved[target].append(leaving[destinations == target])
    experiences = [
        dataclasses.replace(e, train=torch.cat([kept[e.index], *moved[e.index]]))
        for e in stream
    ]
    return dataclasses.replace(stream, experiences=experiences)


class OnlineMonitor:
    """Counts each step's test-then-train hits and evaluates anytime accuracy every
    ``eval_every`` steps; the protocol installs it as the strategy's ``step_hook``."""

    def __init__(self, run: RunContext, stream: Stream, eval_every: int,
                 evaluation_model: Any) -> None:
        self.run = run
        self.stream = stream
        self.eval_every = int(eval_every)
        self.evaluation_model = evaluation_model
        self.step = 0
        self.hits: list[torch.Tensor] = []
        self.seen_rows = 0
        self.total_hits = 0
        self.total_rows = 0
        self.current: Experience | None = None
        self.anytime: list[float] = []
        self.steps: list[int] = []
        self.every_anytime: list[float] = []

    def start(self, experience: Experience) -> None:
        self.current, self.hits, self.seen_rows = experience, [], 0
        self.anytime, self.steps = [], []

    def __call__(self, strategy: Any, hits: torch.Tensor, rows: int) -> None:
        self.step += 1
        self.hits.append(hits)
        self.seen_rows += rows
        if self.eval_every and self.step % self.eval_every == 0:
            self._evaluate()

    def _evaluate(self) -> None:
        assert self.current is not None
        value = anytime_accuracy(self.run, self.stream, self.stream.experiences[
            : self.current.index + 1], self.evaluation_model(self.run))
        self.anytime.append(value)
        self.steps.append(self.step)
        self.every_anytime.append(value)

    def close(self, phase: Any, end_accuracy: float) -> None:
        """The experience's online metrics into ``phase``; ``end_accuracy`` (the mean accuracy
        over the experiences seen, from R) is its last anytime point."""
        hits = int(torch.stack(self.hits).sum()) if self.hits else 0
        self.total_hits += hits
        self.total_rows += self.seen_rows
        self.anytime.append(end_accuracy)
        self.steps.append(self.step)
        self.every_anytime.append(end_accuracy)
        phase.metrics["online/accuracy"] = hits / self.seen_rows if self.seen_rows else 0.0
        phase.metrics["online/anytime_accuracy"] = list(self.anytime)
        phase.metrics["online/anytime_steps"] = list(self.steps)

    def summary(self) -> dict[str, float]:
        return {
            "average_online_accuracy": self.total_hits / self.total_rows if self.total_rows
            else 0.0,
            "average_anytime_accuracy": sum(self.every_anytime) / len(self.every_anytime)
            if self.every_anytime else 0.0,
        }


@torch.no_grad()
def anytime_accuracy(run: RunContext, stream: Stream, experiences: list[Experience],
                     model: torch.nn.Module) -> float:
    """The mean accuracy over ``experiences``' test views (their transforms and output masks
    applied), without the protocol's evaluation hooks: an anytime point is not an evaluation
    of record."""
    accuracies = []
    for experience in experiences:
        raw = predict(model, run.dataset, experience.test, batch_size=run.spec.eval_batch_size,
                      transform=experience.transform)
        logits, targets = raw.logits, raw.targets
        if stream.masked or stream.remapped:
            logits, targets = stream.read_outputs(logits, targets, experience.index)
        accuracies.append(float((logits.argmax(1) == targets).float().mean()))
    return sum(accuracies) / len(accuracies)
