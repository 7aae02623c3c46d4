"""Federated methods: what clients optimize and how the server applies the averaged update.

The client side of every method is local SGD at ``lr`` (FedProx adds its proximal term); the
server side turns the weighted mean of the client deltas into the next global model:

* FedSGD and FedAvg (McMahan et al. 2017): ``w <- w + server_lr * mean_delta``; FedSGD is
  FedAvg with one epoch of one full-batch step per client.
* FedProx (Li et al. 2020): FedAvg with ``mu/2 * ||w - w_global||^2`` in the client loss.
* FedAdam and FedYogi (Reddi et al. 2021, Algorithm 2): the mean delta is a pseudo-gradient
  for a server Adam or Yogi step with learning rate ``server_lr``, momenta ``beta1``/``beta2``
  and adaptivity ``tau``; no bias correction, as in the paper (Flower's ``FedYogi`` computes
  the same, and a test checks it).

Options and their ranges are declared in the plugin's specs (``paralab_federated``), so the
constructors trust their arguments.
"""

from __future__ import annotations

from typing import Any

import torch

from paralab import FederatedStrategy

Params = dict[str, torch.Tensor]


class FederatedMethod(FederatedStrategy):
    """The ready implementation of :class:`paralab.FederatedStrategy`, the ``federated``
    protocol's method interface: client settings and a server step."""

    full_batch = False
    """True when each client takes one full-batch gradient step per round (FedSGD)."""

    def __init__(self, lr: float = 0.05, server_lr: float = 1.0, mu: float = 0.0) -> None:
        self.lr = float(lr)
        self.server_lr = float(server_lr)
        self.mu = float(mu)

    def client_settings(self, epochs: int, batch_size: int) -> tuple[int, int | None]:
        """``(local epochs, local batch size or None for the full local data)``."""
        return (1, None) if self.full_batch else (epochs, batch_size)

    def setup(self, params: Params) -> None:
        """Called once with the initial global parameters."""

    def state_dict(self) -> dict[str, Any]:
        """The server's state after the rounds so far (none for FedAvg: the global model is
        all it has), for the protocol's checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back :meth:`state_dict` after :meth:`setup`."""

    def server_step(self, params: Params, delta: Params, round_index: int) -> Params:
        """The next global parameters from the current ones and the aggregated delta."""
        return {n: params[n] + self.server_lr * delta[n] for n in params}


class FedSGD(FederatedMethod):
    """Each client computes one gradient on all its data; the server averages (McMahan 2017)."""

    full_batch = True

    def __init__(self, lr: float = 0.1, server_lr: float = 1.0) -> None:
        super().__init__(lr, server_lr)


class FedAvg(FederatedMethod):
    """Local SGD for some epochs, then the example-weighted mean of the deltas."""

    def __init__(self, lr: float = 0.05, server_lr: float = 1.0) -> None:
        super().__init__(lr, server_lr)


class FedProx(FederatedMethod):
    """FedAvg with a proximal term that keeps local models near the global one."""

    def __init__(self, lr: float = 0.05, mu: float = 0.01, server_lr: float = 1.0) -> None:
        super().__init__(lr, server_lr, mu)


class _AdaptiveServer(FederatedMethod):
    def __init__(self, lr: float = 0.05, server_lr: float = 0.01, beta1: float = 0.9,
                 beta2: float = 0.99, tau: float = 1e-3) -> None:
        super().__init__(lr, server_lr)
        self.beta1, self.beta2, self.tau = float(beta1), float(beta2), float(tau)
        self.m: Params = {}
        self.v: Params = {}

    def setup(self, params: Params) -> None:
        self.m = {n: torch.zeros_like(p) for n, p in params.items()}
        self.v = {n: torch.zeros_like(p) for n, p in params.items()}

    def state_dict(self) -> dict[str, Any]:
        """The server optimizer's first and second moments."""
        return {"m": dict(self.m), "v": dict(self.v)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        devices = {n: m.device for n, m in self.m.items()}
        self.m = {n: t.to(devices.get(n, t.device)) for n, t in state["m"].items()}
        self.v = {n: t.to(devices.get(n, t.device)) for n, t in state["v"].items()}

    def second_moment(self, v: torch.Tensor, square: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def server_step(self, params: Params, delta: Params, round_index: int) -> Params:
        if not self.m:
            self.setup(params)
        new = {}
        for n in params:
            self.m[n] = self.beta1 * self.m[n] + (1 - self.beta1) * delta[n]
            self.v[n] = self.second_moment(self.v[n], delta[n] * delta[n])
            new[n] = params[n] + self.server_lr * self.m[n] / (self.v[n].sqrt() + self.tau)
        return new


class FedAdam(_AdaptiveServer):
    """Server Adam on the pseudo-gradient: ``v <- beta2 v + (1 - beta2) delta^2``."""

    def second_moment(self, v: torch.Tensor, square: torch.Tensor) -> torch.Tensor:
        return self.beta2 * v + (1 - self.beta2) * square


class FedYogi(_AdaptiveServer):
    """Server Yogi: ``v <- v - (1 - beta2) delta^2 sign(v - delta^2)``, which grows ``v`` more
    slowly than Adam when gradients are sparse or noisy."""

    def second_moment(self, v: torch.Tensor, square: torch.Tensor) -> torch.Tensor:
        return v - (1 - self.beta2) * square * torch.sign(v - square)


class FedAvgM(FederatedMethod):
    """FedAvg with server momentum (Hsu et al. 2019): ``m <- server_momentum * m + delta``,
    ``w <- w + server_lr * m``; Flower's ``FedAvgM`` computes the same (a test checks it)."""

    def __init__(self, lr: float = 0.05, server_lr: float = 1.0,
                 server_momentum: float = 0.9) -> None:
        super().__init__(lr, server_lr)
        self.server_momentum = float(server_momentum)
        self.m: Params = {}

    def setup(self, params: Params) -> None:
        self.m = {n: torch.zeros_like(p) for n, p in params.items()}

    def state_dict(self) -> dict[str, Any]:
        """The server's momentum buffer."""
        return {"m": dict(self.m)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        devices = {n: m.device for n, m in self.m.items()}
        self.m = {n: t.to(devices.get(n, t.device)) for n, t in state["m"].items()}

    def server_step(self, params: Params, delta: Params, round_index: int) -> Params:
        if not self.m:
            self.setup(params)
        for n in params:
            self.m[n] = self.server_momentum * self.m[n] + delta[n]
        return {n: params[n] + self.server_lr * self.m[n] for n in params}
