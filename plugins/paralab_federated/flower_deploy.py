"""``backend = "flower"``: the spec's federation deployed on Flower's Deployment Engine.

Flower deploys an app as long-running processes: a **SuperLink** (``flower-superlink``, the
server side, one HTTP port for its Fleet, Control and Runtime APIs) and one **SuperNode** per
client (``flower-supernode --node-config 'partition-id=K num-partitions=N'``); a run is a
Flower App Bundle (FAB) submitted to the SuperLink (``flwr run``), whose ``ServerApp`` the
SuperLink starts (``flwr-serverapp``) and whose ``ClientApp`` every SuperNode starts
(``flwr-clientapp``) when a message reaches it.

paralab's FAB (:mod:`paralab_federated.flower_apps`) is a ServerApp that runs the spec's own
federated protocol, with the SuperNodes as its backend (sampling, aggregation, the method's
server step, evaluation: the code of the simulator), and a ClientApp that deals itself its
partition from the spec and its ``partition-id`` and trains with the simulator's local
training function on the simulator's minibatches. So a seed gives the global model of the
``loop`` backend (``tests/test_federated_flower_deploy.py``).

This module is the submitting side (the process that ran ``paralab run``): it checks that the
spec can run on a deployment (:func:`check_deployment`, at validation), writes the FAB and a
Flower connection for the SuperLink named by ``flower_superlink``, submits the run with the
``flwr`` CLI, waits for it, and takes the ServerApp's rounds and final global model into this
run (:func:`run_on_federation`). A Flower run that does not finish ``completed`` fails this
run with the ServerApp's log tail. The ServerApp writes what it hands back to a file whose path
the FAB carries, so ``paralab run`` must run on the SuperLink's machine (or share that folder
with it). :class:`LocalFederation` starts a SuperLink and SuperNodes on 127.0.0.1 (the test and
``python -m paralab_federated.flower_deploy`` use it).

Nothing here imports flwr: the plugin loads without it, and validation says how to install it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paralab import RunContext
    from paralab_federated.protocol import Federated

INSTALL = "pip install 'flwr>=1.42,<2'"
MIN_VERSION = (1, 42)
CONNECTION = "paralab"
"""The name of the SuperLink connection in the Flower configuration this module writes."""
LOG_TAIL = 40
"""Lines of the ServerApp's log quoted when a Flower run fails."""

SERVING: dict[str, Any] = {}
"""Set by the ServerApp while it runs the spec (``grid``, ``nodes``: client -> node id,
``timeout``): the protocol then trains through the SuperNodes instead of submitting a run."""


class FlowerRunFailed(RuntimeError):
    """A Flower run did not finish ``completed`` (or could not be submitted, or wrote no
    result): the message carries the status, Flower's details and the log's tail."""


# ------------------------------------------------------------------------------ validation

def flwr_version() -> tuple[int, ...] | None:
    """flwr's installed version as integers, None when it is not installed."""
    if importlib.util.find_spec("flwr") is None:
        return None
    version = importlib.metadata.version("flwr")
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def check_deployment(protocol: Federated, run: RunContext) -> None:
    """Raise ValueError (a SpecError at validation) for what a deployment cannot run honestly.

    On a real federation the server holds the test split but not the clients' rows, and a
    client holds nothing between rounds that paralab could keep: so the options and
    components that need the server to act for a client are refused, naming what is valid."""
    version = flwr_version()
    if version is None or version[:2] < MIN_VERSION:
        found = "not installed" if version is None else ".".join(map(str, version))
        raise ValueError(
            f"backend = 'flower' needs flwr >= 1.42 (its SuperLink/SuperNode HTTP APIs); flwr "
            f"is {found} here: {INSTALL}, or use backend = 'vmap', 'loop' or 'ray'")
    if not SERVING:  # the submitting process: where the SuperLink is
        if not protocol.flower_superlink:
            raise ValueError(
                "backend = 'flower' needs flower_superlink, the SuperLink's address as "
                "'host:port' (flower-superlink --host/--port; e.g. '127.0.0.1:9093')")
        certificates = protocol.flower_root_certificates
        if protocol.flower_insecure and certificates:
            raise ValueError(
                "flower_insecure = true and flower_root_certificates are both set: insecure "
                "connections use no certificate; set one of them")
        if certificates and not Path(certificates).is_file():
            raise ValueError(
                f"flower_root_certificates = {certificates!r} is not a file: give the CA "
                f"certificate (PEM) that signed the SuperLink's --ssl-certfile")
    refusals = _refusals(protocol, run)
    if refusals:
        raise ValueError("backend = 'flower' cannot run this spec: " + "; ".join(refusals))


