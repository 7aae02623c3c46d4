"""paralab's Flower App: a ServerApp that runs the spec's federated protocol, a ClientApp
that trains one partition (see :mod:`paralab_federated.flower_deploy` for the deployment).

**ServerApp** (:data:`server_app`, in ``flwr-serverapp`` beside the SuperLink): asks every
SuperNode for its ``partition-id`` (a ``query`` message), checks that they are exactly the
spec's clients ``0 .. clients - 1``, then runs the spec with :func:`paralab.run` in memory;
the protocol, seeing :data:`~paralab_federated.flower_deploy.SERVING` set, trains each
round's clients through :class:`GridBackend`, and does everything else as on the simulator
(sampling, stragglers, the aggregate, the method's server step, evaluation). It hands its
run's phases, metrics and final model back through the exchange file the FAB names.

**ClientApp** (:data:`client_app`, in ``flwr-clientapp`` beside each SuperNode): builds the
spec's dataset and model once per process, deals itself its partition from the protocol's
options, the seed and its ``partition-id`` (:meth:`Federated.partition_of`), and on a
``train`` message runs :func:`~paralab_federated.local_training.train_client_state` on the
round's minibatches (:func:`~paralab_federated.schedule.client_batches`, the same seeded
draw as the simulator's) from the global parameters and buffers it received; it replies its
delta, buffers, mean loss and number of rows. The server checks that number against its own
partition: a client holding other rows than the spec deals it fails (not silently averaged).

This module imports flwr: only Flower's processes (and the protocol's ``flower`` backend
inside the ServerApp) import it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from paralab_federated.flower_deploy import SERVING

if TYPE_CHECKING:
    import torch

    import paralab
    from paralab_federated.backends import ClientResults
    from paralab_federated.local_training import Params
    from paralab_federated.schedule import RoundPlan

# torch and paralab are imported where they are used: every message a SuperNode receives
# starts a new ClientApp process, and the partition query needs neither.

server_app = ServerApp()
client_app = ClientApp()

PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"


class ClientAppError(RuntimeError):
    """A ClientApp's reply was an error, or no reply came within the timeout."""


# -------------------------------------------------------------------------------- server side

@server_app.main()
def serve(grid: Grid, context: Context) -> None:
    """Run the spec in the run config with the SuperNodes as the backend; hand back the
    result (the exchange file). A failed paralab run fails the ServerApp (Flower's run status
    then says so, and its log holds the error)."""
    config = context.run_config
    spec = json.loads(str(config["paralab-spec"]))
    timeout = float(config["paralab-timeout"])
    clients = int(config["paralab-clients"])  # the protocol's, its default resolved
    SERVING.update(grid=grid, nodes=discover(grid, clients, timeout), timeout=timeout)
    import paralab
    from paralab_federated.flower_deploy import save_exchange

    try:
        result = paralab.run(spec)
    finally:
        SERVING.clear()
    save_exchange(Path(str(config["paralab-exchange"])), result)


def discover(grid: Grid, clients: int, timeout: float) -> dict[int, int]:
    """Client id -> node id, from each SuperNode's ``partition-id``; raises unless the
    federation's SuperNodes are exactly the clients ``0 .. clients - 1`` of ``clients``."""
    deadline = time.monotonic() + timeout
    nodes = list(grid.get_node_ids())
    while len(nodes) < clients and time.monotonic() < deadline:
        time.sleep(0.5)
        nodes = list(grid.get_node_ids())
    queries = [Message(RecordDict({"config": ConfigRecord({"ask": "partition"})}),
                       dst_node_id=node, message_type="query") for node in nodes]
    ids: dict[int, int] = {}
    announced: dict[int, int] = {}
    for reply in grid.send_and_receive(queries, timeout=timeout):
        if reply.has_error():
            raise ClientAppError(f"SuperNode {reply.metadata.src_node_id} could not say its "
                                 f"partition: {reply.error.reason}")
        metrics = reply.content["metrics"]
        client = int(metrics[PARTITION_ID])
        if client in ids:
            raise ValueError(f"two SuperNodes have partition-id {client}: give each "
                             f"--node-config 'partition-id=K num-partitions={clients}' once")
        ids[client] = reply.metadata.src_node_id
        announced[client] = int(metrics[NUM_PARTITIONS])
    if sorted(ids) != list(range(clients)) or set(announced.values()) != {clients}:
        raise ValueError(
            f"the spec has clients = {clients}, the federation's {len(nodes)} SuperNodes "
            f"answered partition-id {sorted(ids)} with num-partitions "
            f"{sorted(set(announced.values()))}: start one SuperNode per client with "
            f"--node-config 'partition-id=K num-partitions={clients}', K = 0 .. {clients - 1}")
    return ids


def _record(tensors: Params) -> ArrayRecord:
    return ArrayRecord(torch_state_dict={n: t.detach().cpu().contiguous()
                                         for n, t in tensors.items()})


def _tensors(record: ArrayRecord, device: torch.device) -> Params:
    import torch  # noqa: F401 - ArrayRecord.to_torch_state_dict needs it imported
    return {n: t.to(device) for n, t in record.to_torch_state_dict().items()}


