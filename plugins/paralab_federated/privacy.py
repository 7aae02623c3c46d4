"""DP-FedAvg as middleware: clip each client's update, add its share of Gaussian noise.

McMahan et al. 2018 ("Learning Differentially Private Recurrent Language Models"): each
client's delta is clipped to L2 norm ``clip`` and the server adds Gaussian noise of standard
deviation ``noise_multiplier * clip`` to the *sum* of the clipped deltas, averaged with a fixed
weight per client (so one client moves the average by at most ``clip / m``). Here each of the
``m`` clients of a round adds ``N(0, (noise_multiplier * clip)^2 / m)``: the sum carries exactly
the central noise, and with secure aggregation the server never sees a less noisy sum
(distributed DP, as in Kairouz et al. 2021).

The privacy budget comes from Google's ``dp_accounting`` (the accountant TensorFlow Privacy and
TensorFlow Federated use; maintained, and it knows subsampled Gaussian mechanisms): each round
is a Poisson-subsampled Gaussian event with sampling rate ``clients per round / clients``, the
usual approximation of fixed-size sampling; ``accountant = "rdp"`` (Renyi DP, Mironov 2017) or
``"pld"`` (privacy loss distributions, tighter).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from paralab.context import Phase, RunContext, Update
from paralab.hookspecs import hookimpl
from paralab_federated.schedule import seeded

ACCOUNTANTS = ("rdp", "pld")


def clip_delta(delta: dict[str, torch.Tensor],
               clip: float) -> tuple[dict[str, torch.Tensor], float]:
    """``delta`` scaled to L2 norm at most ``clip`` (over all tensors); also its norm before."""
    norm = math.sqrt(sum(float(v.double().pow(2).sum()) for v in delta.values()))
    factor = min(1.0, clip / norm) if norm > 0 else 1.0
    return {n: v * factor for n, v in delta.items()}, norm


def epsilon(noise_multiplier: float, sample_rate: float, rounds: int, delta: float,
            accountant: str = "rdp") -> float:
    """The epsilon of ``rounds`` Poisson-subsampled Gaussian rounds, for ``delta``."""
    import dp_accounting

    if rounds == 0:
        return 0.0
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            sample_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
        ),
        rounds,
    )
    if accountant == "pld":
        from dp_accounting.pld import pld_privacy_accountant

        engine: Any = pld_privacy_accountant.PLDAccountant()
    else:
        from dp_accounting.rdp import rdp_privacy_accountant

        engine = rdp_privacy_accountant.RdpAccountant()
    # The RDP accountant logs one absl warning per order it drops (low noise, large sampling
    # rate): hundreds of lines per round that say nothing the epsilon does not.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        engine.compose(event)
        return float(engine.get_epsilon(delta))
    finally:
        absl_logger.setLevel(level)


class DPFedAvg:
    """Middleware: client-level clipping and Gaussian noise; records ``privacy/epsilon``."""

    def __init__(self, clip: float = 1.0, noise_multiplier: float = 1.0, delta: float = 1e-5,
                 accountant: str = "rdp", seed: int = 0) -> None:
        if not clip > 0:
            raise ValueError(f"dp: clip = {clip} must be > 0 (the L2 bound of a client update)")
        if noise_multiplier < 0:
            raise ValueError(f"dp: noise_multiplier = {noise_multiplier} must be >= 0")
        if not 0 < delta < 1:
            raise ValueError(f"dp: delta = {delta} must be in (0, 1)")
        if accountant not in ACCOUNTANTS:
            raise ValueError(f"dp: accountant = {accountant!r}; choose one of {list(ACCOUNTANTS)}")
        self.clip = float(clip)
        self.noise_multiplier = float(noise_multiplier)
        self.delta = float(delta)
        self.accountant = accountant
        self.seed = int(seed)
        self.sample_rates: dict[int, float] = {}
        """Round -> its client sampling rate, for the accountant."""

    @hookimpl(wrapper=True)
    def paralab_process_update(self, run: RunContext, update: Update) -> Any:
        update = yield
        info = dict(update.info)
        if "secure_aggregation" in info:
            raise ValueError("dp: the update is already masked by secure aggregation; "
                             "DP must act before masking")
        round_index = int(info.get("round", -1))
        clients = info.get("round_clients") or [update.source]
        total = int(info.get("num_clients", len(clients)))
        sampled = len(info.get("round_sampled", clients))
        clipped, norm = clip_delta(update.delta, self.clip)
        std = self.noise_multiplier * self.clip / math.sqrt(len(clients))
        source = update.source if isinstance(update.source, int) else 0
        generator = seeded(self.seed, round_index, source, 7)
        noisy = {
            n: v + std * torch.randn(v.shape, generator=generator, dtype=v.dtype).to(v.device)
            for n, v in clipped.items()
        }
        self.sample_rates[round_index] = sampled / max(total, 1)
        info["dp"] = {"norm": norm, "clipped": norm > self.clip, "noise_std": std}
        # A fixed weight per client bounds one client's influence on the average by clip / m.
        return update.replace(delta=noisy, weight=1.0, info=info)

    def epsilon(self) -> float:
        if not self.sample_rates:
            return 0.0
        rate = max(self.sample_rates.values())
        return epsilon(self.noise_multiplier, rate, len(self.sample_rates), self.delta,
                       self.accountant)

    @hookimpl
    def paralab_after_phase(self, run: RunContext, phase: Phase) -> None:
        if phase.kind == "round" and self.sample_rates:
            run.record("privacy/epsilon", self.epsilon())
            run.record("privacy/delta", self.delta)
