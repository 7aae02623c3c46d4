"""The ``federated`` protocol: rounds of sampled clients training locally, a server aggregate.

One round = ``run.phase("round", r)``: sample clients (a fixed number, or by Poisson under
``dp``: ``client_sampling``; some drop out as stragglers), train them on the chosen backend
from the global parameters and buffers, pass every client's :class:`paralab.Update` through
the run's middleware (``run.process_update``: DP, secure aggregation, attacks), aggregate (the
weighted mean or a robust rule: ``aggregation``), let the method's server step move the global
model, set the global buffers (:mod:`paralab_federated.buffers`), then evaluate it on the test
split and on every client's held-out rows (``client_test_fraction``; else its training rows,
recorded as ``clients/train_accuracy_*``) and record the bytes sent and received.

Failures are told apart by who raised. A client whose *local training* raises is skipped with
a warning and the round aggregates the others, unless more than ``max_client_failures`` of
the round's clients (or all of them) failed: then the run fails, naming the round and the
first client's error. A *middleware* that raises is not a client failure (it would raise for
every client, and the run would "complete" with an untrained model): the run fails at once,
naming the middleware.

With ``backend = "flower"`` the submitting process runs none of this itself: it hands the
spec to a Flower SuperLink, whose ServerApp runs these rounds with the SuperNodes as the
backend (:mod:`paralab_federated.flower_deploy`, :mod:`paralab_federated.flower_apps`).

Options and their ranges are declared in the plugin's spec (``paralab_federated``); what
depends on the data or on several components (the partition can be made from the train split,
``backend = "ray"`` runs no loss terms, Ray is installed) is checked in :meth:`Federated.validate`,
before any run folder exists.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import torch

from paralab import (
    Batch,
    ComponentFailure,
    FederatedStrategy,
    Protocol,
    SharedDataset,
    Update,
    grouped_mean,
    predict,
)
from paralab_federated import partitions
from paralab_federated.aggregation import weighted_mean
from paralab_federated.backends import ClientResults, LoopBackend, VmapBackend
from paralab_federated.buffers import aggregate_buffers
from paralab_federated.local_training import (
    buffers_of,
    load_buffers,
    load_parameters,
    parameters_of,
    train_client_state,
    vmap_unsupported,
)
from paralab_federated.methods import ClientReport
from paralab_federated.personal import LocalState, PersonalModels
from paralab_federated.robust import robust_aggregate
from paralab_federated.schedule import RoundPlan, plan_round, seeded

if TYPE_CHECKING:
    from paralab import RunContext

STATE_KEY = "paralab_federated"
UPDATE_HOOK = "paralab_process_update"
HOLD_OUT_STREAM = -2
"""Tag of the held-out split's generator in the seed chain (``seeded(seed, HOLD_OUT_STREAM)``)."""
PLOT_FILE = "federated_accuracy.png"


def _untouched_rng(device: torch.device) -> Any:
    """A block whose draws from torch's global generators are undone on exit: a probe run
    before the rounds (a dropout model's forward) must not shift the stream the rounds draw
    from, or a resumed run, which probes again after its generators are restored, would
    train on other dropout masks than the uninterrupted run."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    return torch.random.fork_rng(devices=cuda)


def _checkpointable(method: Any) -> bool:
    return all(callable(getattr(method, name, None)) for name in ("state_dict", "load_state_dict"))


def _bytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def client_options(method: Any, plan: RoundPlan) -> dict[str, Any]:
    """The method's client-side settings for a backend's ``train``: heavy-ball momentum and
    per-client gradient corrections (methods that lack them, e.g. another plugin's
    :class:`paralab.FederatedStrategy`, get neither)."""
    corrections = getattr(method, "client_corrections", None)
    return {"momentum": float(getattr(method, "client_momentum", 0.0)),
            "corrections": None if corrections is None else corrections(plan.clients)}


class ClientFailures(RuntimeError):
    """More than ``max_client_failures`` of a round's clients failed (or all of them): the
    round's aggregate would be a biased few clients or nothing, so the run fails."""