class GridBackend:
    """A round's clients train on their SuperNodes: one ``train`` message each, with the
    global parameters (and buffers) and the round's settings; their replies become the
    round's :class:`ClientResults`. An error reply or no reply within ``timeout`` is that
    client's failure (``max_client_failures`` decides whether the round goes on)."""

    name = "flower"

    def __init__(self, grid: Grid, nodes: dict[int, int], timeout: float, seed: int,
                 epochs: int, batch_size: int | None, device: torch.device) -> None:
        import torch

        self.grid, self.nodes, self.timeout = grid, nodes, timeout
        self.seed, self.epochs, self.batch_size = seed, epochs, batch_size
        self.device = device
        self.threads = torch.get_num_threads()

    def train(self, plan: RoundPlan, global_params: Params, lr: float, mu: float,
              buffers: dict[int, Params] | None = None, *, momentum: float = 0.0,
              corrections: dict[int, Params] | None = None) -> ClientResults:
        from paralab_federated.backends import ClientResults

        if corrections is not None:  # check_deployment refused stateful methods
            raise ValueError("backend = 'flower' sends no per-client corrections")
        settings = ConfigRecord({
            "round": plan.round, "seed": self.seed, "epochs": self.epochs,
            "batch_size": 0 if self.batch_size is None else self.batch_size,
            "lr": float(lr), "mu": float(mu), "momentum": float(momentum),
            "threads": self.threads})
        params = _record(global_params)
        messages, client_of = [], {}
        for k in plan.clients:
            content = RecordDict({"arrays": params, "config": settings})
            start = buffers.get(k) if buffers else None
            if start:
                content["buffers"] = _record(start)
            node = self.nodes[k]
            client_of[node] = k
            messages.append(Message(content, dst_node_id=node, message_type="train"))
        results = ClientResults()
        replies = self.grid.send_and_receive(messages, timeout=self.timeout) if messages else []
        for reply in replies:
            k = client_of[reply.metadata.src_node_id]
            if reply.has_error():
                results.fail(k, ClientAppError(
                    f"the ClientApp of SuperNode {reply.metadata.src_node_id} raised: "
                    f"{reply.error.reason}"))
                continue
            metrics = reply.content["metrics"]
            rows = int(metrics["num-examples"])
            if rows != int(plan.weights[k]):
                results.fail(k, ClientAppError(
                    f"SuperNode {reply.metadata.src_node_id} (partition-id {k}) trained on "
                    f"{rows} rows, the spec deals client {k} {int(plan.weights[k])}: its data "
                    f"or options differ from the server's"))
                continue
            results.deltas[k] = _tensors(reply.content["arrays"], self.device)
            results.losses[k] = float(metrics["loss"])
            if "buffers" in reply.content:
                results.buffers[k] = _tensors(reply.content["buffers"], self.device)
        for node, k in client_of.items():
            if k not in results.deltas and k not in results.failures:
                results.fail(k, ClientAppError(
                    f"SuperNode {node} (partition-id {k}) sent no reply within "
                    f"{self.timeout:g} s"))
        return results


# -------------------------------------------------------------------------------- client side

_CLIENTS: dict[tuple[str, int], dict[str, Any]] = {}
"""(spec, partition-id) -> the ClientApp's dataset, model and rows (once per process)."""


def _client(context: Context) -> dict[str, Any]:
    spec_text = str(context.run_config["paralab-spec"])
    k = int(context.node_config[PARTITION_ID])
    key = (spec_text, k)
    if key not in _CLIENTS:
        import paralab
        from paralab_federated.protocol import Federated

        spec = paralab.ExperimentSpec.from_dict(json.loads(spec_text))
        registry = paralab.get_registry()
        dataset = paralab.load_dataset(spec.dataset.name, registry=registry,
                                       **spec.dataset.options)
        model = registry.component("model", spec.model.name).load()(
            dataset.info, **spec.model.options)
        protocol = Federated(**spec.protocol.options)
        trained, _ = protocol.partition_of(dataset, _seed(spec))
        _CLIENTS[key] = {"x": dataset.x, "y": dataset.y, "model": model,
                         "rows": trained.client(k), "client": k}
    return _CLIENTS[key]


def _seed(spec: paralab.ExperimentSpec) -> int:
    seed = spec.protocol.options.get("seed")
    return spec.seed if seed is None else int(seed)


@client_app.query()
def partition(message: Message, context: Context) -> Message:
    """The SuperNode's ``partition-id`` and ``num-partitions`` (``--node-config``)."""
    node = context.node_config
    if PARTITION_ID not in node or NUM_PARTITIONS not in node:
        raise ValueError(f"this SuperNode has no {PARTITION_ID}/{NUM_PARTITIONS}: start it "
                         f"with --node-config '{PARTITION_ID}=K {NUM_PARTITIONS}=N'")
    metrics = MetricRecord({PARTITION_ID: int(node[PARTITION_ID]),
                            NUM_PARTITIONS: int(node[NUM_PARTITIONS])})
    return Message(RecordDict({"metrics": metrics}), reply_to=message)


@client_app.train()
def train(message: Message, context: Context) -> Message:
    """One round of local training on this client's rows (the simulator's function)."""
    import torch

    from paralab_federated.local_training import train_client_state
    from paralab_federated.schedule import client_batches

    client = _client(context)
    settings = message.content["config"]
    torch.set_num_threads(int(settings["threads"]))
    k, rows = client["client"], client["rows"]
    batch_size = int(settings["batch_size"]) or None
    batches = client_batches(rows, int(settings["epochs"]), batch_size, int(settings["seed"]),
                             int(settings["round"]), k)
    device = torch.device("cpu")
    params = _tensors(message.content["arrays"], device)
    start = (_tensors(message.content["buffers"], device)
             if "buffers" in message.content else None)
    delta, loss, final = train_client_state(
        client["model"], params, start, client["x"], client["y"], batches,
        float(settings["lr"]), float(settings["mu"]), momentum=float(settings["momentum"]))
    content = RecordDict({"arrays": _record(delta),
                          "metrics": MetricRecord({"loss": loss, "num-examples": len(rows)})})
    if final:
        content["buffers"] = _record(final)
    return Message(content, reply_to=message)
