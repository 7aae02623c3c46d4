"""Differential privacy as middleware: DP-FedAvg on client updates, DP-SGD on per-example
gradients, with the privacy budget from Google's ``dp_accounting``.

The one ``dp`` middleware acts wherever the spec's protocol lets it:

* **federated** (``paralab_process_update``), DP-FedAvg of McMahan et al. 2018 ("Learning
  Differentially Private Recurrent Language Models"): each client's delta is clipped to L2 norm
  ``clip`` and the server adds Gaussian noise of standard deviation ``noise_multiplier * clip``
  to the *sum* of the clipped deltas, averaged with a fixed weight per client (so one client
  moves the average by at most ``clip / m``). Here each of the ``m`` clients of a round adds
  ``N(0, (noise_multiplier * clip)^2 / m)``: the sum carries exactly the central noise, and with
  secure aggregation the server never sees a less noisy sum (distributed DP, as in Kairouz et
  al. 2021). Under ``dp`` the protocol samples clients by Poisson (``client_sampling =
  "auto"``: each client independently with probability ``fraction``, thinned by
  ``stragglers``), and the average divides the noisy sum by the *expected* number of reporting
  clients (McMahan et al.'s fixed-denominator estimator); each round is then one
  Poisson-subsampled Gaussian event at that rate, add-or-remove-one adjacency.
* **supervised** (``paralab_process_gradients``), DP-SGD of Abadi et al. 2016: each example's
  gradient is clipped to L2 norm ``clip`` (over all parameters together), the clipped gradients
  are summed, ``N(0, (noise_multiplier * clip)^2)`` is added to every coordinate of the sum and
  the result is divided by the *expected* batch size, as Opacus' ``DPOptimizer`` does. Each step
  is one Poisson-subsampled Gaussian event at rate ``batch_size / N``. The supervised protocol
  samples batches by Poisson when this middleware is on (the sampling the accountant assumes);
  with its ``sampling = "shuffle"`` it keeps fixed-size shuffled batches, the common
  approximation (e.g. TensorFlow Privacy's tutorials), which the epsilon does not strictly cover.

``privacy/epsilon`` (for ``delta``) and ``privacy/delta`` are recorded after every round or
epoch: ``accountant = "rdp"`` (Renyi DP, Mironov 2017) or ``"pld"`` (privacy loss
distributions, tighter). With ``client_sampling = "fixed"`` a federated round samples a fixed
number of clients, and rounds are accounted as sampling without replacement
(:func:`epsilon_fixed_size`, RDP only, replace-one adjacency), not as Poisson sampling.

**Adaptive clipping** (``adaptive_clip = true``, federated; Andrew et al. 2021, "Differentially
Private Learning with Adaptive Clipping"): ``clip`` is only the round-0 bound. Each round
counts the reporting clients whose update norm was at most the bound, ``b = (count +
N(0, clipped_count_stddev^2)) / m`` (``m`` the expected reporting clients under Poisson
sampling, else the round's clients), and moves the bound geometrically towards the
``target_quantile`` of the norms: ``clip <- clip * exp(-clip_lr * (b - target_quantile))``.
The count is itself a private release; the update noise then uses ``z_delta = (z^-2 -
(2 sigma_b)^-2)^-1/2`` so that the two together spend what one Gaussian of multiplier ``z =
noise_multiplier`` would (the paper's Theorem 1), and the accountant composes ``z``
(Flower's ``compute_adaptive_noise_params`` computes the same ``z_delta``; a test checks it).
``clipped_count_stddev`` defaults to ``m / 20``, as in the paper and Flower, and must exceed
``z / 2``. Flower's ``DifferentialPrivacyServerSideAdaptiveClipping`` (1.42) counts the
*clipped* updates into the same formula, which moves the bound away from its target; this
module counts the unclipped ones, as the paper does.

The noise comes from torch's generator seeded by a secret drawn from the operating system
(``secrets.randbits``) when the run starts: no one who knows the spec, the run's seed or
``result.json`` can regenerate and subtract it. ``reproducible_noise = true`` seeds it from
``seed`` (or the run's seed) instead, for debugging and for tests that compare two runs: such
a run is **not private** (its noise is predictable from a public seed), and ``result.json``
says so in ``privacy/noise``. Either way it is torch's pseudo-random generator, fit for
research on private training; releasing a model whose noise must stay secret against a
stronger adversary needs a cryptographic generator (Opacus' ``secure_mode``). A checkpoint
holds the secret, so a resumed run continues the same noise.
"""

