"""Federated methods: what clients optimize and how the server applies the averaged update.

The client side of every method is local SGD at ``lr`` (FedProx adds its proximal term); the
server side turns the weighted mean of the client deltas into the next global model:

* FedSGD and FedAvg (McMahan et al. 2017): ``w <- w + server_lr * mean_delta``; FedSGD is
  FedAvg with one epoch of one full-batch step per client.
* FedProx (Li et al. 2020): FedAvg with ``mu/2 * ||w - w_global||^2`` in the client loss.
* FedAdam, FedYogi and FedAdagrad (Reddi et al. 2021, Algorithm 2): the mean delta is a
  pseudo-gradient for a server Adam, Yogi or Adagrad step with learning rate ``server_lr``,
  momenta ``beta1``/``beta2`` and adaptivity ``tau``; no bias correction, as in the paper
  (Flower's ``FedYogi`` and ``FedAdagrad`` compute the same, and tests check it).
* SCAFFOLD (Karimireddy et al. 2020, Algorithm 1, option II): stateful clients. Each client
  ``i`` keeps a control variate ``c_i`` across rounds, the server one ``c``; every local
  gradient step uses ``g + c - c_i`` (the client drift corrected), after which
  ``c_i <- c_i - c - delta_i / (K_i * lr)`` (``K_i`` its local steps) and the server moves
  ``c`` by ``|S|/N`` times the mean change of the round's ``c_i``.
* FedNova (Wang et al. 2020, plain local SGD): each client's delta is normalized by its local
  steps ``K_i`` and the aggregate rescaled by ``tau_eff = sum_i p_i K_i`` (``p_i`` the
  example weights): ``w <- w + server_lr * tau_eff * sum_i p_i delta_i / K_i``, which removes
  the objective inconsistency of clients taking different numbers of steps.
* FedDyn (Acar et al. 2021): stateful clients with a dynamic regularizer; client ``i``
  minimizes ``L_i(w) - <g_i, w> + alpha/2 ||w - w_global||^2`` and then sets
  ``g_i <- g_i - alpha * delta_i``; the server keeps ``h <- h - alpha/N * sum_i delta_i`` and
  sets ``w <- w + mean_delta - h / alpha``.

Every method's clients may use heavy-ball momentum (``client_momentum``, ``torch.optim.SGD``'s
with a fresh buffer each round). The protocol talks to a method's client side through typed
records, not untyped ``Update.info`` keys: :meth:`FederatedMethod.client_corrections` before
the round's training, and :class:`ClientReport` (one per client that reported) to
:meth:`FederatedMethod.observe_clients` after it.

Options and their ranges are declared in the plugin's specs (``paralab_federated``), so the
constructors trust their arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from paralab import FederatedStrategy

if TYPE_CHECKING:
    from paralab import RunContext

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ClientReport:
    """What one client's local training of a round produced, as its strategy sees it (before
    any middleware acts on the update): its delta, weight (examples) and local steps."""

    client: int
    delta: Params
    weight: float
    steps: int


class FederatedMethod(FederatedStrategy):
    """The ready implementation of :class:`paralab.FederatedStrategy`, the ``federated``
    protocol's method interface: client settings and a server step."""

    full_batch = False
    """True when each client takes one full-batch gradient step per round (FedSGD)."""

    def __init__(self, lr: float = 0.05, server_lr: float = 1.0, mu: float = 0.0,
                 client_momentum: float = 0.0) -> None:
        self.lr = float(lr)
        self.server_lr = float(server_lr)
        self.mu = float(mu)
        self.client_momentum = float(client_momentum)

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

    def client_corrections(self, clients: Sequence[int]) -> dict[int, Params] | None:
        """Client id -> the constant added to its every local gradient this round (None: no
        correction; SCAFFOLD's ``c - c_i``)."""
        return None

    def observe_clients(self, reports: Sequence[ClientReport], n_clients: int) -> None:
        """The round's reporting clients' raw results, before the server step (stateful
        clients update their state here)."""

    def client_delta(self, report: ClientReport) -> Params:
        """The delta that client sends (after :meth:`observe_clients`; FedNova normalizes
        it); middleware and the aggregate then act on this."""
        return report.delta

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

    def __init__(self, lr: float = 0.05, server_lr: float = 1.0,
                 client_momentum: float = 0.0) -> None:
        super().__init__(lr, server_lr, client_momentum=client_momentum)


