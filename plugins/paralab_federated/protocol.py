"""The ``federated`` protocol: rounds of sampled clients training locally, a server aggregate.

One round = ``run.phase("round", r)``: sample clients (some drop out as stragglers), train
them on the chosen backend, pass every client's :class:`paralab.Update` through the run's
middleware (``run.process_update``: DP, secure aggregation), aggregate, let the method's server
step move the global model, then evaluate it on the test split and on every client's rows
(the per-client accuracy distribution) and record the bytes sent and received.

Failures are told apart by who raised. A client whose *local training* raises is skipped with
a warning and the round aggregates the others, unless more than ``max_client_failures`` of
the round's clients (or all of them) failed: then the run fails, naming the round and the
first client's error. A *middleware* that raises is not a client failure (it would raise for
every client, and the run would "complete" with an untrained model): the run fails at once,
naming the middleware.

Options and their ranges are declared in the plugin's spec (``paralab_federated``); what
depends on the data or on several components (the partition can be made from the train split,
``backend = "ray"`` runs no loss terms, Ray is installed) is checked in :meth:`Federated.validate`,
before any run folder exists.
"""

from __future__ import annotations

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
from paralab_federated.local_training import load_parameters, parameters_of, vmap_unsupported
from paralab_federated.schedule import RoundPlan, plan_round

if TYPE_CHECKING:
    from paralab import RunContext