def _refusals(protocol: Federated, run: RunContext) -> list[str]:
    problems = []
    if run.spec.middleware:
        names = [ref.name for ref in run.spec.middleware]
        problems.append(
            f"middleware {names}: on a deployment they would act in the ServerApp on updates "
            f"it has already seen in the clear (secure aggregation would mask nothing, local "
            f"DP would not be local, DP-FedAvg's and the attacks' client-side parts would not "
            f"run on the clients); remove them or use backend = 'vmap', 'loop' or 'ray'")
    if run.loss_terms:
        problems.append(
            f"loss terms {sorted(run.loss_terms)}: the ClientApps train with cross-entropy "
            f"(and FedProx's term) only; remove them or use backend = 'loop' or 'vmap'")
    method, name = run.method, run.spec.method.name
    from paralab_federated.methods import FederatedMethod

    if getattr(method, "local_names", None) is not None or hasattr(method, "ditto_lambda"):
        problems.append(
            f"method {name!r} keeps personal layers or models per client, which the simulator "
            f"holds for the clients; on a deployment use fedsgd, fedavg, fedavgm, fedprox, "
            f"fedadam, fedyogi, fedadagrad or fednova")
    elif not isinstance(method, FederatedMethod) or (
            type(method).client_corrections is not FederatedMethod.client_corrections):
        problems.append(
            f"method {name!r} has stateful clients (control variates or another plugin's "
            f"client state), which the simulator keeps on the server; on a deployment use "
            f"fedsgd, fedavg, fedavgm, fedprox, fedadam, fedyogi, fedadagrad or fednova")
    if protocol.client_eval:
        problems.append(
            "client_eval = true evaluates the global model on every client's rows, which the "
            "ServerApp of a real federation does not hold; set client_eval = false (the "
            "eval_splits are evaluated on the server)")
    if run.spec.checkpoint_every:
        problems.append(
            f"checkpoint_every = {run.spec.checkpoint_every}: a Flower run is not resumable "
            f"from a paralab checkpoint; set checkpoint_every = 0")
    return problems


# ------------------------------------------------------------------------------ submitting

def run_on_federation(protocol: Federated, run: RunContext) -> None:
    """Submit the spec to the SuperLink, wait for the Flower run, and take its rounds and
    final global model into ``run`` (see the module docstring)."""
    work = Path(tempfile.mkdtemp(prefix="paralab-flower-"))
    try:
        exchange = work / "serverapp-result.pt"
        app = write_app(work / "app", run.spec.to_dict(), exchange, protocol.flower_timeout,
                        protocol.clients)
        home = write_connection(work / "flwr-home", protocol.flower_superlink,
                                insecure=protocol.flower_insecure,
                                root_certificates=protocol.flower_root_certificates)
        budget = protocol.flower_timeout * (protocol.rounds + 2) + 120.0
        run_id, log = submit(app, home, budget)
        run.log(f"federated: Flower run {run_id} on {protocol.flower_superlink} completed")
        if not exchange.is_file():
            raise FlowerRunFailed(
                f"Flower run {run_id} completed but its ServerApp wrote no result at "
                f"{exchange}: run paralab on the SuperLink's machine (the ServerApp runs there "
                f"and hands its result back through that folder)\n{_tail(log)}")
        adopt(protocol, run, load_exchange(exchange), run_id)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_app(folder: Path, spec: dict[str, Any], exchange: Path, timeout: float,
              clients: int) -> Path:
    """The Flower App (its ``pyproject.toml``): paralab's ServerApp and ClientApp, and the spec
    in the run config. The spec sent writes nothing (the ServerApp's run is in memory; this
    run saves the result) and has no trackers (this run's trackers see its rounds)."""
    import tomli_w  # a dependency of flwr

    inner = dict(spec, output=None, trackers=[], save_model=False, checkpoint_every=0)
    folder.mkdir(parents=True, exist_ok=True)
    project = {
        "project": {"name": "paralab-federated", "version": "1.0.0",
                    "description": "paralab's federated protocol as a Flower App",
                    "license": "Apache-2.0", "dependencies": []},
        "tool": {"flwr": {"app": {
            "publisher": "paralab",
            "components": {"serverapp": "paralab_federated.flower_apps:server_app",
                           "clientapp": "paralab_federated.flower_apps:client_app"},
            "config": {"paralab-spec": json.dumps(inner), "paralab-exchange": str(exchange),
                       "paralab-timeout": float(timeout), "paralab-clients": int(clients)},
        }}},
    }
    (folder / "pyproject.toml").write_text(tomli_w.dumps(project), encoding="utf-8")
    return folder