from __future__ import annotations

import logging
import math
import secrets
import warnings
from typing import TYPE_CHECKING, Any

import torch

from paralab import Middleware, hookimpl
from paralab_federated import ACCOUNTANTS
from paralab_federated.schedule import seeded

if TYPE_CHECKING:
    from paralab import PerExampleGradients, Phase, RunContext, Update

__all__ = ["ACCOUNTANTS", "DPFedAvg", "clip_delta", "clip_per_example", "epsilon"]

NOISE_STREAM = 7
"""Tag of the noise generators in the seed chain (``seeded(seed, ..., NOISE_STREAM)``)."""
COUNT_STREAM = 8
"""Tag of adaptive clipping's count noise (``seeded(seed, round, COUNT_STREAM)``)."""


def adaptive_noise_multiplier(noise_multiplier: float, count_stddev: float) -> float:
    """The update noise multiplier ``(z^-2 - (2 sigma_b)^-2)^-1/2`` that, with the count's
    noise ``sigma_b``, spends the budget of one Gaussian of multiplier ``z`` (Andrew et al.
    2021, Theorem 1); ``0`` stays ``0``."""
    if noise_multiplier == 0:
        return 0.0
    if noise_multiplier >= 2 * count_stddev:
        raise ValueError(
            f"adaptive clipping: noise_multiplier = {noise_multiplier:g} needs "
            f"clipped_count_stddev > noise_multiplier / 2 = {noise_multiplier / 2:g} (it is "
            f"{count_stddev:g}); raise clipped_count_stddev or the clients per round, or "
            f"lower noise_multiplier")
    return float((noise_multiplier ** -2 - (2 * count_stddev) ** -2) ** -0.5)


def clip_delta(delta: dict[str, torch.Tensor],
               clip: float) -> tuple[dict[str, torch.Tensor], float]:
    """``delta`` scaled to L2 norm at most ``clip`` (over all tensors); also its norm before."""
    norm = math.sqrt(sum(float(v.double().pow(2).sum()) for v in delta.values()))
    factor = min(1.0, clip / norm) if norm > 0 else 1.0
    return {n: v * factor for n, v in delta.items()}, norm