class FedProx(FederatedMethod):
    """FedAvg with a proximal term that keeps local models near the global one."""

    def __init__(self, lr: float = 0.05, mu: float = 0.01, server_lr: float = 1.0,
                 client_momentum: float = 0.0) -> None:
        super().__init__(lr, server_lr, mu, client_momentum)


class _AdaptiveServer(FederatedMethod):
    def __init__(self, lr: float = 0.05, server_lr: float = 0.01, beta1: float = 0.9,
                 beta2: float = 0.99, tau: float = 1e-3, client_momentum: float = 0.0) -> None:
        super().__init__(lr, server_lr, client_momentum=client_momentum)
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


class FedAdagrad(_AdaptiveServer):
    """Server Adagrad: ``v <- v + delta^2`` (Flower's ``FedAdagrad``; ``beta2`` unused)."""

    def __init__(self, lr: float = 0.05, server_lr: float = 0.1, beta1: float = 0.0,
                 tau: float = 1e-3, client_momentum: float = 0.0) -> None:
        super().__init__(lr, server_lr, beta1, 0.0, tau, client_momentum)

    def second_moment(self, v: torch.Tensor, square: torch.Tensor) -> torch.Tensor:
        return v + square


class FedAvgM(FederatedMethod):
    """FedAvg with server momentum (Hsu et al. 2019): ``m <- server_momentum * m + delta``,
    ``w <- w + server_lr * m``; Flower's ``FedAvgM`` computes the same (a test checks it)."""

    def __init__(self, lr: float = 0.05, server_lr: float = 1.0,
                 server_momentum: float = 0.9, client_momentum: float = 0.0) -> None:
        super().__init__(lr, server_lr, client_momentum=client_momentum)
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


def refuse_private_middleware(run: RunContext, method: str, what: str) -> None:
    """A stateful method whose server state reads what no update middleware acts on cannot
    run under ``dp`` or ``secure_aggregation``: ``ValueError`` (a SpecError) naming them."""
    acting = sorted({ref.name for ref in run.spec.middleware} & {"dp", "secure_aggregation"})
    if acting:
        raise ValueError(
            f"method {method!r} sends each client's {what} beside its update, which "
            f"middleware {acting} would not clip, noise or mask; use fedavg/fedprox with "
            f"them, or remove them")


