"""paralab_federated: federated learning as a paralab plugin.

Partitions of any shared dataset into clients (index views); FedSGD, FedAvg, FedAvgM, FedProx,
FedAdam, FedYogi, FedAdagrad, stateful clients (SCAFFOLD, FedDyn), FedNova, personalization
(FedBN, FedPer, Ditto) and client momentum; robust aggregation; a simulator that trains a round's
clients as one vectorized computation, a Ray backend for clusters, deployment on Flower's
SuperLink and SuperNodes (:mod:`paralab_federated.flower_deploy`); differential privacy
(DP-FedAvg with fixed or adaptive clipping under ``federated``, DP-SGD under ``supervised``),
local DP, secure aggregation and Byzantine attacks as middleware. Under :func:`paralab.run_seeds` the
seeds of one configuration train their clients together (seeds x clients, one vectorized
computation: :mod:`paralab_federated.vectorized`).

This module only declares components and their options (with the values each accepts, checked
before anything is built): factories are ``"module:attribute"`` strings, so listing plugins
never imports torch or Ray.
"""

from __future__ import annotations

from paralab import (
    MethodSpec,
    MiddlewareSpec,
    Option,
    ProtocolSpec,
    count,
    fraction,
    hookimpl,
    non_negative,
    one_of,
    positive,
)

PARALAB_API = "1.0"

PARTITIONS = ("iid", "dirichlet", "shards", "quantity")
"""Partition schemes of the train split among clients (see :mod:`paralab_federated.partitions`)."""
BACKENDS = ("vmap", "loop", "ray", "flower")
"""Where a round's client updates are computed (see :mod:`paralab_federated.backends`)."""
ACCOUNTANTS = ("rdp", "pld")
"""``dp_accounting`` engines for the privacy budget."""
SAMPLINGS = ("auto", "fixed", "poisson")
"""Client sampling per round (see :mod:`paralab_federated.schedule`); ``auto``: Poisson when
the ``dp`` middleware is on (the sampling DP-FedAvg's accountant assumes), else fixed."""

AGGREGATIONS = ("mean", "median", "trimmed_mean", "krum", "multi_krum")
"""How the server combines a round's client deltas (see :mod:`paralab_federated.robust`)."""
ATTACKS = ("sign_flip", "scale", "label_flip")
"""The ``byzantine`` middleware's attacks (see :mod:`paralab_federated.byzantine`)."""

_PROTOCOLS = ("federated",)


def _client_lr(default: float) -> Option:
    return positive(default, help="the clients' local SGD learning rate")


_SERVER_LR = positive(1.0, help="step size of the server on the mean client delta")
_CLIENT_MOMENTUM = Option(0.0, ge=0, lt=1,
                          help="heavy-ball momentum of the clients' local SGD (0: none; a "
                               "fresh buffer each round)")
_ADAPTIVE = {
    "lr": _client_lr(0.05),
    "server_lr": positive(0.01, help="step size of the server's adaptive optimizer"),
    "beta1": Option(0.9, ge=0, lt=1, help="first-moment decay of the server optimizer"),
    "beta2": Option(0.99, ge=0, lt=1, help="second-moment decay of the server optimizer"),
    "tau": positive(1e-3, help="adaptivity: added to the second moment's square root"),
    "client_momentum": _CLIENT_MOMENTUM,
}

