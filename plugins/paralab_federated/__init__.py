"""paralab_federated: federated learning as a paralab plugin.

Partitions of any shared dataset into clients (index views), FedSGD, FedAvg, FedProx, FedAdam
and FedYogi, a simulator that trains a round's clients as one vectorized computation, a Ray
backend for clusters, and DP-FedAvg and secure aggregation as middleware.

This module only declares components: factories are ``"module:attribute"`` strings, so listing
plugins never imports torch or Ray.
"""

from __future__ import annotations

from paralab.components import MethodSpec, MiddlewareSpec, ProtocolSpec
from paralab.hookspecs import hookimpl

PARALAB_API = "1.0"

_PROTOCOLS = ("federated",)
_CLIENT = {"lr": 0.05}
_ADAPTIVE = {"lr": 0.05, "server_lr": 0.01, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3}


@hookimpl
def paralab_protocols() -> list[ProtocolSpec]:
    return [
        ProtocolSpec(
            "federated", "paralab_federated.protocol:Federated",
            "Rounds of sampled clients (IID, Dirichlet, shards or quantity-skew partitions) "
            "training locally and a server aggregate; vmap, loop or Ray backends.",
            {"clients": 100, "partition": "iid", "alpha": 0.5, "classes_per_client": 2,
             "fraction": 0.1, "rounds": 20, "local_epochs": 1, "batch_size": 16,
             "stragglers": 0.0, "backend": "vmap", "eval_every": 1, "client_eval": True,
             "seed": None, "ray_address": "", "ray_num_cpus": 0, "target_accuracy": 0.0,
             "train_split": "train",
             "eval_splits": ["test"]},
            example={"clients": 10, "fraction": 0.5, "rounds": 2},
        ),
    ]


@hookimpl
def paralab_methods() -> list[MethodSpec]:
    def method(name: str, attribute: str, description: str, options: dict) -> MethodSpec:
        return MethodSpec(name, f"paralab_federated.methods:{attribute}", description, options,
                          protocols=_PROTOCOLS, example={})

    return [
        method("fedsgd", "FedSGD", "FedSGD: one full-batch gradient per client, averaged "
               "(McMahan et al. 2017).", {"lr": 0.1, "server_lr": 1.0}),
        method("fedavg", "FedAvg", "FedAvg: local SGD epochs, example-weighted mean of the "
               "deltas (McMahan et al. 2017).", {**_CLIENT, "server_lr": 1.0}),
        method("fedprox", "FedProx", "FedProx: FedAvg with a proximal term mu/2 ||w - w_global||^2 "
               "(Li et al. 2020).", {**_CLIENT, "mu": 0.01, "server_lr": 1.0}),
        method("fedadam", "FedAdam", "FedAdam: server Adam on the mean delta (Reddi et al. 2021).",
               dict(_ADAPTIVE)),
        method("fedyogi", "FedYogi", "FedYogi: server Yogi on the mean delta (Reddi et al. 2021).",
               dict(_ADAPTIVE)),
    ]


@hookimpl
def paralab_middleware() -> list[MiddlewareSpec]:
    return [
        MiddlewareSpec(
            "dp", "paralab_federated.privacy:DPFedAvg",
            "DP-FedAvg: clip each client update to L2 norm `clip`, add Gaussian noise; records "
            "privacy/epsilon from dp_accounting (McMahan et al. 2018).",
            {"clip": 1.0, "noise_multiplier": 1.0, "delta": 1e-5, "accountant": "rdp", "seed": 0},
            example={"clip": 1.0, "noise_multiplier": 0.5},
        ),
        MiddlewareSpec(
            "secure_aggregation", "paralab_federated.secure_aggregation:SecureAggregation",
            "Secure aggregation by pairwise masks that cancel in the sum (Bonawitz et al. 2017).",
            {"precision": 24, "bits": 62, "seed": 0},
            example={},
        ),
    ]
