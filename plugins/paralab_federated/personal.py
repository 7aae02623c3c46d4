"""Client-local layers (FedBN, Li et al. 2021; FedPer, Arivazhagan et al. 2019): what each
client keeps instead of sharing.

FedPer keeps the model's last ``personal_layers`` layers with parameters (the classifier
head) on each client and federates the base; everything below about FedBN's batch-norm
layers holds for FedPer's head (and for buffers, which both keep local). Ditto (Li et al.
2021, "Ditto: Fair and Robust Federated Learning Through Personalization") keeps a whole
personal model per client beside the federated one (:class:`PersonalModels`).

Under ``fedbn`` the batch-norm layers never leave the clients: their affine parameters
(``weight``, ``bias``) and their buffers (``running_mean``, ``running_var``,
``num_batches_tracked``) are each client's own, kept from one round in which it is sampled to
the next (a client starts from the initial model's values). Every other parameter is
federated as under FedAvg. Concretely, per round:

* a client starts from the global shared parameters with its own local parameters and
  buffers put in (:meth:`LocalState.starts`, :meth:`LocalState.start_buffers`);
* after training, its local parameters (start + delta) and buffers are stored here, and its
  delta for the local parameters is zeroed before it leaves the client
  (:meth:`LocalState.absorb`), so neither middleware nor the server ever sees them and the
  server aggregates no buffer;
* the per-client evaluation uses each client's own model (shared layers + its local ones,
  :meth:`LocalState.client_accuracies`): FedBN's personalized accuracy;
* the global model that the eval splits see holds, in its local layers, the example-weighted
  mean of the clients' local parameters and buffers (a new client's best guess; FedBN
  itself has no global batch norm), recorded as ``clients/models = "personal"``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from paralab_federated.buffers import aggregate_buffers
from paralab_federated.local_training import (
    buffers_of,
    load_buffers,
    load_parameters,
    parameters_of,
)
from paralab_federated.partitions import Partition

Params = dict[str, torch.Tensor]

NORM_LAYERS = (nn.modules.batchnorm._BatchNorm,)
"""Layers FedBN keeps local: every batch norm (1d, 2d, 3d, SyncBatchNorm)."""


def local_parameter_names(model: nn.Module) -> list[str]:
    """The trainable parameters of the model's batch-norm layers."""
    names = []
    for prefix, module in model.named_modules():
        if isinstance(module, NORM_LAYERS):
            names += [f"{prefix}.{n}" if prefix else n
                      for n, p in module.named_parameters(recurse=False) if p.requires_grad]
    return names


def parameter_layers(model: nn.Module) -> list[str]:
    """Names of the modules that hold parameters themselves, in registration order."""
    return [name for name, module in model.named_modules()
            if any(True for _ in module.parameters(recurse=False))]


def head_parameter_names(model: nn.Module, layers: int) -> list[str]:
    """The trainable parameters of the model's last ``layers`` parameter layers (FedPer)."""
    modules = dict(model.named_modules())
    names = []
    for prefix in parameter_layers(model)[-layers:]:
        names += [f"{prefix}.{n}" if prefix else n
                  for n, p in modules[prefix].named_parameters(recurse=False)
                  if p.requires_grad]
    return names


def norm_layers(model: nn.Module) -> list[str]:
    """Names of the model's batch-norm modules (empty: FedBN would be FedAvg)."""
    return [name for name, module in model.named_modules() if isinstance(module, NORM_LAYERS)]


class LocalState:
    """Each client's local parameters and buffers (see the module docstring)."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        self.names = list(names)
        params = parameters_of(model)
        self.initial_params: Params = {n: params[n] for n in self.names}
        self.initial_buffers: Params = buffers_of(model)
        self.params: dict[int, Params] = {}
        self.buffers: dict[int, Params] = {}

    def starts(self, clients: Iterable[int], shared: Params) -> dict[int, Params]:
        """Client id -> the parameters it starts from: the global ones, its local ones put in."""
        return {k: {**shared, **self.params.get(k, self.initial_params)} for k in clients}

    def start_buffers(self, clients: Iterable[int]) -> dict[int, Params]:
        return {k: self.buffers.get(k, self.initial_buffers) for k in clients}

    def absorb(self, deltas: dict[int, Params], buffers: dict[int, Params],
               starts: Mapping[int, Params]) -> None:
        """Keep each trained client's local parameters and buffers; zero its local deltas
        (in place) and take its buffers out of what the server aggregates."""
        for k, delta in deltas.items():
            self.params[k] = {n: starts[k][n] + delta[n] for n in self.names}
            for n in self.names:
                delta[n] = torch.zeros_like(delta[n])
            if k in buffers:
                self.buffers[k] = buffers.pop(k)

    def load_average(self, model: nn.Module, partition: Partition) -> None:
        """Put the example-weighted mean of the clients' local layers into ``model`` (the
        global model's local layers; clients that never trained are left out)."""
        trained = sorted(self.params)
        if not trained:
            return
        weights = {k: float(partition.sizes[k]) for k in trained}
        total = sum(weights.values())
        load_parameters(model, {n: sum(self.params[k][n] * (weights[k] / total)
                                       for k in trained) for n in self.names})
        with_buffers = {k: self.buffers[k] for k in trained if k in self.buffers}
        if with_buffers:
            load_buffers(model, aggregate_buffers(self.initial_buffers, with_buffers, weights))

    def client_model(self, model: nn.Module, client: int) -> nn.Module:
        """``model`` (the global shared layers) with ``client``'s local layers put in."""
        own = copy.deepcopy(model)
        load_parameters(own, self.params.get(client, self.initial_params))
        load_buffers(own, self.buffers.get(client, self.initial_buffers))
        return own

    @torch.no_grad()
    def client_accuracies(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                          rows: Partition) -> torch.Tensor:
        """Each client's accuracy on its ``rows`` with its own model (NaN: no rows)."""
        out = torch.full((rows.n_clients,), float("nan"), dtype=torch.float64)
        for k in range(rows.n_clients):
            own_rows = rows.client(k).to(x.device)
            if not len(own_rows):
                continue
            own = self.client_model(model, k).eval()
            out[k] = float((own(x[own_rows]).argmax(dim=1) == y[own_rows]).double().mean())
        return out


class PersonalModels(LocalState):
    """Ditto's store: each client's whole personal model ``v_k`` (all parameters), trained
    after its global update with ``lambda/2 ||v_k - w_global||^2``; the global model is
    FedAvg's, untouched (no parameter is local to the federation), and the per-client
    evaluation uses ``v_k`` (a client that never trained: the global model)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, [n for n, _ in model.named_parameters()])
        self.initial_params = {}

    def personal_start(self, client: int, global_params: Params) -> Params:
        """``v_k`` (the global model until the client's first round)."""
        return self.params.get(client, global_params)

    def absorb(self, deltas: dict[int, Params], buffers: dict[int, Params],
               starts: Mapping[int, Params]) -> None:
        """The federated update leaves as it is (the personal model is kept by :meth:`keep`)."""

    def keep(self, client: int, personal: Params) -> None:
        self.params[client] = personal

    def load_average(self, model: nn.Module, partition: Partition) -> None:
        """The global model is FedAvg's: nothing to put in."""

    def client_model(self, model: nn.Module, client: int) -> nn.Module:
        own = copy.deepcopy(model)
        if client in self.params:
            load_parameters(own, self.params[client])
        return own