_FEDERATED_OPTIONS = {
    "clients": count(100, help="clients the train split is partitioned into"),
    "partition": one_of("iid", PARTITIONS, help="how rows are dealt to clients"),
    "alpha": positive(0.5, help="Dirichlet concentration (dirichlet, quantity); smaller: more skew"),
    "classes_per_client": count(2, help="label-sorted shards per client (shards)"),
    "fraction": Option(0.1, gt=0, le=1, help="share of the clients sampled each round"),
    "client_sampling": one_of(
        "auto", SAMPLINGS, help="fixed: round(fraction * clients) each round; poisson: each "
                                "client with probability fraction; auto: poisson under dp"),
    "rounds": count(20, help="communication rounds"),
    "local_epochs": count(1, help="local epochs of each client per round"),
    "batch_size": count(16, help="local minibatch size"),
    "stragglers": Option(0.0, ge=0, lt=1, help="probability that a sampled client drops out"),
    "aggregation": one_of(
        "mean", AGGREGATIONS, help="mean: example-weighted (FedAvg); median, trimmed_mean, "
                                   "krum, multi_krum: robust to Byzantine clients"),
    "trim_fraction": Option(0.1, ge=0, lt=0.5,
                            help="trimmed_mean: share of values cut at each end"),
    "krum_malicious": count(0, low=0, help="krum, multi_krum: assumed Byzantine clients f"),
    "multi_krum_keep": count(0, low=0,
                             help="multi_krum: deltas averaged (0: the round's clients - f)"),
    "max_client_failures": fraction(
        0.5, help="share of a round's clients that may fail; more (or all) fails the run"),
    "backend": one_of("vmap", BACKENDS, help="vmap: one vectorized computation; loop; ray; "
                                              "flower: a Flower deployment (SuperLink and "
                                              "SuperNodes)"),
    "eval_every": count(1, help="rounds between evaluations (the last is always evaluated)"),
    "client_eval": Option(True, help="evaluate the per-client accuracy distribution"),
    "client_test_fraction": Option(
        0.0, ge=0, lt=1, help="share of each client's rows held out as its own test set, where "
                              "clients/accuracy_* are computed (0: none; the per-client metrics "
                              "are then clients/train_accuracy_*, on the training rows)"),
    "seed": Option(None, type=(int, None),
                   help="seed of partition, sampling, stragglers, minibatches; None: the run's"),
    "ray_address": Option("", type=str, help="Ray cluster address; empty: a local instance"),
    "ray_num_cpus": count(0, low=0, help="CPUs of a local Ray instance (0: all)"),
    "flower_superlink": Option("", type=str,
                               help="flower: the SuperLink's address 'host:port' (its HTTP "
                                    "API, flower-superlink --port)"),
    "flower_insecure": Option(False, help="flower: connect without TLS (local tests only)"),
    "flower_root_certificates": Option(
        "", type=str, help="flower: CA certificate (PEM) that signed the SuperLink's TLS "
                           "certificate (empty: the system's CAs)"),
    "flower_timeout": positive(600.0, help="flower: seconds the ServerApp waits for the "
                                           "SuperNodes and for a round's replies"),
    "target_accuracy": fraction(0.0, help="stop at the first round reaching it (0: off)"),
    "train_split": Option("train", type=str, min_length=1, help="the split partitioned"),
    "eval_splits": Option(["test"], items=Option("", type=str, min_length=1),
                          help="splits the global model is evaluated on"),
}


@hookimpl
def paralab_protocols() -> list[ProtocolSpec]:
    return [
        ProtocolSpec(
            "federated", "paralab_federated.vectorized:Federated",
            "Rounds of sampled clients (IID, Dirichlet, shards or quantity-skew partitions) "
            "training locally and a server aggregate; vmap, loop or Ray backends, or a Flower "
            "deployment (SuperLink and SuperNodes).",
            _FEDERATED_OPTIONS,
            example={"clients": 10, "fraction": 0.5, "rounds": 2},
            method_interface="FederatedStrategy",
            # Loss terms join every client's local loss on the loop and vmap backends (vmap
            # falls back to the loop for them); backend = "ray" rejects them in validate(run).
            applies_losses=True,
            middleware_hooks=("paralab_process_update",),
            resumable=True,
            # K seeds' rounds train their clients as one vectorized computation (the vmap
            # backend; paralab_federated.vectorized says what falls back, and why).
            seed_axis=True,
            requires_when={"backend": {"ray": ("ray",)}},
            install="pip install 'paralab[federated]'",
            # Options that act only with some partitions, aggregations or backends.
            used_when={
                "alpha": {"partition": ("dirichlet", "quantity")},
                "classes_per_client": {"partition": ("shards",)},
                "trim_fraction": {"aggregation": ("trimmed_mean",)},
                "krum_malicious": {"aggregation": ("krum", "multi_krum")},
                "multi_krum_keep": {"aggregation": ("multi_krum",)},
                "ray_address": {"backend": ("ray",)},
                "ray_num_cpus": {"backend": ("ray",)},
                "flower_superlink": {"backend": ("flower",)},
                "flower_insecure": {"backend": ("flower",)},
                "flower_root_certificates": {"backend": ("flower",)},
                "flower_timeout": {"backend": ("flower",)},
            },
        ),
    ]


