"""The ``ray`` backend: each client update is a Ray task, on this machine or a cluster.

The shared inputs and targets go into Ray's object store once per run (numpy arrays, read
zero-copy by every worker on a node), the model once per run, the global parameters once per
round. Each task runs :func:`paralab_federated.local_training.train_client`, the same function
as the ``loop`` backend, on the same minibatches, with the caller's number of torch threads, so
a seed gives the same global model as the local simulator.

``ray_address`` names a running cluster (``"auto"``, or ``"ray://head:10001"``); empty starts
(or reuses) a local Ray instance with ``ray_num_cpus`` CPUs (0: all). Workers import
``paralab_federated``: install paralab with the ``federated`` extra on every node.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from paralab_federated.backends import ClientResults, start_buffers
from paralab_federated.local_training import Params, train_client_state
from paralab_federated.schedule import RoundPlan


def _client_task(model: nn.Module, global_params: Params, buffers: Params | None,
                 x: np.ndarray, y: np.ndarray, batches: list[torch.Tensor], lr: float, mu: float,
                 threads: int, momentum: float = 0.0,
                 correction: Params | None = None) -> tuple[Params, float, Params]:
    """One client's local training inside a Ray worker (CPU)."""
    torch.set_num_threads(threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # object-store arrays are read-only
        inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    return train_client_state(copy.deepcopy(model), global_params, buffers, inputs, targets,
                              batches, lr, mu, momentum=momentum, correction=correction)


def connect(address: str = "", num_cpus: int = 0) -> Any:
    """Ray, initialized: the cluster at ``address``, else a local instance (reused if up)."""
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or None, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
    return ray


class RayBackend:
    """Client updates as Ray tasks; results come back on the run's device."""

    name = "ray"

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, address: str = "",
                 num_cpus: int = 0) -> None:
        self.ray = connect(address, num_cpus)
        self.device = x.device
        self.remote = self.ray.remote(num_cpus=1)(_client_task)
        self.model_ref = self.ray.put(copy.deepcopy(model).cpu())
        self.x_ref = self.ray.put(x.detach().cpu().numpy())
        self.y_ref = self.ray.put(y.detach().cpu().numpy())
        self.threads = torch.get_num_threads()

    def train(self, plan: RoundPlan, global_params: Params, lr: float, mu: float,
              buffers: dict[int, Params] | None = None, *, momentum: float = 0.0,
              corrections: dict[int, Params] | None = None) -> ClientResults:
        params_ref = self.ray.put({n: p.detach().cpu() for n, p in global_params.items()})

        def start(k: int) -> Params | None:
            own = start_buffers(buffers, k)
            return None if own is None else {n: b.detach().cpu() for n, b in own.items()}

        futures = {
            k: self.remote.remote(self.model_ref, params_ref, start(k), self.x_ref, self.y_ref,
                                  [b.cpu() for b in plan.batches[k]], lr, mu, self.threads,
                                  momentum, None if corrections is None else
                                  {n: c.detach().cpu() for n, c in corrections[k].items()})
            for k in plan.clients
        }
        results = ClientResults()
        for k, future in futures.items():
            try:
                delta, loss, final = self.ray.get(future)
            except Exception as error:  # noqa: BLE001 - a failed task is that client's failure
                results.fail(k, getattr(error, "cause", None) or error)
                continue
            results.deltas[k] = {n: v.to(self.device) for n, v in delta.items()}
            results.losses[k] = loss
            if final:
                results.buffers[k] = {n: v.to(self.device) for n, v in final.items()}
        return results
