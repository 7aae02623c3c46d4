"""``adversarial_debiasing``: Zhang, Lemoine and Mitchell (2018) as a loss term with its adversary.

An adversary tries to recover the sensitive group from the predictor's output (demographic
parity) or from the output and the true label (equalized odds); the predictor is trained to
make it fail. Zhang et al.'s adversary reads ``s = sigmoid((1 + |c|) z)``, ``z`` the
predictor's logit of the positive class, and for equalized odds also ``s y`` and ``s (1 - y)``;
it is linear on those (a softmax over the groups, so features with more than two groups work).

A loss term sees every training batch under any gradient protocol (a supervised epoch, a
federated client's local step, a continual experience), so the whole game runs inside it:

1. **the adversary's step**: on the batch's *detached* outputs it takes ``adversary_steps``
   steps of its own Adam optimizer on its cross-entropy ``L_A`` (the predictor's parameters
   get no gradient from this);
2. **the predictor's term**: it returns ``-weight * L_A`` of the updated adversary on the
   live outputs, so the protocol's gradient step on ``L_P + term`` moves the predictor against
   the adversary (``weight`` is Zhang's alpha).

Zhang et al. also subtract the projection of ``grad L_P`` on ``grad L_A``; a loss term adds to
the loss and never sees ``grad L_P``, so that projection is not applied (the plain
``L_P - alpha L_A`` objective of their equation, as in gradient-reversal training). The
adversary is one per run: under ``federated`` every client's local steps play against it (a
server-side adversary), under ``continual`` it carries over from one experience to the next.
Per-example-gradient training (DP-SGD middleware) would call the term inside ``vmap``, where
the adversary cannot take its own step, so that combination is a spec error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from paralab import LossTerm
from paralab_fairness.auditor import as_names, check_positive_class, resolve_sensitive

if TYPE_CHECKING:
    from paralab import Batch, RunContext

GRADIENT_HOOK = "paralab_process_gradients"


class Adversary(torch.nn.Module):
    """Zhang et al.'s adversary: ``s = sigmoid((1 + |c|) z)``, then linear to the groups."""

    def __init__(self, n_groups: int, with_label: bool) -> None:
        super().__init__()
        self.with_label = with_label
        self.c = torch.nn.Parameter(torch.ones(()))
        self.head = torch.nn.Linear(3 if with_label else 1, n_groups)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid((1 + self.c.abs()) * z).unsqueeze(1)
        if self.with_label:
            label = y.to(s.dtype).unsqueeze(1)
            s = torch.cat([s, s * label, s * (1 - label)], dim=1)
        return self.head(s)


def positive_logit(logits: torch.Tensor, positive_class: int) -> torch.Tensor:
    """The log-odds of ``positive_class`` against the rest (the logit of a binary head)."""
    others = torch.cat([logits[:, :positive_class], logits[:, positive_class + 1:]], dim=1)
    return logits[:, positive_class] - torch.logsumexp(others, dim=1)


class AdversarialDebiasing(LossTerm):
    """``-weight * L_A`` after the adversary's own steps on the batch (module docstring).

    Options are declared in :mod:`paralab_fairness`; :meth:`validate` checks them on the data.
    """

    def __init__(
        self,
        sensitive: Sequence[str] | str = (),
        constraint: str = "demographic_parity",
        weight: float = 1.0,
        adversary_lr: float = 0.05,
        adversary_steps: int = 1,
        positive_class: int = 1,
        seed: int = 0,
    ) -> None:
        self.sensitive = as_names(sensitive)
        self.constraint = constraint
        self.weight = float(weight)
        self.adversary_lr = float(adversary_lr)
        self.adversary_steps = int(adversary_steps)
        self.positive_class = positive_class
        self.seed = seed
        self._name: str | None = None
        self._groups = 0
        self.adversary: Adversary | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.adversary_losses: list[float] = []
        """The adversary's loss at each of its steps (the game's trace, for tests and plots)."""

    def validate(self, run: RunContext) -> None:
        """One sensitive feature (the adversary predicts one), ``positive_class`` in the data,
        and no per-example-gradient middleware (module docstring)."""
        names = resolve_sensitive(self.sensitive, run.dataset, "loss adversarial_debiasing")
        if len(names) != 1 and self.sensitive:
            raise ValueError(
                f"loss adversarial_debiasing: sensitive names {len(names)} features "
                f"{list(names)}; the adversary predicts one (name one feature)"
            )
        self._name = names[0]
        values = run.dataset.features[self._name]
        declared = len(run.dataset.categories.get(self._name, ()))
        self._groups = max(declared, int(values.max()) + 1 if values.numel() else 1, 2)
        check_positive_class(self.positive_class, run.dataset, "loss adversarial_debiasing")
        if run.hooks.has_middleware_for(GRADIENT_HOOK):
            raise ValueError(
                "loss adversarial_debiasing: the spec's middleware acts on per-example "
                "gradients (DP-SGD), which evaluates loss terms inside vmap, where the "
                "adversary cannot take its own step; drop the middleware or use "
                "fairness_penalty"
            )

    def _build(self, device: torch.device) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.adversary = Adversary(self._groups, self.constraint == "equalized_odds")
        self.adversary.to(device)
        self.optimizer = torch.optim.Adam(self.adversary.parameters(), lr=self.adversary_lr)

    def __call__(self, batch: Batch) -> torch.Tensor:
        if batch.run is None:
            raise ValueError("loss adversarial_debiasing: the batch has no run to read groups "
                             "from")
        if self._name is None:
            self.validate(batch.run)
        assert self._name is not None
        logits = batch.logits
        if self.adversary is None:
            self._build(logits.device)
        assert self.adversary is not None and self.optimizer is not None
        groups = batch.feature(self._name).to(logits.device).long()
        labels = (batch.targets.to(logits.device) == self.positive_class).long()
        z = positive_logit(logits, self.positive_class)
        detached = z.detach().float()
        with torch.enable_grad():
            for _ in range(self.adversary_steps):
                loss = F.cross_entropy(self.adversary(detached, labels), groups)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.adversary_losses.append(float(loss.detach()))
        # The predictor's term: gradients reach the adversary's parameters too, but its
        # optimizer clears them before its next step, so they never move it.
        adversary_loss = F.cross_entropy(self.adversary(z.float(), labels), groups)
        return -self.weight * adversary_loss.to(logits.dtype)