@hookimpl
def paralab_methods() -> list[MethodSpec]:
    def method(name: str, attribute: str, description: str, options: dict,
               example: dict | None = None) -> MethodSpec:
        return MethodSpec(name, f"paralab_federated.methods:{attribute}", description, options,
                          protocols=_PROTOCOLS, example=example or {})

    return [
        method("fedsgd", "FedSGD", "FedSGD: one full-batch gradient per client, averaged "
               "(McMahan et al. 2017).", {"lr": _client_lr(0.1), "server_lr": _SERVER_LR}),
        method("fedavg", "FedAvg", "FedAvg: local SGD epochs, example-weighted mean of the "
               "deltas (McMahan et al. 2017).", {"lr": _client_lr(0.05), "server_lr": _SERVER_LR,
                                                   "client_momentum": _CLIENT_MOMENTUM}),
        method("fedavgm", "FedAvgM", "FedAvgM: FedAvg with server momentum on the mean delta "
               "(Hsu et al. 2019).",
               {"lr": _client_lr(0.05), "server_lr": _SERVER_LR,
                "server_momentum": Option(0.9, ge=0, lt=1,
                                          help="decay of the server's momentum buffer"),
                "client_momentum": _CLIENT_MOMENTUM}),
        method("fedprox", "FedProx", "FedProx: FedAvg with a proximal term mu/2 ||w - w_global||^2 "
               "(Li et al. 2020).",
               {"lr": _client_lr(0.05),
                "mu": non_negative(0.01, help="strength of the proximal term"),
                "server_lr": _SERVER_LR, "client_momentum": _CLIENT_MOMENTUM}),
        method("fedadam", "FedAdam", "FedAdam: server Adam on the mean delta (Reddi et al. 2021).",
               dict(_ADAPTIVE)),
        method("fedyogi", "FedYogi", "FedYogi: server Yogi on the mean delta (Reddi et al. 2021).",
               dict(_ADAPTIVE)),
        method("fedadagrad", "FedAdagrad", "FedAdagrad: server Adagrad on the mean delta "
               "(Reddi et al. 2021).",
               {"lr": _client_lr(0.05),
                "server_lr": positive(0.1, help="step size of the server's Adagrad"),
                "beta1": Option(0.0, ge=0, lt=1,
                                help="first-moment decay (Flower fixes it at 0)"),
                "tau": _ADAPTIVE["tau"], "client_momentum": _CLIENT_MOMENTUM}),
        method("scaffold", "Scaffold", "SCAFFOLD: stateful clients whose control variates "
               "correct client drift under heterogeneous data (Karimireddy et al. 2020).",
               {"lr": _client_lr(0.05), "server_lr": _SERVER_LR,
                "client_momentum": _CLIENT_MOMENTUM}),
        method("fedbn", "FedBN", "FedBN: FedAvg whose clients keep their batch-norm layers "
               "and statistics local; per-client evaluation with each client's own model "
               "(Li et al. 2021).",
               {"lr": _client_lr(0.05), "server_lr": _SERVER_LR,
                "client_momentum": _CLIENT_MOMENTUM},
               # It needs batch-norm layers: the kit's tiny run uses the mlp with them.
               example={"model": {"name": "mlp", "hidden": [16], "batch_norm": True}}),
        method("fedper", "FedPer", "FedPer: the base layers are federated, the last "
               "personal_layers layers (the head) stay on each client; per-client "
               "evaluation with each client's own model (Arivazhagan et al. 2019).",
               {"lr": _client_lr(0.05), "server_lr": _SERVER_LR,
                "personal_layers": count(1, help="last layers with parameters kept local"),
                "client_momentum": _CLIENT_MOMENTUM}),
        method("ditto", "Ditto", "Ditto: FedAvg's global model plus a personal model per "
               "client, pulled towards the global one (Li et al. 2021); per-client evaluation "
               "with the personal models.",
               {"lr": _client_lr(0.05), "server_lr": _SERVER_LR,
                "ditto_lambda": non_negative(0.1, help="pull of each personal model towards "
                                                       "the global one"),
                "client_momentum": _CLIENT_MOMENTUM}),
        method("fednova", "FedNova", "FedNova: deltas normalized by each client's local steps, "
               "rescaled by their weighted mean (Wang et al. 2020).",
               {"lr": _client_lr(0.05), "server_lr": _SERVER_LR}),
        method("feddyn", "FedDyn", "FedDyn: stateful clients with a dynamic regularizer "
               "(Acar et al. 2021).",
               {"lr": _client_lr(0.05),
                "alpha": positive(0.01, help="strength of the dynamic regularizer")}),
    ]