class Federated(Protocol):
    """Federated rounds over a partition of the train split (see the module docstring)."""

    def __init__(
        self,
        clients: int = 100,
        partition: str = "iid",
        alpha: float = 0.5,
        classes_per_client: int = 2,
        fraction: float = 0.1,
        client_sampling: str = "auto",
        rounds: int = 20,
        local_epochs: int = 1,
        batch_size: int = 16,
        stragglers: float = 0.0,
        aggregation: str = "mean",
        trim_fraction: float = 0.1,
        krum_malicious: int = 0,
        multi_krum_keep: int = 0,
        max_client_failures: float = 0.5,
        backend: str = "vmap",
        eval_every: int = 1,
        client_eval: bool = True,
        client_test_fraction: float = 0.0,
        seed: int | None = None,
        ray_address: str = "",
        ray_num_cpus: int = 0,
        flower_superlink: str = "",
        flower_insecure: bool = False,
        flower_root_certificates: str = "",
        flower_timeout: float = 600.0,
        target_accuracy: float = 0.0,
        train_split: str = "train",
        eval_splits: Sequence[str] = ("test",),
    ) -> None:
        self.clients = int(clients)
        self.partition = partition
        self.alpha = float(alpha)
        self.classes_per_client = int(classes_per_client)
        self.fraction = float(fraction)
        self.client_sampling = client_sampling
        self._poisson = client_sampling == "poisson"
        """Resolved in :meth:`validate` (``auto``: Poisson when the ``dp`` middleware is on)."""
        self._dp = False
        self.rounds = int(rounds)
        self.local_epochs = int(local_epochs)
        self.batch_size = int(batch_size)
        self.stragglers = float(stragglers)
        self.aggregation = aggregation
        self.trim_fraction = float(trim_fraction)
        self.krum_malicious = int(krum_malicious)
        self.multi_krum_keep = int(multi_krum_keep)
        self.max_client_failures = float(max_client_failures)
        self.backend = backend
        self.eval_every = int(eval_every)
        self.client_eval = bool(client_eval)
        self.client_test_fraction = float(client_test_fraction)
        self.seed = seed
        self.ray_address = ray_address
        self.ray_num_cpus = int(ray_num_cpus)
        self.flower_superlink = flower_superlink
        self.flower_insecure = bool(flower_insecure)
        self.flower_root_certificates = flower_root_certificates
        self.flower_timeout = float(flower_timeout)
        self.target_accuracy = float(target_accuracy)
        self.train_split = train_split
        self.eval_splits = tuple(eval_splits)
        self._partition: partitions.Partition | None = None
        self._held_out: partitions.Partition | None = None
        """Each client's held-out rows (``client_test_fraction > 0``), never trained on."""
        self._personal: LocalState | None = None
        """FedBN's client-local layers (:mod:`paralab_federated.personal`), else None."""
        self._restored: dict[str, Any] | None = None
        self._live: dict[str, Any] = {}
        """What a checkpoint needs besides the model: rounds done, totals, history, failures."""

    @property
    def clients_per_round(self) -> int:
        """Clients sampled each round (before stragglers drop out)."""
        return max(1, round(self.fraction * self.clients))

    # ------------------------------------------------------------------------- validating

    def validate(self, run: RunContext) -> None:
        """What the declared options cannot say alone: the splits exist, the partition can be
        made from the train split (it is made here, once, and reused), and the backend can
        run this spec."""
        run.dataset.check_splits(self.train_split, self.eval_splits)
        self._resolve_sampling(run)
        if self.aggregation != "mean":
            blocking = sorted({ref.name for ref in run.spec.middleware}
                              & {"dp", "secure_aggregation"})
            if blocking:
                raise ValueError(
                    f"aggregation = {self.aggregation!r} cannot run with middleware "
                    f"{blocking}: secure aggregation reveals only the sum of the updates, and "
                    f"DP-FedAvg's guarantee (and epsilon) holds for the noisy sum, not for a "
                    f"{self.aggregation} of individually noised updates; use aggregation = "
                    f"'mean' or remove them"
                )
        if getattr(run.method, "full_batch", False):
            options = run.spec.protocol.options
            ignored = [name for name in ("local_epochs", "batch_size") if name in options
                       and not (name == "local_epochs" and options[name] == 1)]
            if ignored:
                raise ValueError(
                    f"protocol.{ignored[0]}: method {run.spec.method.name!r} takes one "
                    f"full-batch gradient step per client and round, so {' and '.join(ignored)} "
                    f"would do nothing; remove {'them' if len(ignored) > 1 else 'it'} or use "
                    f"method 'fedavg' for local epochs of minibatches"
                )
        buffers = sorted(name for name, _ in run.model.named_buffers()) if run.model else []
        acting = run.hooks.middleware_for(UPDATE_HOOK)
        if buffers and acting:
            raise ValueError(
                f"model {run.spec.model.name!r} has buffers ({', '.join(buffers[:4])}"
                f"{', ...' if len(buffers) > 4 else ''}: batch-norm running statistics), which "
                f"the server aggregates beside the client updates, so middleware "
                f"{[name.split(':')[-1] for name in acting]} acting on the updates would not "
                f"act on them (DP would leave the clients' data statistics unclipped and "
                f"noiseless, secure aggregation unmasked). Use a model without them (group or "
                f"layer norm, or batch norm with track_running_stats=False)"
            )
        if self.backend == "ray":
            if run.loss_terms:
                raise ValueError(
                    f"backend = 'ray' cannot run the spec's loss terms {sorted(run.loss_terms)} "
                    f"in Ray workers (they hold the run's context); use backend = 'loop' or "
                    f"'vmap', or remove the losses"
                )
            if importlib.util.find_spec("ray") is None:
                raise ValueError(
                    "backend = 'ray' needs the ray package, which is not installed here: "
                    "pip install 'paralab[federated]', or use backend = 'vmap' or 'loop'"
                )
        if self.backend == "flower":
            from paralab_federated.flower_deploy import check_deployment

            check_deployment(self, run)  # ValueError naming what a deployment cannot run
        if run.spec.checkpoint_every and not _checkpointable(run.method):
            raise ValueError(
                f"checkpoint_every = {run.spec.checkpoint_every}: method "
                f"{run.spec.method.name!r} ({type(run.method).__name__}) has no "
                f"state_dict()/load_state_dict(), so a checkpoint could not hold its server "
                f"state; set checkpoint_every = 0 or give the method those two methods"
            )
        self._partition = self.make_partition(run)  # ValueError naming the option
        if self._held_out is not None and not len(self._held_out.rows):
            smallest = int(self._partition.sizes.min())
            raise ValueError(
                f"client_test_fraction = {self.client_test_fraction:g} holds out no row of any "
                f"client (the smallest client has {smallest} rows; each keeps at least one "
                f"to train on): raise it or use fewer clients"
            )

    def _resolve_sampling(self, run: RunContext) -> None:
        """``client_sampling = "auto"``: Poisson when the spec lists the ``dp`` middleware
        (the sampling its accountant assumes), else a fixed number per round."""
        self._dp = any(ref.name == "dp" for ref in run.spec.middleware)
        self._poisson = self.client_sampling == "poisson" or (
            self.client_sampling == "auto" and self._dp)

    # ------------------------------------------------------------------------ checkpoints

    def checkpoint_state(self, run: RunContext) -> dict[str, Any]:
        """After the rounds closed so far: the global model, the server's state (FedAdam's and
        FedYogi's moments), the partition, the bytes counted, the per-round history, the
        failed clients and whether ``target_accuracy`` stopped the run. Rounds draw from
        generators seeded by (seed, round), so no sampler state is needed; the ``dp``
        middleware keeps its own accounting (the host saves it with the checkpoint)."""
        partition = self.make_partition(run)
        live = self._live
        return {
            "rounds_done": live["rounds_done"],
            "stopped": live["stopped"],
            "model": run.model.state_dict(),
            "method": run.method.state_dict(),
            "partition": {"rows": partition.rows, "offsets": partition.offsets,
                          "scheme": partition.scheme},
            "held_out": None if self._held_out is None else {
                "rows": self._held_out.rows, "offsets": self._held_out.offsets},
            "totals": dict(live["totals"]),
            "history": [dict(h) for h in run.state[STATE_KEY]["history"]],
            "failures": [dict(f) for f in run.state[STATE_KEY]["failures"]],
        }

    def restore_state(self, run: RunContext, state: dict[str, Any]) -> None:
        self._restored = state
        saved = state["partition"]
        self._partition = partitions.Partition(saved["rows"], saved["offsets"], saved["scheme"])
        held = state.get("held_out")
        self._held_out = None if held is None else partitions.Partition(
            held["rows"], held["offsets"], saved["scheme"])

    # --------------------------------------------------------------------------- building

    def make_partition(self, run: RunContext) -> partitions.Partition:
        """The clients of this run (made once: :meth:`validate` keeps it for :meth:`execute`)."""
        if self._partition is not None:
            return self._partition
        trained, self._held_out = self.partition_of(run.dataset, self._seed(run))
        return trained

    def partition_of(self, dataset: SharedDataset, seed: int
                     ) -> tuple[partitions.Partition, partitions.Partition | None]:
        """``(training rows, held-out rows or None)`` of every client of ``dataset`` for
        ``seed``: a function of the options and the data alone, so a Flower ClientApp
        (:mod:`paralab_federated.flower_apps`) deals itself the same rows as the server."""
        train = dataset.split(self.train_split)
        generator = torch.Generator().manual_seed(seed)
        # Index tensors stay on the CPU: minibatch plans are built there and moved once.
        whole = partitions.make_partition(
            train.indices.cpu(), train.y, self.clients, self.partition, alpha=self.alpha,
            classes_per_client=self.classes_per_client, generator=generator,
        )
        if not self.client_test_fraction:
            return whole, None
        # Its own stream: the same seed deals the same clients with or without held-out rows.
        return partitions.hold_out(whole, self.client_test_fraction,
                                   seeded(seed, HOLD_OUT_STREAM))

    def _seed(self, run: RunContext) -> int:
        return run.seed if self.seed is None else int(self.seed)

    def _backend(self, run: RunContext) -> Any:
        x, y = run.dataset.x, self._training_labels(run)
        extra = None
        if run.loss_terms:
            def extra(logits: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor,
                      rows: torch.Tensor, model: torch.nn.Module) -> Any:
                return run.extra_loss(Batch(xb, yb, rows, logits, model, run))

        if self.backend == "flower":  # inside paralab's ServerApp: the SuperNodes train
            from paralab_federated.flower_apps import GridBackend
            from paralab_federated.flower_deploy import SERVING

            epochs, batch_size = run.method.client_settings(self.local_epochs, self.batch_size)
            return GridBackend(SERVING["grid"], SERVING["nodes"], SERVING["timeout"],
                               self._seed(run), epochs, batch_size, x.device)
        if self.backend == "ray":  # validate() rejected loss terms
            from paralab_federated.ray_backend import RayBackend

            return RayBackend(run.model, x, y, address=self.ray_address,
                              num_cpus=self.ray_num_cpus)
        if self.backend == "vmap":
            with _untouched_rng(x.device):
                reason = "the spec has loss terms" if run.loss_terms else vmap_unsupported(
                    run.model, x, y)
            if not reason:
                return VmapBackend(run.model, x, y)
            run.log(f"federated: vmap not possible ({reason}); using the loop backend")
            run.state.setdefault(STATE_KEY, {})["vmap_fallback"] = reason
        return LoopBackend(run.model, x, y, extra)

    def _training_labels(self, run: RunContext) -> torch.Tensor:
        """The labels clients train on: the dataset's, except that the ``byzantine``
        middleware's label-flipping clients see their rows relabelled (evaluation keeps the
        true labels)."""
        attack = run.state.get(STATE_KEY, {}).get("byzantine")
        if attack is None or attack.attack != "label_flip":
            return run.dataset.y
        from paralab_federated.byzantine import flipped_labels

        partition = self.make_partition(run)
        attacking = attack.attacking(run, partition.n_clients)
        rows = torch.cat([partition.client(k) for k in attacking])
        return flipped_labels(run.dataset.y, rows, run.dataset.info.n_classes)

    # ---------------------------------------------------------------------------- running

    def execute(self, run: RunContext) -> None:
        if self.backend == "flower":
            from paralab_federated.flower_deploy import SERVING, run_on_federation

            if not SERVING:  # the submitting process; paralab's ServerApp sets SERVING
                run_on_federation(self, run)
                return
        method: FederatedStrategy = run.method  # checked against the interface at build
        partition = self.make_partition(run)
        backend = self._backend(run)
        seed = self._seed(run)
        epochs, batch_size = method.client_settings(self.local_epochs, self.batch_size)
        state = self._begin(run, partition, backend.name)
        restored, self._restored = self._restored, None
        if restored is not None:  # paralab resume: the global model of the last checkpoint
            run.model.load_state_dict(restored["model"])
        params = parameters_of(run.model)
        local_names = getattr(method, "local_names", None)  # FedBN, FedPer
        personal = self._personal = (LocalState(run.model, local_names(run.model))
                                     if local_names is not None else None)
        ditto = getattr(method, "ditto_lambda", None)
        if ditto is not None:
            self._personal = PersonalModels(run.model)
            labels, scratch = self._training_labels(run), copy.deepcopy(run.model)
        method.setup(params)
        model_bytes = _bytes(params) + _bytes(buffers_of(run.model))
        totals = {"sent": 0, "received": 0}
        start, stopped = 0, False
        if restored is not None:
            method.load_state_dict(restored["method"])
            totals = {key: int(value) for key, value in restored["totals"].items()}
            state["history"] = [dict(h) for h in restored["history"]]
            state["failures"] = [dict(f) for f in restored["failures"]]
            start, stopped = int(restored["rounds_done"]), bool(restored["stopped"])
        self._live = {"rounds_done": start, "stopped": stopped, "totals": totals}
        rounds = range(start, self.rounds) if not stopped else range(0)
        for r in run.progress(rounds, desc="rounds", total=self.rounds, done=start):
            plan = self.plan(partition, r, seed, epochs, batch_size)
            with run.phase("round", r, clients=plan.clients, dropped=plan.dropped) as phase:
                if personal is None:
                    buffers = buffers_of(run.model)  # the global ones, every client starts there
                    results = backend.train(plan, params, method.lr, method.mu,
                                            buffers={k: buffers for k in plan.clients}
                                            if buffers else None, **client_options(method, plan))
                else:  # FedBN: each client starts with its own batch-norm layers
                    starts = personal.starts(plan.clients, params)
                    results = backend.train(plan, params, method.lr, method.mu,
                                            buffers=personal.start_buffers(plan.clients),
                                            starts=starts, **client_options(method, plan))
                    personal.absorb(results.deltas, results.buffers, starts)
                if ditto is not None:  # each trained client's personal model, on the loop
                    self._personalize(run, plan, results, params, labels, scratch, method)
                params, reached = self.conclude_round(run, phase.metrics, plan, results, params,
                                                      model_bytes)
            if reached:
                break
        self.finish(run)

    def _personalize(self, run: RunContext, plan: RoundPlan, results: ClientResults,
                     params: dict[str, torch.Tensor], labels: torch.Tensor,
                     scratch: torch.nn.Module, method: Any) -> None:
        """Ditto: every client that trained its global update also takes its personal steps,
        ``v_k <- v_k - lr (grad F_k(v_k) + lambda (v_k - w))`` on the same minibatches, ``w``
        the round's global model (the client keeps ``v_k``; nothing of it is sent)."""
        assert isinstance(self._personal, PersonalModels)
        for k in plan.clients:
            if k not in results.deltas:
                continue
            start = self._personal.personal_start(k, params)
            delta, _, _ = train_client_state(scratch, start, None, run.dataset.x, labels,
                                             plan.batches[k], method.lr,
                                             float(method.ditto_lambda), anchor=params)
            self._personal.keep(k, {n: start[n] + delta[n] for n in start})

    # ------------------------------------------------------------ the pieces of a round
    # (shared with the seed axis, paralab_federated.vectorized, which trains the clients of
    # several seeds' rounds at once and runs everything else through these, per seed)

    def _begin(self, run: RunContext, partition: partitions.Partition,
               backend: str) -> dict[str, Any]:
        """The run's federated state before the first round (and the backend recorded)."""
        self._resolve_sampling(run)  # also on a resumed run, whatever validated it
        state = run.state.setdefault(STATE_KEY, {})
        state.update(partition=partition, backend=backend, failures=[], history=[])
        run.record("federated/backend", backend)
        run.record("federated/client_sampling", "poisson" if self._poisson else "fixed")
        if "vmap_fallback" in state:
            run.record("federated/vmap_fallback", state["vmap_fallback"])
        return state

    def plan(self, partition: partitions.Partition, round_index: int, seed: int, epochs: int,
             batch_size: int | None) -> RoundPlan:
        """Round ``round_index``'s sampled clients, stragglers and minibatches."""
        return plan_round(partition, round_index=round_index, seed=seed, fraction=self.fraction,
                          stragglers=self.stragglers, epochs=epochs, batch_size=batch_size,
                          poisson=self._poisson)

    def conclude_round(self, run: RunContext, metrics: dict[str, Any], plan: RoundPlan,
                       results: ClientResults, params: dict[str, torch.Tensor],
                       model_bytes: int) -> tuple[dict[str, torch.Tensor], bool]:
        """Everything of a round after its clients trained, inside the round's phase (whose
        ``metrics`` it fills): failures, middleware, aggregate, server step, the global model
        loaded into ``run.model``, the communication totals, evaluations and the target.
        Returns the new global parameters and whether the target accuracy was reached."""
        method: FederatedStrategy = run.method
        partition = run.state[STATE_KEY]["partition"]
        totals = self._live["totals"]
        r = plan.round
        for k, error in sorted(results.failures.items()):
            self._report_failure(run, r, k, error)
        self._check_failures(run, plan, results)
        observe = getattr(method, "observe_clients", None)
        if observe is not None:  # stateful clients (SCAFFOLD): their raw results, typed
            reports = [ClientReport(k, results.deltas[k], plan.weights[k],
                                    len(plan.batches[k]))
                       for k in plan.clients if k in results.deltas]
            observe(reports, partition.n_clients)
            sent = getattr(method, "client_delta", None)
            if sent is not None:  # what each client sends (FedNova: normalized)
                results.deltas.update({r.client: sent(r) for r in reports})
        updates = self._process(run, plan, results, partition.n_clients)
        if updates:
            params = method.server_step(params, self.aggregate(updates), r)
            load_parameters(run.model, params)
        if self._personal is not None:  # FedBN: the global model's norm layers, for eval
            self._personal.load_average(run.model, partition)
        reported = {u.source: results.buffers[u.source] for u in updates
                    if u.source in results.buffers}
        if reported:
            load_buffers(run.model, aggregate_buffers(buffers_of(run.model), reported,
                                                      plan.weights))
        received = (sum(_bytes(u.delta) for u in updates if u.source != -1)
                    + sum(map(_bytes, reported.values())))
        totals["sent"] += model_bytes * len(plan.sampled)
        totals["received"] += received
        metrics.update({
            "round/clients": sum(u.source != -1 for u in updates),
            "round/dropped": len(plan.dropped),
            "round/failed": len(results.failures),
            "round/bytes_sent": model_bytes * len(plan.sampled),
            "round/bytes_received": received,
            "comm/bytes_sent": totals["sent"],
            "comm/bytes_received": totals["received"],
        })
        if results.losses:
            metrics["train/loss"] = sum(results.losses.values()) / len(results.losses)
        reached = False
        if (r + 1) % self.eval_every == 0 or r + 1 == self.rounds:
            for split in self.eval_splits:
                run.evaluate(split)
            if self.client_eval:
                self._evaluate_clients(run, partition)
            reached = self._reached_target(run, metrics, r)
        run.state[STATE_KEY]["history"].append(dict(metrics))
        self._live.update(rounds_done=r + 1, stopped=reached)
        return params, reached

    def aggregate(self, updates: list[Update]) -> dict[str, torch.Tensor]:
        """The round's aggregate delta: the weighted mean, or a robust rule (``aggregation``)."""
        if self.aggregation == "mean":
            return weighted_mean(updates)
        return robust_aggregate(updates, self.aggregation, trim_fraction=self.trim_fraction,
                                malicious=self.krum_malicious, keep=self.multi_krum_keep)

    def finish(self, run: RunContext) -> None:
        """After the last round: the communication totals, the failures, the plot."""
        state = run.state[STATE_KEY]
        totals = self._live["totals"]
        for key in ("comm/bytes_sent", "comm/bytes_received"):
            run.result.metrics[key] = totals[key.split("_")[-1]]
        if state["failures"]:
            run.result.metrics["federated/failures"] = list(state["failures"])
        self._plot(run, state["history"])

    def _reached_target(self, run: RunContext, metrics: dict[str, Any], round_index: int) -> bool:
        """With ``target_accuracy``, stop at the first round whose global model reaches it on
        the first eval split (McMahan et al.'s "rounds to reach a target accuracy")."""
        if not self.target_accuracy or not self.eval_splits:
            return False
        value = metrics.get(f"{self.eval_splits[0]}/accuracy")
        if value is None or value < self.target_accuracy:
            return False
        run.record("federated/rounds_to_target", round_index + 1)
        return True

    def _check_failures(self, run: RunContext, plan: RoundPlan, results: ClientResults) -> None:
        """Fail the run when more than ``max_client_failures`` of the round's training clients
        (stragglers excluded: they never trained), or every one of them, failed."""
        failed, trained = len(results.failures), len(plan.clients)
        if not failed or (failed < trained and failed <= self.max_client_failures * trained):
            return
        first = min(results.failures)
        message = (f"round {plan.round}: {failed} of {trained} clients failed, more than "
                   f"max_client_failures = {self.max_client_failures:g} allows"
                   if failed < trained else
                   f"round {plan.round}: all {trained} clients failed")
        message += f"; the first, client {first}: {results.failures[first]}"
        run.result.metrics["federated/failures"] = list(run.state[STATE_KEY]["failures"])
        self._raise_client_error(ClientFailures(message), results.errors.get(first))

    @staticmethod
    def _raise_client_error(error: ClientFailures, origin: BaseException | None) -> NoReturn:
        """Raise ``error`` carrying the first client's traceback, so the host names the plugin
        whose code raised; a loss term's failure (a :class:`ComponentFailure`) keeps naming
        that loss term."""
        if origin is None:
            raise error
        cause = origin.__cause__ if isinstance(origin, ComponentFailure) else origin
        error = error.with_traceback((cause or origin).__traceback__)
        if isinstance(origin, ComponentFailure):
            error.__cause__ = cause  # the traceback shows the client's own error
            raise ComponentFailure(origin.kind, origin.name, error) from error
        raise error from origin

    def _process(self, run: RunContext, plan: RoundPlan, results: ClientResults,
                 n_clients: int) -> list[Update]:
        """Every trained client's update through the run's middleware (all of them know the
        round's reporting clients, so secure aggregation's pairwise masks cancel, and how
        clients were sampled, which DP-FedAvg accounts).

        Under ``dp`` with Poisson sampling a round in which no client reports still releases
        the noise (a zero update of source ``-1`` goes through the middleware): a model left
        unchanged would say, noiselessly, that the round's sum was empty."""
        survivors = [k for k in plan.clients if k in results.deltas]
        sampling = self.sampling_info(n_clients, len(plan.sampled))
        if not survivors and self._dp and self._poisson:
            template = {n: torch.zeros_like(p) for n, p in parameters_of(run.model).items()}
            info = {"round": plan.round, "round_clients": [-1], "round_sampled": [],
                    "num_clients": n_clients, "sampling": sampling}
            return [self._through_middleware(
                run, Update(delta=template, source=-1, weight=1.0, info=info))]

        def update(k: int) -> Update:
            info = {"round": plan.round, "round_clients": list(survivors),
                    "round_sampled": list(plan.sampled), "num_clients": n_clients,
                    "sampling": sampling}
            return Update(delta=results.deltas[k], source=k, weight=plan.weights[k], info=info)

        return [self._through_middleware(run, update(k)) for k in survivors]

    def sampling_info(self, n_clients: int, sampled: int) -> dict[str, Any]:
        """How this round's reporting clients were drawn (``Update.info["sampling"]``):
        Poisson at rate ``fraction * (1 - stragglers)`` (a sampled client's independent
        dropout thins the Poisson sample to a Poisson sample), with the expected number of
        reporting clients, or a fixed-size sample of ``sampled`` out of ``n_clients``."""
        if self._poisson:
            rate = self.fraction * (1.0 - self.stragglers)
            return {"kind": "poisson", "rate": rate, "expected_clients": rate * n_clients}
        return {"kind": "fixed", "population": n_clients, "sample_size": sampled}

    @staticmethod
    def _through_middleware(run: RunContext, update: Update) -> Update:
        """``run.process_update``; what raises there is the middleware's failure, not the
        client's (the host raises it as a ``ComponentFailure`` naming the middleware): it
        fails the run at once, with a note saying whose update it was processing."""
        try:
            return run.process_update(update)
        except ComponentFailure as failure:
            (failure.__cause__ or failure).add_note(
                f"(middleware processing the update of client {update.source} in round "
                f"{update.info.get('round')})")
            raise

    def _report_failure(self, run: RunContext, round_index: int, client: int, error: str) -> None:
        message = (f"federated: client {client} failed in round {round_index} and was "
                   f"skipped: {error}")
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        run.log(message)
        run.state[STATE_KEY]["failures"].append(
            {"round": round_index, "client": client, "error": error})
        phase = run.current_phase
        if phase is not None:
            phase.metrics.setdefault("round/failed_clients", {})[str(client)] = error

    def _with_client_feature(self, run: RunContext,
                             partition: partitions.Partition) -> SharedDataset:
        """The run's dataset plus a sensitive feature ``client`` (the client id of each row,
        training and held-out rows alike), sharing every tensor: auditors of the ``clients``
        evaluation (fairness) can then group by client as by any sensitive attribute. Rows
        outside the partition get the extra code ``n_clients`` ("not a client")."""
        state = run.state[STATE_KEY]
        if "client_dataset" not in state:
            base = run.dataset
            codes = torch.full((len(base),), partition.n_clients, dtype=torch.long,
                               device=base.device)
            for part in (partition, self._held_out):
                if part is not None:
                    codes[part.rows.to(base.device)] = part.client_of_row.to(base.device)
            labels = tuple(f"client {k}" for k in range(partition.n_clients)) + ("not a client",)
            state["client_dataset"] = SharedDataset(
                name=base.name, x=base.x, y=base.y, splits=base.splits,
                features={**base.features, "client": codes},
                sensitive=(*base.sensitive, "client"),
                categories={**base.categories, "client": labels},
                class_names=base.class_names, feature_names=base.feature_names,
                meta=base.meta,
            )
        return state["client_dataset"]

    def client_metric_prefix(self) -> str:
        """``clients/accuracy_`` on held-out rows; ``clients/train_accuracy_`` without them
        (the name says the rows were trained on: fit, not generalisation)."""
        return "clients/accuracy_" if self._held_out is not None else "clients/train_accuracy_"

    def _evaluate_clients(self, run: RunContext, partition: partitions.Partition) -> None:
        """Global model accuracy on each client's held-out rows (``client_test_fraction``),
        else on its training rows: one prediction pass, one scatter. Clients with no
        held-out row are left out of the distribution (``clients/evaluated`` counts those in)."""
        rows = self._held_out if self._held_out is not None else partition
        if self._personal is not None:
            self._evaluate_personal(run, rows)
            return
        dataset = self._with_client_feature(run, partition)
        predictions = predict(run.model, dataset, rows.rows,
                              batch_size=run.spec.eval_batch_size, split="clients")
        evaluation = run.evaluate(self.train_split, name="clients", predictions=predictions)
        correct = evaluation.predictions.correct
        ids = rows.client_of_row.to(correct.device)
        present = rows.sizes > 0
        per_client = grouped_mean(correct, ids, rows.n_clients).float()[present.to(
            correct.device)]
        worst = max(1, math.ceil(0.1 * len(per_client)))
        prefix = self.client_metric_prefix()
        run.record(prefix + "mean", float(per_client.mean()))
        run.record(prefix + "worst10", float(per_client.sort().values[:worst].mean()))
        run.record(prefix + "std", float(per_client.std()) if len(per_client) > 1 else 0.0)
        run.record("clients/evaluated", int(present.sum()))
        run.record("clients/rows", "held_out" if self._held_out is not None else "train")

    def _evaluate_personal(self, run: RunContext, rows: partitions.Partition) -> None:
        """FedBN: each client's accuracy with its own model (the shared layers and its own
        batch-norm layers) on its held-out rows (else its training rows)."""
        assert self._personal is not None
        accuracies = self._personal.client_accuracies(run.model, run.dataset.x, run.dataset.y,
                                                      rows)
        per_client = accuracies[~accuracies.isnan()]
        worst = max(1, math.ceil(0.1 * len(per_client)))
        prefix = self.client_metric_prefix()
        run.record(prefix + "mean", float(per_client.mean()))
        run.record(prefix + "worst10", float(per_client.sort().values[:worst].mean()))
        run.record(prefix + "std", float(per_client.std()) if len(per_client) > 1 else 0.0)
        run.record("clients/evaluated", len(per_client))
        run.record("clients/rows", "held_out" if self._held_out is not None else "train")
        run.record("clients/models", "personal")

    def _plot(self, run: RunContext, history: list[dict[str, Any]]) -> None:
        """A PNG of test accuracy and the per-client mean and worst 10% per round."""
        if not run.writer.enabled or not history:
            return
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        split = self.eval_splits[0] if self.eval_splits else "test"
        prefix = self.client_metric_prefix()
        rows = "held-out" if self._held_out is not None else "training"
        series = {f"{split}/accuracy": f"global model on {split}",
                  prefix + "mean": f"clients ({rows} rows), mean",
                  prefix + "worst10": f"clients ({rows} rows), worst 10%"}
        figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
        for key, label in series.items():
            points = [(r, h[key]) for r, h in enumerate(history) if key in h]
            if points:
                axes.plot([p for p, _ in points], [v for _, v in points], marker=".", label=label)
        axes.set_xlabel("round")
        axes.set_ylabel("accuracy")
        axes.set_title(run.spec.name)
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        run.output_dir.mkdir(parents=True, exist_ok=True)
        figure.savefig(run.output_dir / PLOT_FILE)
        plt.close(figure)
        run.result.artifacts["federated_accuracy"] = PLOT_FILE