def write_connection(home: Path, address: str, *, insecure: bool,
                     root_certificates: str = "") -> Path:
    """A Flower configuration folder (``FLWR_HOME``) whose default SuperLink connection is
    ``address``: insecure, or TLS verified with ``root_certificates`` (else the system's)."""
    import tomli_w

    connection: dict[str, Any] = {"address": address}
    if insecure:
        connection["insecure"] = True
    elif root_certificates:
        connection["root-certificates"] = str(Path(root_certificates).resolve())
    home.mkdir(parents=True, exist_ok=True)
    config = {"superlink": {"default": CONNECTION, CONNECTION: connection}}
    (home / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
    return home


def flwr_command(name: str = "flwr") -> str:
    """A Flower executable of this interpreter's environment (else the one on PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FlowerRunFailed(f"{name} is not installed here: {INSTALL}")
    return found


def _flwr(home: Path, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FLWR_HOME=str(home))
    env.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # paralab's own calls send no telemetry
    return subprocess.run([flwr_command(), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def submit(app: Path, home: Path, budget: float) -> tuple[str, str]:
    """``flwr run`` the app and wait (streaming its log) until the run is finished; returns
    ``(run id, log)``, or raises :class:`FlowerRunFailed` with the status and the log's tail
    for a run that failed, was stopped or outlived ``budget`` seconds."""
    started = time.monotonic()
    try:
        done = _flwr(home, ["run", str(app), CONNECTION, "--stream"], budget)
        log = done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:
        log = _text(expired.stdout) + _text(expired.stderr)
        run_id = _run_id(log)
        if run_id:
            _flwr(home, ["stop", run_id, CONNECTION], 60)
        raise FlowerRunFailed(f"Flower run {run_id or '(not started)'} did not finish within "
                              f"{budget:.0f} s and was stopped\n{_tail(log)}") from None
    run_id = _run_id(log)
    if done.returncode != 0 or not run_id:
        raise FlowerRunFailed(f"flwr run exited with status {done.returncode} before a run "
                              f"was started\n{_tail(log)}")
    while True:  # the log stream ends with the run; its status says how
        status, details = run_status(home, run_id)
        if status.startswith("finished"):
            break
        if time.monotonic() - started > budget:
            _flwr(home, ["stop", run_id, CONNECTION], 60)
            raise FlowerRunFailed(f"Flower run {run_id} still {status} after {budget:.0f} s; "
                                  f"stopped\n{_tail(log)}")
        time.sleep(1.0)
    if status != "finished:completed":
        raise FlowerRunFailed(f"Flower run {run_id} ended {status}: {details}\n{_tail(log)}")
    return run_id, log


def run_status(home: Path, run_id: str) -> tuple[str, str]:
    """``(status, details)`` of a run as the SuperLink reports it (``flwr list``)."""
    listed = _flwr(home, ["list", CONNECTION, "--run-id", run_id, "--format", "json"], 120)
    try:
        runs = json.loads(listed.stdout)["runs"]
        return str(runs[0]["status"]), str(runs[0].get("status-details", ""))
    except (ValueError, KeyError, IndexError):
        raise FlowerRunFailed(f"flwr list gave no status for run {run_id}:\n"
                              f"{_tail(listed.stdout + listed.stderr)}") from None


def _run_id(log: str) -> str:
    match = re.search(r"Successfully started run (\d+)", log)
    return match.group(1) if match else ""


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _tail(log: str, lines: int = LOG_TAIL) -> str:
    kept = [line for line in _ANSI.sub("", log).splitlines() if line.strip()][-lines:]
    return f"--- Flower log, last {len(kept)} lines ---\n" + "\n".join(kept)


# ------------------------------------------------------------------------------ results

def save_exchange(path: Path, result: Any) -> None:
    """What the ServerApp hands back: its run's phases and metrics (JSON) and the final
    global model (parameters and buffers), written atomically."""
    import torch

    payload = {"result": json.dumps({"phases": result.phases, "metrics": result.metrics,
                                     "status": result.status}, default=str),
               "model": {n: t.detach().cpu() for n, t in result.model.state_dict().items()}}
    partial = path.with_suffix(".partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def load_exchange(path: Path) -> dict[str, Any]:
    import torch

    payload = torch.load(path, weights_only=True)
    return {**json.loads(payload["result"]), "model": payload["model"]}


def adopt(protocol: Federated, run: RunContext, served: dict[str, Any], run_id: str) -> None:
    """The ServerApp's rounds become this run's phases (so trackers, ``result.json`` and the
    plot see them), its final global model this run's model; then this process evaluates
    that model on the eval splits itself, and a value that differs from the ServerApp's
    last evaluation fails the run (the model did not arrive intact)."""
    state = protocol._begin(run, protocol.make_partition(run), "flower")
    for phase in served["phases"]:
        info = {**phase["info"], "serverapp_seconds": phase["seconds"]}  # its own duration
        with run.phase(phase["kind"], phase["index"], **info) as current:
            current.metrics.update(phase["metrics"])
            current.audits.update(phase["audits"])
        state["history"].append(dict(phase["metrics"]))
    run.model.load_state_dict(served["model"])
    for key, value in served["metrics"].items():
        run.result.metrics.setdefault(key, value)
    run.record("federated/backend", "flower")
    run.record("flower/run_id", run_id)
    for split in protocol.eval_splits:
        evaluation = run.evaluate(split)
        for metric, value in evaluation.metrics.items():
            theirs = served["metrics"].get(f"{split}/{metric}")
            if isinstance(value, float) and isinstance(theirs, float) and \
                    abs(value - theirs) > 1e-9 * max(1.0, abs(theirs)):
                raise FlowerRunFailed(
                    f"the global model of Flower run {run_id} gives {split}/{metric} = "
                    f"{value!r} here, {theirs!r} in the ServerApp: it did not arrive intact")
    protocol._plot(run, state["history"])


# ------------------------------------------------------------------------------ local federation

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalFederation:
    """A SuperLink and ``partitions`` SuperNodes on 127.0.0.1 (insecure, free ports), each
    process in its own process group with its output in ``folder``; :meth:`stop` kills the
    groups (the ServerApp and ClientApp processes Flower started with them). Use it as a
    context manager; :meth:`check` raises with a process's output tail when one has died."""

    def __init__(self, partitions: int, folder: str | Path, *,
                 node_config: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.partitions = int(partitions)
        self.folder = Path(folder)
        self.node_config = dict(node_config or {})
        self.env = dict(env or {})
        """Added to every process's environment (and so to the ServerApp's and ClientApps')."""
        self.port = 0
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.descendants: list[int] = []
        """What :meth:`stop` found below the processes it started (and signalled)."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> LocalFederation:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _env(self) -> dict[str, str]:
        # SuperLink starts `flower-superexec`, which starts `flwr-serverapp`, by name: this
        # environment's executables come first on PATH.
        bin_dir = str(Path(sys.executable).parent)
        env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""),
                   FLWR_HOME=str(self.folder / "flwr-home"), FLWR_TELEMETRY_ENABLED="0")
        env.update(self.env)
        return env

    def _spawn(self, name: str, command: list[str]) -> None:
        log = (self.folder / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=self._env(),
            start_new_session=True, cwd=self.folder)
        log.close()

    def start(self, wait: float = 120.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._spawn("superlink", [flwr_command("flower-superlink"), "--insecure",
                                  "--host", "127.0.0.1", "--port", str(self.port),
                                  "--disable-runtime-dependency-installation"])
        self._wait_for_port(wait)
        for k in range(self.partitions):
            config = {"partition-id": k, "num-partitions": self.partitions, **self.node_config}
            self._spawn(f"supernode-{k}", [
                flwr_command("flower-supernode"), "--insecure", "--superlink", self.address,
                "--port", str(free_port()),
                "--node-config", " ".join(f"{key}={value}" for key, value in config.items())])
        self.check()

    def _wait_for_port(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.check()
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise FlowerRunFailed(f"the SuperLink did not listen on {self.address} within "
                              f"{wait:.0f} s\n{self.tail('superlink')}")

    def tail(self, name: str, lines: int = LOG_TAIL) -> str:
        path = self.folder / f"{name}.log"
        text = path.read_text(errors="replace") if path.is_file() else ""
        return _tail(text, lines).replace("Flower log", f"{name} output")

    def check(self) -> None:
        """Raise :class:`FlowerRunFailed` with its output tail if a process has exited."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise FlowerRunFailed(f"{name} exited with status {process.returncode}\n"
                                      f"{self.tail(name)}")

    def kill(self, name: str) -> None:
        """Kill one process's group (a SuperNode that goes away)."""
        process = self.processes[name]
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        """Terminate every process group and every descendant (Flower starts its SuperExec,
        ServerApp and ClientApp processes in sessions of their own), then kill what is left."""
        self.descendants = [pid for process in self.processes.values()
                            for pid in _descendants(process.pid)]
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        _signal_all(self.descendants, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):  # the group may outlive its leader
                os.killpg(process.pid, signal.SIGKILL)
            if process.poll() is None:
                process.wait(timeout=30)
        _signal_all(self.descendants, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """The process ids below ``pid`` (psutil, where installed; else none are known)."""
    try:
        import psutil
    except ImportError:
        return []
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def main(argv: list[str] | None = None) -> None:
    """``python -m paralab_federated.flower_deploy N [FOLDER]``: a local federation of N
    SuperNodes until Ctrl-C, printing the address for ``flower_superlink``."""
    args = list(sys.argv[1:] if argv is None else argv)
    partitions = int(args[0]) if args else 3
    folder = args[1] if len(args) > 1 else tempfile.mkdtemp(prefix="paralab-federation-")
    with LocalFederation(partitions, folder) as federation:
        print(f"flower_superlink = {federation.address!r}  (flower_insecure = true; "
              f"{partitions} SuperNodes; logs in {folder})", flush=True)
        try:
            while True:
                federation.check()
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