@hookimpl
def paralab_middleware() -> list[MiddlewareSpec]:
    return [
        MiddlewareSpec(
            "dp", "paralab_federated.privacy:DPFedAvg",
            "Differential privacy: under federated, DP-FedAvg (clip each client update, add "
            "Gaussian noise; McMahan et al. 2018); under supervised, DP-SGD (clip each example's "
            "gradient, add noise to the sum; Abadi et al. 2016). Records privacy/epsilon from "
            "dp_accounting.",
            {"clip": positive(1.0, help="L2 bound of one client update / one example's gradient"),
             "noise_multiplier": non_negative(
                 1.0, help="noise standard deviation over clip (0: no noise, epsilon = inf)"),
             "delta": Option(1e-5, gt=0, lt=1, help="the delta of the (epsilon, delta) budget"),
             "accountant": one_of("rdp", ACCOUNTANTS, help="dp_accounting engine: rdp or pld"),
             "seed": Option(None, type=(int, None),
                            help="seed of the noise with reproducible_noise (None: the run's "
                                 "seed)"),
             "reproducible_noise": Option(False, help="seed the noise from seed / the run's "
                                                      "seed, to debug or compare runs: NOT "
                                                      "private (default: a secret from the "
                                                      "operating system)"),
             "adaptive_clip": Option(False, help="federated: adapt clip each round towards "
                                                 "target_quantile of the update norms "
                                                 "(Andrew et al. 2021); clip is the start"),
             "target_quantile": fraction(0.5, help="adaptive_clip: the share of updates "
                                                   "left unclipped that the bound seeks"),
             "clip_lr": positive(0.2, help="adaptive_clip: step of the geometric update"),
             "clipped_count_stddev": Option(
                 None, type=(float, None), ge=0,
                 help="adaptive_clip: noise std of the unclipped count (None: expected "
                      "clients per round / 20); must exceed noise_multiplier / 2")},
            example={"clip": 1.0, "noise_multiplier": 0.5},
            hooks=("paralab_process_update", "paralab_process_gradients"),
            requires=("dp_accounting",),
            install="pip install 'paralab[federated]'",
        ),
        MiddlewareSpec(
            "local_dp", "paralab_federated.local_privacy:LocalDP",
            "Local differential privacy: each client clips its update and adds Gaussian noise "
            "itself (the classical Gaussian mechanism at sensitivity 2 * clip), trusting no "
            "server. Records privacy/local_epsilon per release and its composition.",
            {"clip": positive(1.0, help="L2 bound of one client update"),
             "epsilon": Option(0.5, gt=0, lt=1, help="epsilon of each released update (the "
                                                     "classical Gaussian mechanism needs < 1)"),
             "delta": Option(1e-5, gt=0, lt=1, help="delta of each released update"),
             "seed": Option(None, type=(int, None),
                            help="seed of the noise with reproducible_noise"),
             "reproducible_noise": Option(False, help="seed the noise from seed / the run's "
                                                      "seed: NOT private")},
            example={"clip": 1.0, "epsilon": 0.5},
            hooks=("paralab_process_update",),
        ),
        MiddlewareSpec(
            "byzantine", "paralab_federated.byzantine:Byzantine",
            "Attacks for testing defences: a fixed fraction of clients send sign-flipped or "
            "scaled updates, or train on flipped labels (Blanchard et al. 2017; Fang et al. "
            "2020). Records byzantine/clients.",
            {"attack": one_of("sign_flip", ATTACKS,
                              help="sign_flip: -scale * delta; scale: scale * delta; "
                                   "label_flip: train on n_classes - 1 - y"),
             "fraction": Option(0.2, gt=0, lt=1, help="share of the clients that attack"),
             "scale": positive(5.0, help="factor of sign_flip and scale"),
             "seed": Option(None, type=(int, None),
                            help="seed of which clients attack (None: the run's seed)")},
            example={"attack": "sign_flip", "fraction": 0.2},
            hooks=("paralab_process_update",),
        ),
        MiddlewareSpec(
            "secure_aggregation", "paralab_federated.secure_aggregation:SecureAggregation",
            "Secure aggregation by pairwise masks that cancel in the sum (Bonawitz et al. 2017).",
            {"precision": count(24, low=0, help="fractional bits of the fixed-point encoding"),
             "bits": Option(62, type=int, ge=8, le=62, help="residues are taken modulo 2**bits"),
             "seed": Option(None, type=(int, None),
                            help="the pairwise masks' secret, for reproducible masks (NOT "
                                 "secret); None: drawn from the operating system")},
            example={},
            hooks=("paralab_process_update",),
        ),
    ]