class _StatefulClients(FederatedMethod):
    """A server vector and one vector per client kept across rounds (SCAFFOLD's ``c`` and
    ``c_i``, FedDyn's ``h`` and ``g_i``), zero until set, all in the checkpoints; the
    subclass names the two attributes."""

    _server_attr = ""
    _clients_attr = ""

    def setup(self, params: Params) -> None:
        setattr(self, self._server_attr, {n: torch.zeros_like(p) for n, p in params.items()})
        setattr(self, self._clients_attr, {})
        self._pending: Params | None = None

    def _server(self) -> Params:
        return getattr(self, self._server_attr)

    def _clients(self) -> dict[int, Params]:
        return getattr(self, self._clients_attr)

    def state_dict(self) -> dict[str, Any]:
        """The server's vector and each client's."""
        return {self._server_attr: dict(self._server()),
                "clients": {int(k): dict(v) for k, v in self._clients().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        devices = {n: t.device for n, t in self._server().items()}
        setattr(self, self._server_attr, {n: t.to(devices.get(n, t.device))
                                          for n, t in state[self._server_attr].items()})
        setattr(self, self._clients_attr, {
            int(k): {n: t.to(devices.get(n, t.device)) for n, t in v.items()}
            for k, v in state["clients"].items()})

    def _own(self, client: int) -> Params:
        """The client's vector (zero before its first round)."""
        return self._clients().get(client) or {
            n: torch.zeros_like(t) for n, t in self._server().items()}


class Scaffold(_StatefulClients):
    """SCAFFOLD (Karimireddy et al. 2020): control variates correct each client's drift
    towards its own optimum; the clients' variates ``c_i`` persist across rounds (a client
    sampled for the first time starts from zero), so the method is stateful and its state
    (``c`` and every ``c_i``) goes into checkpoints."""

    _server_attr, _clients_attr = "c", "client_c"

    def __init__(self, lr: float = 0.05, server_lr: float = 1.0,
                 client_momentum: float = 0.0) -> None:
        super().__init__(lr, server_lr, client_momentum=client_momentum)
        self.c: Params = {}
        self.client_c: dict[int, Params] = {}
        self._pending = None
        """``|S|/N`` times the mean change of this round's ``c_i``, for the server step."""

    def validate(self, run: RunContext) -> None:
        """The control variates' changes travel to the server beside the updates, which no
        update middleware sees: DP would leave them unclipped and noiseless, secure
        aggregation unmasked."""
        refuse_private_middleware(run, "scaffold", "control-variate change")


    def client_corrections(self, clients: Sequence[int]) -> dict[int, Params]:
        """``c - c_i`` for each of the round's clients."""
        corrections = {}
        for k in clients:
            own = self._own(k)
            corrections[k] = {n: self.c[n] - own[n] for n in self.c}
        return corrections

    def observe_clients(self, reports: Sequence[ClientReport], n_clients: int) -> None:
        """Option II: ``c_i+ = c_i - c - delta_i / (K_i lr)``; the server's ``c`` then moves
        by ``|S|/N`` times the mean of ``c_i+ - c_i`` (applied in :meth:`server_step`)."""
        changes = []
        for report in reports:
            own = self._own(report.client)
            steps = max(report.steps, 1)
            new = {n: own[n] - self.c[n] - report.delta[n] / (steps * self.lr) for n in self.c}
            changes.append({n: new[n] - own[n] for n in self.c})
            self.client_c[report.client] = new
        self._pending = None if not changes else {
            n: torch.stack([d[n] for d in changes]).mean(0) * (len(changes) / n_clients)
            for n in self.c}

    def server_step(self, params: Params, delta: Params, round_index: int) -> Params:
        if not self.c:
            self.setup(params)
        if self._pending is not None:
            self.c = {n: self.c[n] + self._pending[n] for n in self.c}
            self._pending = None
        return {n: params[n] + self.server_lr * delta[n] for n in params}


class FedNova(FederatedMethod):
    """FedNova: normalized averaging of deltas from clients that took different numbers of
    local steps (Wang et al. 2020, vanilla SGD clients)."""

    def __init__(self, lr: float = 0.05, server_lr: float = 1.0) -> None:
        super().__init__(lr, server_lr)
        self._scale: dict[int, float] = {}

    def observe_clients(self, reports: Sequence[ClientReport], n_clients: int) -> None:
        """``tau_eff = sum_i p_i K_i`` over the round's reporting clients; each delta is then
        scaled by ``tau_eff / K_i`` (:meth:`client_delta`), so the weighted mean is
        FedNova's ``tau_eff * sum_i p_i delta_i / K_i``."""
        total = sum(r.weight for r in reports)
        if not reports or total <= 0:
            self._scale = {}
            return
        tau_eff = sum(r.weight / total * max(r.steps, 1) for r in reports)
        self._scale = {r.client: tau_eff / max(r.steps, 1) for r in reports}

    def client_delta(self, report: ClientReport) -> Params:
        factor = self._scale.get(report.client, 1.0)
        return {n: d * factor for n, d in report.delta.items()}


class FedDyn(_StatefulClients):
    """FedDyn (Acar et al. 2021): each client's linear term ``-<g_i, w>`` (its state, kept
    across rounds) and proximal term ``alpha/2 ||w - w_global||^2`` align the clients'
    stationary points with the global one; the server corrects by its state ``h``."""

    _server_attr, _clients_attr = "h", "client_g"

    def __init__(self, lr: float = 0.05, alpha: float = 0.01) -> None:
        super().__init__(lr, 1.0, mu=alpha)
        self.alpha = float(alpha)
        self.h: Params = {}
        self.client_g: dict[int, Params] = {}
        self._pending = None

    def validate(self, run: RunContext) -> None:
        """The server's ``h`` is built from the raw deltas' sum, which DP's clipping and
        noise and secure aggregation's masks never saw."""
        refuse_private_middleware(run, "feddyn", "raw delta for the server state h")


    def client_corrections(self, clients: Sequence[int]) -> dict[int, Params]:
        """``-g_i``: the gradient of the linear term ``-<g_i, w>``."""
        return {k: {n: -g for n, g in self._own(k).items()} for k in clients}

    def observe_clients(self, reports: Sequence[ClientReport], n_clients: int) -> None:
        for report in reports:
            own = self._own(report.client)
            self.client_g[report.client] = {n: own[n] - self.alpha * report.delta[n]
                                            for n in self.h}
        self._pending = None if not reports else {
            n: -self.alpha / n_clients * torch.stack([r.delta[n] for r in reports]).sum(0)
            for n in self.h}

    def server_step(self, params: Params, delta: Params, round_index: int) -> Params:
        if not self.h:
            self.setup(params)
        if self._pending is not None:
            self.h = {n: self.h[n] + self._pending[n] for n in self.h}
            self._pending = None
        return {n: params[n] + delta[n] - self.h[n] / self.alpha for n in params}


class FedBN(FederatedMethod):
    """FedBN (Li et al. 2021): FedAvg whose clients keep their batch-norm layers (affine
    parameters and running statistics) local (:mod:`paralab_federated.personal`)."""

    def __init__(self, lr: float = 0.05, server_lr: float = 1.0,
                 client_momentum: float = 0.0) -> None:
        super().__init__(lr, server_lr, client_momentum=client_momentum)

    def local_names(self, model: torch.nn.Module) -> list[str]:
        """The parameters the protocol keeps on the clients
        (:class:`paralab_federated.personal.LocalState`): the batch-norm layers'."""
        from paralab_federated.personal import local_parameter_names

        return local_parameter_names(model)

    def validate(self, run: RunContext) -> None:
        """A model without batch norm would make FedBN FedAvg under another name; Ray workers
        and checkpoints do not carry the clients' local layers yet."""
        from paralab_federated.personal import norm_layers

        if run.model is not None and not norm_layers(run.model):
            raise ValueError(
                f"method 'fedbn' keeps batch-norm layers local, and model "
                f"{run.spec.model.name!r} has none (it would be FedAvg); use fedavg, or a "
                f"model with torch.nn.BatchNorm1d/2d/3d")
        refuse_unsupported_personal(run, "fedbn")


def refuse_unsupported_personal(run: RunContext, method: str) -> None:
    """Ray workers and checkpoints do not carry the clients' local layers yet."""
    if getattr(run.protocol, "backend", "") == "ray":
        raise ValueError(f"method {method!r} runs on backend = 'loop' or 'vmap' (which "
                         f"trains client-local layers on the loop); Ray workers do not keep "
                         f"them")
    if run.spec.checkpoint_every:
        raise ValueError(f"method {method!r}: checkpoints do not hold the clients' local "
                         f"layers yet; set checkpoint_every = 0")


class FedPer(FederatedMethod):
    """FedPer (Arivazhagan et al. 2019): the base layers are federated, the last
    ``personal_layers`` layers (the head) stay on each client."""

    def __init__(self, lr: float = 0.05, server_lr: float = 1.0, personal_layers: int = 1,
                 client_momentum: float = 0.0) -> None:
        super().__init__(lr, server_lr, client_momentum=client_momentum)
        self.personal_layers = int(personal_layers)

    def local_names(self, model: torch.nn.Module) -> list[str]:
        from paralab_federated.personal import head_parameter_names

        return head_parameter_names(model, self.personal_layers)

    def validate(self, run: RunContext) -> None:
        """The head must leave a base to federate."""
        from paralab_federated.personal import parameter_layers

        if run.model is not None:
            layers = parameter_layers(run.model)
            if self.personal_layers >= len(layers):
                raise ValueError(
                    f"personal_layers = {self.personal_layers}: model "
                    f"{run.spec.model.name!r} has {len(layers)} layers with parameters, so "
                    f"nothing would be federated; use at most {len(layers) - 1}")
        refuse_unsupported_personal(run, "fedper")


class Ditto(FederatedMethod):
    """Ditto (Li et al. 2021): FedAvg for the global model; each client also keeps a personal
    model trained with ``ditto_lambda/2 ||v - w_global||^2`` towards the global one
    (:class:`paralab_federated.personal.PersonalModels`)."""

    def __init__(self, lr: float = 0.05, server_lr: float = 1.0, ditto_lambda: float = 0.1,
                 client_momentum: float = 0.0) -> None:
        super().__init__(lr, server_lr, client_momentum=client_momentum)
        self.ditto_lambda = float(ditto_lambda)

    def validate(self, run: RunContext) -> None:
        """Personal models of a model with buffers would need their own statistics (FedBN's
        job); Ray workers and checkpoints do not keep the personal models yet."""
        if run.model is not None and any(True for _ in run.model.buffers()):
            raise ValueError("method 'ditto': the model has buffers (batch norm), which the "
                             "personal models would share; use fedbn, or a model without them")
        refuse_unsupported_personal(run, "ditto")