def clip_per_example(per_example: dict[str, torch.Tensor],
                     clip: float) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Each example's gradient (row ``i`` of every tensor, together) scaled to L2 norm at most
    ``clip``; also the norms before clipping, ``(rows,)``."""
    if not per_example:
        return {}, torch.zeros(0)
    # Per tensor, then together: vector_norm scales against overflow, in the gradients' dtype
    # (no float64, which some accelerators lack). unsqueeze: scalar parameters and empty
    # batches flatten too.
    parts = [torch.linalg.vector_norm(g.unsqueeze(-1).flatten(1), dim=1)
             for g in per_example.values()]
    norms = torch.linalg.vector_norm(torch.stack(parts, dim=1), dim=1)
    factor = torch.where(norms > clip, clip / norms.clamp(min=1e-30), torch.ones_like(norms))
    clipped = {n: g * factor.to(g.dtype).view(-1, *([1] * (g.dim() - 1)))
               for n, g in per_example.items()}
    return clipped, norms


def epsilon(noise_multiplier: float, sample_rate: float, rounds: int, delta: float,
            accountant: str = "rdp") -> float:
    """The epsilon of ``rounds`` Poisson-subsampled Gaussian rounds (or steps), for ``delta``."""
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


def epsilon_fixed_size(noise_multiplier: float, rounds: dict[tuple[int, int], int],
                       delta: float) -> float:
    """The epsilon of Gaussian rounds that each sample a fixed number of clients without
    replacement: ``rounds`` maps ``(population, sample size)`` to how many rounds did so.

    This is what the federated simulator does (``fraction`` of the clients, every round), so
    it is what its epsilon must account; the Poisson accountant of :func:`epsilon` would
    understate it (50 rounds of 10 of 100 clients at z = 1: 5.9 for Poisson against 9.4 for
    fixed-size sampling). Renyi DP under replace-one adjacency (dp_accounting's
    ``SampledWithoutReplacementDpEvent``; its PLD accountant does not support the event).

    Under replace-one, replacing one client's clipped update moves the sum by up to
    ``2 * clip`` (two opposite updates of norm ``clip``), so the event's Gaussian has noise
    multiplier ``noise_multiplier / 2`` relative to that sensitivity (dp_accounting's
    ``noise_multiplier`` is the noise's std over the l2-sensitivity). Until 2026-12-02 the
    sensitivity was taken as ``clip``, which understated epsilon."""
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant

    if not rounds:
        return 0.0
    engine = rdp_privacy_accountant.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        for (population, size), count in sorted(rounds.items()):
            engine.compose(dp_accounting.SelfComposedDpEvent(
                dp_accounting.SampledWithoutReplacementDpEvent(
                    population, size, dp_accounting.GaussianDpEvent(noise_multiplier / 2)),
                count))
        return float(engine.get_epsilon(delta))
    finally:
        absl_logger.setLevel(level)


def noise_seed(middleware: Any, run: RunContext | None) -> int:
    """The seed of a noise middleware's generator (``dp``, ``local_dp``): its secret from the
    operating system (``_secret``, drawn once per run), or with ``reproducible_noise`` its
    ``seed`` when set, else the run's seed (0 outside a run)."""
    if not middleware.reproducible_noise:
        if middleware._secret is None:
            middleware._secret = secrets.randbits(63)
        return int(middleware._secret)
    if middleware.seed is not None:
        return int(middleware.seed)
    return int(run.seed) if run is not None else 0


class DPFedAvg(Middleware):
    """Middleware: clipping and Gaussian noise of client updates (federated) or of per-example
    gradients (supervised, DP-SGD); records ``privacy/epsilon`` and ``privacy/delta``.

    Options are declared in the plugin's spec (``clip > 0``, ``noise_multiplier >= 0``, both
    finite; ``0 < delta < 1``; ``accountant`` in ``rdp``, ``pld``; ``seed`` an int or None,
    used only with ``reproducible_noise``); the module docstring says where the noise comes
    from.
    """

    def __init__(self, clip: float = 1.0, noise_multiplier: float = 1.0, delta: float = 1e-5,
                 accountant: str = "rdp", seed: int | None = None,
                 reproducible_noise: bool = False, adaptive_clip: bool = False,
                 target_quantile: float = 0.5, clip_lr: float = 0.2,
                 clipped_count_stddev: float | None = None) -> None:
        self.clip = float(clip)
        self.adaptive_clip = bool(adaptive_clip)
        self.target_quantile = float(target_quantile)
        self.clip_lr = float(clip_lr)
        self.clipped_count_stddev = (None if clipped_count_stddev is None
                                     else float(clipped_count_stddev))
        self.count_stddev = 0.0
        """Adaptive clipping's count noise (``clipped_count_stddev`` or ``m / 20``)."""
        self.update_noise_multiplier = float(noise_multiplier)
        """The noise multiplier of the update noise (``z``; ``z_delta`` when adaptive)."""
        self.unclipped: dict[int, list[int]] = {}
        """Round -> [updates with norm <= clip, its denominator m] (adaptive clipping)."""
        self.clips: dict[int, float] = {}
        """Round -> the clip bound its updates were clipped to (adaptive clipping)."""
        self.noise_multiplier = float(noise_multiplier)
        self.delta = float(delta)
        self.accountant = accountant
        self.seed = seed
        self.reproducible_noise = bool(reproducible_noise)
        self._secret: int | None = None
        """The noise's seed drawn from the operating system (not reproducible_noise)."""
        self.sample_rates: dict[int, float] = {}
        """Round -> its client sampling rate (federated; recorded for the reader)."""
        self.round_sizes: dict[int, tuple[int, int]] = {}
        """Round -> (clients, clients sampled): the fixed-size sampling the accountant
        composes (federated)."""
        self.poisson_rates: dict[int, float] = {}
        """Round -> its Poisson client sampling rate (federated, ``client_sampling`` Poisson,
        the default under dp): each round one Poisson-subsampled Gaussian event."""
        self.steps = 0
        """DP-SGD steps taken (supervised)."""
        self.step_rate = 0.0
        """The largest per-step sampling rate seen (supervised; constant in practice)."""
        self.clipped = [0, 0]
        """Examples clipped and examples seen since the last epoch closed (DP-SGD)."""
        self._generator: torch.Generator | None = None

    def validate(self, run: RunContext) -> None:
        """``noise_multiplier = 0`` is allowed (a baseline), but it buys no privacy: say so, so
        that a run never looks private because it lists ``dp`` (its epsilon is infinite, which
        ``result.json`` stores as null). The federated protocol samples a fixed number of
        clients per round, which only the RDP accountant can account."""
        if self.seed is not None and not self.reproducible_noise:
            raise ValueError(
                f"seed = {self.seed} would make the noise predictable from the spec (no "
                "privacy): leave it out (the noise is seeded from the operating system) or "
                "set reproducible_noise = true to say the run is not private"
            )
        if self.reproducible_noise:
            warnings.warn(
                "dp: reproducible_noise = true seeds the noise from "
                f"{'seed' if self.seed is not None else 'the run seed'}: the run is NOT "
                "private (privacy/noise in result.json says so); use it to debug or compare runs",
                UserWarning, stacklevel=2,
            )
        if (self.accountant == "pld" and run.spec.protocol.name == "federated"
                and getattr(run.protocol, "client_sampling", "auto") == "fixed"):
            raise ValueError(
                "accountant = 'pld': client_sampling = 'fixed' samples a fixed number of "
                "clients per round (without replacement), which dp_accounting's PLD "
                "accountant cannot account; use accountant = 'rdp', or client_sampling = "
                "'auto' (Poisson under dp)"
            )
        if self.adaptive_clip:
            self._validate_adaptive(run)
        if self.noise_multiplier == 0:
            warnings.warn(
                "dp: noise_multiplier = 0 adds no noise, so the run has no differential privacy "
                "(privacy/epsilon is infinite: null in result.json); only clipping acts",
                UserWarning, stacklevel=2,
            )

    def _validate_adaptive(self, run: RunContext) -> None:
        """Adaptive clipping is for federated rounds; its count noise must leave room for
        the update noise (``clipped_count_stddev > noise_multiplier / 2``)."""
        protocol = run.protocol
        if run.spec.protocol.name != "federated" or not hasattr(protocol, "clients_per_round"):
            raise ValueError(
                "adaptive_clip = true adapts the bound on client updates (federated); under "
                f"{run.spec.protocol.name!r} use a fixed clip")
        expected = protocol.fraction * protocol.clients * (1 - protocol.stragglers)
        m = expected if protocol.client_sampling != "fixed" else protocol.clients_per_round
        self.count_stddev = (m / 20 if self.clipped_count_stddev is None
                             else self.clipped_count_stddev)
        self.update_noise_multiplier = adaptive_noise_multiplier(self.noise_multiplier,
                                                                 self.count_stddev)

    # ------------------------------------------------------------------------- checkpoints

    def checkpoint_state(self, run: RunContext) -> dict[str, Any]:
        """The accounting so far and the DP-SGD noise stream, so that a resumed run
        (``paralab resume``) spends the same budget and draws the same noise as one that was
        never interrupted. DP-FedAvg's noise is seeded per (round, client): nothing to keep."""
        return {
            "sample_rates": {int(r): float(q) for r, q in self.sample_rates.items()},
            "round_sizes": {int(r): [int(n), int(m)] for r, (n, m) in self.round_sizes.items()},
            "poisson_rates": {int(r): float(q) for r, q in self.poisson_rates.items()},
            "steps": self.steps,
            "step_rate": self.step_rate,
            "clipped": list(self.clipped),
            "generator": None if self._generator is None else self._generator.get_state(),
            "secret": self._secret,
            "clip": self.clip,
            "clips": {int(r): float(c) for r, c in self.clips.items()},
            "unclipped": {int(r): list(v) for r, v in self.unclipped.items()},
        }

    def restore_state(self, run: RunContext, state: dict[str, Any]) -> None:
        self.sample_rates = {int(r): float(q) for r, q in state["sample_rates"].items()}
        self.round_sizes = {int(r): (int(n), int(m)) for r, (n, m) in state["round_sizes"].items()}
        self.poisson_rates = {int(r): float(q)
                              for r, q in state.get("poisson_rates", {}).items()}
        self.steps = int(state["steps"])
        self.step_rate = float(state["step_rate"])
        self.clipped = [int(c) for c in state["clipped"]]
        self._secret = state.get("secret")
        self.clip = float(state.get("clip", self.clip))
        self.clips = {int(r): float(c) for r, c in state.get("clips", {}).items()}
        self.unclipped = {int(r): [int(a), float(b)]
                          for r, (a, b) in state.get("unclipped", {}).items()}
        self._generator = None
        if state["generator"] is not None:
            self._generator = torch.Generator()
            self._generator.set_state(state["generator"])

    def noise_seed(self, run: RunContext | None) -> int:
        """The seed of the noise: a secret from the operating system, drawn once per run;
        with ``reproducible_noise``, ``seed`` when set, else the run's seed (0 outside a
        run)."""
        return noise_seed(self, run)

    @property
    def noise_source(self) -> str:
        """What ``privacy/noise`` records: whether the noise could be regenerated."""
        return ("reproducible from a seed: NOT private" if self.reproducible_noise
                else "seeded from the operating system")

    # ------------------------------------------------------------------ federated: DP-FedAvg

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
        sampling = info.get("sampling") or {"kind": "fixed"}
        clipped, norm = clip_delta(update.delta, self.clip)
        std = self.update_noise_multiplier * self.clip / math.sqrt(len(clients))
        if self.adaptive_clip:
            self.clips[round_index] = self.clip
            count = self.unclipped.setdefault(round_index, [0, 0.0])
            count[1] = (float(sampling["expected_clients"]) if sampling["kind"] == "poisson"
                        else float(len(clients)))
            if update.source != -1:  # the empty round's stand-in is no client
                count[0] += int(norm <= self.clip)
        source = update.source if isinstance(update.source, int) else 0
        generator = seeded(self.noise_seed(run), round_index, source, NOISE_STREAM)
        # Poisson: the average divides the noisy sum by the *expected* number of reporting
        # clients, a public constant (McMahan et al. 2018's fixed-denominator estimator): the
        # mean below divides by the actual number, so each update is scaled by actual/expected.
        scale = (len(clients) / float(sampling["expected_clients"])
                 if sampling["kind"] == "poisson" else 1.0)
        noisy = {
            n: (v + std * torch.randn(v.shape, generator=generator, dtype=v.dtype).to(v.device))
            * scale
            for n, v in clipped.items()
        }
        if sampling["kind"] == "poisson":
            self.poisson_rates[round_index] = float(sampling["rate"])
            self.sample_rates[round_index] = float(sampling["rate"])
        else:
            self.sample_rates[round_index] = sampled / max(total, 1)
            self.round_sizes[round_index] = (max(total, 1), sampled)
        info["dp"] = {"norm": norm, "clipped": norm > self.clip, "noise_std": std,
                      "sampling": sampling["kind"]}
        # A fixed weight per client bounds one client's influence on the average by clip / m.
        return update.replace(delta=noisy, weight=1.0, info=info)

    # ----------------------------------------------------------------- supervised: DP-SGD

    @hookimpl(wrapper=True)
    def paralab_process_gradients(self, run: RunContext,
                                  gradients: PerExampleGradients) -> Any:
        gradients = yield
        sampling = gradients.info.get("sampling") or {}
        if "sample_rate" not in sampling:
            raise ValueError(
                "dp: the protocol did not say how it samples batches (phase info['sampling'] "
                "with 'sample_rate'), so the privacy budget cannot be accounted"
            )
        clipped, norms = clip_per_example(gradients.per_example, self.clip)
        std = self.noise_multiplier * self.clip
        if self._generator is None:
            # One stream for the whole run, from the seed chain: (seed, NOISE_STREAM).
            self._generator = seeded(self.noise_seed(run), NOISE_STREAM)
        summed = {}
        for name, rows in clipped.items():
            noise = torch.randn(rows.shape[1:], generator=self._generator, dtype=rows.dtype)
            summed[name] = rows.sum(0) + std * noise.to(rows.device)
        n_clipped = int((norms > self.clip).sum())
        self.steps += 1
        self.step_rate = max(self.step_rate, float(sampling["sample_rate"]))
        self.clipped[0] += n_clipped
        self.clipped[1] += len(norms)
        info = {**gradients.info, "dp": {"noise_std": std, "clipped": n_clipped}}
        return gradients.replace(per_example=clipped, summed=summed, info=info)

    # ------------------------------------------------------------------------- accounting

    def epsilon(self) -> float:
        """The budget spent so far: rounds (federated) or steps (DP-SGD) at their largest
        sampling rate."""
        if self.steps:
            return epsilon(self.noise_multiplier, self.step_rate, self.steps, self.delta,
                           self.accountant)
        if not (self.round_sizes or self.poisson_rates):
            return 0.0
        if self.noise_multiplier == 0:
            return math.inf
        if self.poisson_rates:  # one rate per run (fraction * (1 - stragglers))
            return epsilon(self.noise_multiplier, max(self.poisson_rates.values()),
                           len(self.poisson_rates), self.delta, self.accountant)
        counts: dict[tuple[int, int], int] = {}
        for sizes in self.round_sizes.values():
            counts[sizes] = counts.get(sizes, 0) + 1
        return epsilon_fixed_size(self.noise_multiplier, counts, self.delta)

    def adapt_clip(self, run: RunContext | None, round_index: int) -> None:
        """After a round: the geometric step of the bound towards the target quantile, on the
        noised fraction of unclipped updates (Andrew et al. 2021, Algorithm 1)."""
        if round_index not in self.unclipped:
            return
        count, m = self.unclipped[round_index]
        generator = seeded(self.noise_seed(run), round_index, COUNT_STREAM)
        noise = float(torch.randn((), generator=generator, dtype=torch.float64))
        fraction = (count + self.count_stddev * noise) / max(m, 1e-12)
        self.clip *= math.exp(-self.clip_lr * (fraction - self.target_quantile))

    @hookimpl
    def paralab_after_phase(self, run: RunContext, phase: Phase) -> None:
        federated = phase.kind == "round" and bool(self.round_sizes or self.poisson_rates)
        if not (federated or self.steps):
            return
        if federated and self.adaptive_clip and phase.index in self.clips:
            run.record("privacy/clip", self.clips[phase.index])
            run.record("privacy/unclipped", self.unclipped[phase.index][0])
            self.adapt_clip(run, phase.index)
        run.record("privacy/epsilon", self.epsilon())
        run.record("privacy/delta", self.delta)
        run.record("privacy/noise", self.noise_source)
        if not federated:
            run.record("privacy/steps", self.steps)
            clipped, seen = self.clipped
            run.record("privacy/clipped_fraction", clipped / seen if seen else 0.0)
            self.clipped = [0, 0]
