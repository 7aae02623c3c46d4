"""Local differential privacy: each client privatizes its own update before sending it.

The ``local_dp`` middleware is the client-side counterpart of ``dp`` (central DP-FedAvg): the
client clips its delta to L2 norm ``clip`` and adds Gaussian noise to every coordinate, with
no trust in the server or in the other clients. The noise is the classical Gaussian mechanism
(Dwork and Roth 2014, Theorem A.1), ``sigma = sensitivity * sqrt(2 ln(1.25 / delta)) /
epsilon`` for ``0 < epsilon < 1``, with ``sensitivity = 2 * clip``: any two clipped updates
differ by at most that, so each released update is (``epsilon``, ``delta``)-DP with respect to
the client's whole data. Flower's ``LocalDpMod`` computes the same noise (with
``sensitivity`` its own option; a test checks ours against it at ``2 * clip``).

Each release is one mechanism: a client sampled in ``k`` rounds has released ``k`` of them.
``privacy/local_epsilon`` and ``privacy/local_delta`` are the per-release budget;
``privacy/local_releases_max`` the largest ``k`` of any client so far, and
``privacy/local_epsilon_composed`` / ``privacy/local_delta_composed`` its basic composition
``(k epsilon, k delta)`` (a loose but valid bound; tighter ones are the reader's to apply).

Local noise is large (every client adds the full ``sigma``, against a share of one sigma in
total under central DP), which is the point of a baseline. The noise generator is seeded as
``dp``'s is: a secret from the operating system, or with ``reproducible_noise`` from
``seed`` / the run's seed (NOT private; ``privacy/local_noise`` records which).
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import torch

from paralab import Middleware, hookimpl
from paralab_federated.privacy import clip_delta, noise_seed
from paralab_federated.schedule import seeded

if TYPE_CHECKING:
    from paralab import Phase, RunContext, Update

__all__ = ["LocalDP", "gaussian_sigma"]

LOCAL_NOISE_STREAM = 9
"""Tag of the local noise in the seed chain (``seeded(seed, round, client, ...)``)."""


def gaussian_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """The classical Gaussian mechanism's standard deviation (valid for epsilon < 1)."""
    return sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon


class LocalDP(Middleware):
    """Middleware: clip and noise each client's update on the client (module docstring)."""

    def __init__(self, clip: float = 1.0, epsilon: float = 0.5, delta: float = 1e-5,
                 seed: int | None = None, reproducible_noise: bool = False) -> None:
        self.clip = float(clip)
        self.epsilon = float(epsilon)
        self.delta = float(delta)
        self.seed = seed
        self.reproducible_noise = bool(reproducible_noise)
        self.sigma = gaussian_sigma(2 * self.clip, self.epsilon, self.delta)
        self.releases: dict[int, int] = {}
        """Client id -> updates it has released."""
        self._secret: int | None = None

    def validate(self, run: RunContext) -> None:
        if self.seed is not None and not self.reproducible_noise:
            raise ValueError(
                f"seed = {self.seed} would make the noise predictable from the spec (no "
                "privacy): leave it out or set reproducible_noise = true")
        if self.reproducible_noise:
            warnings.warn("local_dp: reproducible_noise = true: the run is NOT private "
                          "(privacy/local_noise says so)", UserWarning, stacklevel=2)

    def checkpoint_state(self, run: RunContext) -> dict[str, Any]:
        return {"releases": {int(k): int(v) for k, v in self.releases.items()},
                "secret": self._secret}

    def restore_state(self, run: RunContext, state: dict[str, Any]) -> None:
        self.releases = {int(k): int(v) for k, v in state["releases"].items()}
        self._secret = state.get("secret")

    def noise_seed(self, run: RunContext | None) -> int:
        return noise_seed(self, run)

    @hookimpl(wrapper=True)
    def paralab_process_update(self, run: RunContext, update: Update) -> Any:
        update = yield
        if "secure_aggregation" in update.info:
            raise ValueError("local_dp: the update is already masked by secure aggregation; "
                             "local DP acts on the client's plain update")
        if update.source == -1:  # an empty Poisson round's stand-in: no client released
            return update
        clipped, norm = clip_delta(update.delta, self.clip)
        round_index = int(update.info.get("round", -1))
        generator = seeded(self.noise_seed(run), round_index, int(update.source),
                           LOCAL_NOISE_STREAM)
        noisy = {n: v + self.sigma * torch.randn(v.shape, generator=generator,
                                                 dtype=v.dtype).to(v.device)
                 for n, v in clipped.items()}
        self.releases[int(update.source)] = self.releases.get(int(update.source), 0) + 1
        info = {**update.info, "local_dp": {"norm": norm, "sigma": self.sigma}}
        return update.replace(delta=noisy, info=info)

    @hookimpl
    def paralab_after_phase(self, run: RunContext, phase: Phase) -> None:
        if phase.kind != "round":
            return
        k = max(self.releases.values(), default=0)
        run.record("privacy/local_epsilon", self.epsilon)
        run.record("privacy/local_delta", self.delta)
        run.record("privacy/local_releases_max", k)
        run.record("privacy/local_epsilon_composed", k * self.epsilon)
        run.record("privacy/local_delta_composed", k * self.delta)
        run.record("privacy/local_noise", "reproducible from a seed: NOT private"
                   if self.reproducible_noise else "seeded from the operating system")