STATE_KEY = "paralab_federated"
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
        rounds: int = 20,
        local_epochs: int = 1,
        batch_size: int = 16,
        stragglers: float = 0.0,
        max_client_failures: float = 0.5,
        backend: str = "vmap",
        eval_every: int = 1,
        client_eval: bool = True,
        seed: int | None = None,
        ray_address: str = "",
        ray_num_cpus: int = 0,
        target_accuracy: float = 0.0,
        train_split: str = "train",
        eval_splits: Sequence[str] = ("test",),
    ) -> None:
        self.clients = int(clients)
        self.partition = partition
        self.alpha = float(alpha)
        self.classes_per_client = int(classes_per_client)
        self.fraction = float(fraction)
        self.rounds = int(rounds)
        self.local_epochs = int(local_epochs)
        self.batch_size = int(batch_size)
        self.stragglers = float(stragglers)
        self.max_client_failures = float(max_client_failures)
        self.backend = backend
        self.eval_every = int(eval_every)
        self.client_eval = bool(client_eval)
        self.seed = seed
        self.ray_address = ray_address
        self.ray_num_cpus = int(ray_num_cpus)
        self.target_accuracy = float(target_accuracy)
        self.train_split = train_split
        self.eval_splits = tuple(eval_splits)
        self._partition: partitions.Partition | None = None
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
        buffers = sorted(name for name, _ in run.model.named_buffers()) if run.model else []
        if buffers:
            raise ValueError(
                f"model {run.spec.model.name!r} has buffers ({', '.join(buffers[:4])}"
                f"{', ...' if len(buffers) > 4 else ''}: batch-norm running statistics), which "
                f"the federated protocol does not aggregate yet: the global model would be "
                f"evaluated with its initial statistics (mean 0, variance 1). Use a model "
                f"without them (group or layer norm, or batch norm with "
                f"track_running_stats=False)"
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
        if run.spec.checkpoint_every and not _checkpointable(run.method):
            raise ValueError(
                f"checkpoint_every = {run.spec.checkpoint_every}: method "
                f"{run.spec.method.name!r} ({type(run.method).__name__}) has no "
                f"state_dict()/load_state_dict(), so a checkpoint could not hold its server "
                f"state; set checkpoint_every = 0 or give the method those two methods"
            )
        self._partition = self.make_partition(run)  # ValueError naming the option

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
            "totals": dict(live["totals"]),
            "history": [dict(h) for h in run.state[STATE_KEY]["history"]],
            "failures": [dict(f) for f in run.state[STATE_KEY]["failures"]],
        }

    def restore_state(self, run: RunContext, state: dict[str, Any]) -> None:
        self._restored = state
        saved = state["partition"]
        self._partition = partitions.Partition(saved["rows"], saved["offsets"], saved["scheme"])

    # --------------------------------------------------------------------------- building

    def make_partition(self, run: RunContext) -> partitions.Partition:
        """The clients of this run (made once: :meth:`validate` keeps it for :meth:`execute`)."""
        if self._partition is not None:
            return self._partition
        train = run.dataset.split(self.train_split)
        generator = torch.Generator().manual_seed(self._seed(run))
        # Index tensors stay on the CPU: minibatch plans are built there and moved once.
        return partitions.make_partition(
            train.indices.cpu(), train.y, self.clients, self.partition, alpha=self.alpha,
            classes_per_client=self.classes_per_client, generator=generator,
        )

    def _seed(self, run: RunContext) -> int:
        return run.seed if self.seed is None else int(self.seed)

    def _backend(self, run: RunContext) -> Any:
        x, y = run.dataset.x, run.dataset.y
        extra = None
        if run.loss_terms:
            def extra(logits: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor,
                      rows: torch.Tensor, model: torch.nn.Module) -> Any:
                return run.extra_loss(Batch(xb, yb, rows, logits, model, run))

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

    # ---------------------------------------------------------------------------- running

    def execute(self, run: RunContext) -> None:
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
        method.setup(params)
        model_bytes = _bytes(params)
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
                results = backend.train(plan, params, method.lr, method.mu)
                params, reached = self.conclude_round(run, phase.metrics, plan, results, params,
                                                      model_bytes)
            if reached:
                break
        self.finish(run)

    # ------------------------------------------------------------ the pieces of a round
    # (shared with the seed axis, paralab_federated.vectorized, which trains the clients of
    # several seeds' rounds at once and runs everything else through these, per seed)

    def _begin(self, run: RunContext, partition: partitions.Partition,
               backend: str) -> dict[str, Any]:
        """The run's federated state before the first round (and the backend recorded)."""
        state = run.state.setdefault(STATE_KEY, {})
        state.update(partition=partition, backend=backend, failures=[], history=[])
        run.record("federated/backend", backend)
        if "vmap_fallback" in state:
            run.record("federated/vmap_fallback", state["vmap_fallback"])
        return state

    def plan(self, partition: partitions.Partition, round_index: int, seed: int, epochs: int,
             batch_size: int | None) -> RoundPlan:
        """Round ``round_index``'s sampled clients, stragglers and minibatches."""
        return plan_round(partition, round_index=round_index, seed=seed, fraction=self.fraction,
                          stragglers=self.stragglers, epochs=epochs, batch_size=batch_size)

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
        updates = self._process(run, plan, results, partition.n_clients)
        if updates:
            params = method.server_step(params, weighted_mean(updates), r)
            load_parameters(run.model, params)
        received = sum(_bytes(u.delta) for u in updates)
        totals["sent"] += model_bytes * len(plan.sampled)
        totals["received"] += received
        metrics.update({
            "round/clients": len(updates),
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
        round's reporting clients, so secure aggregation's pairwise masks cancel)."""
        survivors = [k for k in plan.clients if k in results.deltas]

        def update(k: int) -> Update:
            info = {"round": plan.round, "round_clients": list(survivors),
                    "round_sampled": list(plan.sampled), "num_clients": n_clients}
            return Update(delta=results.deltas[k], source=k, weight=plan.weights[k], info=info)

        return [self._through_middleware(run, update(k)) for k in survivors]

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
        """The run's dataset plus a sensitive feature ``client`` (the client id of each row),
        sharing every tensor: auditors of the ``clients`` evaluation (fairness) can then group
        by client as by any sensitive attribute. Rows outside the partition get the extra code
        ``n_clients`` ("not a client")."""
        state = run.state[STATE_KEY]
        if "client_dataset" not in state:
            base = run.dataset
            codes = torch.full((len(base),), partition.n_clients, dtype=torch.long,
                               device=base.device)
            codes[partition.rows.to(base.device)] = partition.client_of_row.to(base.device)
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

    def _evaluate_clients(self, run: RunContext, partition: partitions.Partition) -> None:
        """Global model accuracy on each client's rows, which are its *training* rows (there is
        no per-client held-out split yet): one prediction pass, one scatter."""
        dataset = self._with_client_feature(run, partition)
        predictions = predict(run.model, dataset, partition.rows,
                              batch_size=run.spec.eval_batch_size, split="clients")
        evaluation = run.evaluate(self.train_split, name="clients", predictions=predictions)
        correct = evaluation.predictions.correct
        ids = partition.client_of_row.to(correct.device)
        per_client = grouped_mean(correct, ids, partition.n_clients).float()
        worst = max(1, math.ceil(0.1 * partition.n_clients))
        run.record("clients/accuracy_mean", float(per_client.mean()))
        run.record("clients/accuracy_worst10", float(per_client.sort().values[:worst].mean()))
        run.record("clients/accuracy_std", float(per_client.std()) if len(per_client) > 1 else 0.0)

    def _plot(self, run: RunContext, history: list[dict[str, Any]]) -> None:
        """A PNG of test accuracy and the per-client mean and worst 10% per round."""
        if not run.writer.enabled or not history:
            return
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        split = self.eval_splits[0] if self.eval_splits else "test"
        series = {f"{split}/accuracy": f"global model on {split}",
                  "clients/accuracy_mean": "clients, mean",
                  "clients/accuracy_worst10": "clients, worst 10%"}
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
