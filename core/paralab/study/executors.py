"""Executors: who runs a study's runs. One interface, three places.

* ``local``: in this process, one configuration after another, each configuration's seeds
  through :func:`paralab.run_seeds` (so a protocol with a seed axis runs them stacked). No
  process start-up per run: a small run costs its training, not an interpreter and imports.
* ``processes``: ``workers`` processes on this machine (``spawn``, one torch thread each);
  each task is a configuration's seeds (split into smaller groups when there are fewer
  configurations than workers). Workers write the run folders into the study folder.
* ``ray``: each task a Ray task (one CPU), on a local Ray instance or on the cluster at
  ``ray_address``. A worker runs its seeds into a temporary folder on its own node and returns
  the folders' files with the results; **the driver writes them into the study folder**, so
  the nodes share nothing but Ray (each node needs paralab and the plugins installed).

A task that fails as a whole (a worker process died, a Ray task was lost) reports each of its
runs as ``failed``; the study records it and a re-run of the study runs it again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from paralab.study.expand import seed_folder

EXECUTOR_NAMES = ("local", "processes", "ray")
ATTEMPTS = ".attempts"
"""Inside a configuration's folder: earlier, unfinished attempts of its runs, kept."""


@dataclass(frozen=True)
class Task:
    """Seeds of one configuration to run: ``spec`` is its TOML table with every override
    applied and ``output`` set to the configuration's folder; each seed's run is named
    ``seed=N`` inside it. ``study`` is what each run records (:class:`paralab.StudyInfo`)."""

    configuration: str
    spec: dict[str, Any]
    seeds: tuple[int, ...]
    study: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return Path(self.spec["output"])


@dataclass
class RunOutcome:
    """How one run ended, as the driver records it in ``study.json``."""

    configuration: str
    seed: int
    status: str
    path: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    main_metric: str = ""
    error: str | None = None
    seconds: float = 0.0
    worker: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"configuration": self.configuration, "seed": self.seed, "status": self.status,
                "path": self.path, "metrics": self.metrics, "main_metric": self.main_metric,
                "error": self.error, "seconds": self.seconds, "worker": self.worker}


Done = Callable[[RunOutcome], None]


class Executor:
    """Runs tasks, calling ``done`` in the driver once per finished run."""

    name = ""

    def __init__(self, *, registry: Any = None, workers: int | None = None,
                 ray_address: str = "", threads: int = 1) -> None:
        self.registry = registry
        self.workers = workers
        self.ray_address = ray_address
        self.threads = threads

    def run(self, tasks: Sequence[Task], done: Done) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers})"


class LocalExecutor(Executor):
    """In this process, sequentially, through :func:`paralab.run_seeds`."""

    name = "local"

    def run(self, tasks: Sequence[Task], done: Done) -> None:
        for task in tasks:
            for outcome in run_task(task, self.registry):
                done(outcome)


class ProcessExecutor(Executor):
    """``workers`` spawned processes on this machine, each with ``threads`` torch threads."""

    name = "processes"

    def run(self, tasks: Sequence[Task], done: Done) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        workers = self.workers or max(1, (os.cpu_count() or 1))
        settings = getattr(self.registry, "settings", None)
        pool = ProcessPoolExecutor(max_workers=workers,
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(settings, self.threads))
        try:
            futures = {pool.submit(_run_in_worker, task): task
                       for task in balanced(tasks, workers)}
            for future in as_completed(futures):
                task = futures[future]
                try:
                    outcomes = future.result()
                except Exception as error:  # noqa: BLE001 - a dead worker fails its runs only
                    outcomes = lost(task, f"the worker process failed: "
                                          f"{type(error).__name__}: {error}")
                for outcome in outcomes:
                    done(outcome)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


class RayExecutor(Executor):
    """Ray tasks of one CPU each: on the cluster at ``ray_address``, on the Ray instance this
    process already started, or on a local one started (and stopped) here."""

    name = "ray"

    def run(self, tasks: Sequence[Task], done: Done) -> None:
        import ray

        started = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "configure_logging": False}
            if self.ray_address:
                options["address"] = self.ray_address
            elif self.workers:
                options["num_cpus"] = self.workers
            with warnings.catch_warnings():  # Ray's notice about accelerator variables
                warnings.simplefilter("ignore", FutureWarning)
                ray.init(**options)
            started = True
        try:
            self._run(ray, tasks, done)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray: Any, tasks: Sequence[Task], done: Done) -> None:
        remote = ray.remote(num_cpus=1, max_retries=0)(_run_in_ray)
        settings = getattr(self.registry, "settings", None)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        waiting = list(balanced(tasks, self.workers or cpus))
        limit = self.workers or len(waiting)
        pending: dict[Any, Task] = {}
        while waiting or pending:
            while waiting and len(pending) < limit:
                task = waiting.pop(0)
                pending[remote.remote(task, settings, self.threads)] = task
            ready, _ = ray.wait(list(pending), num_returns=1)
            for reference in ready:
                task = pending.pop(reference)
                try:
                    packed = ray.get(reference)
                except Exception as error:  # noqa: BLE001 - a lost task fails its runs only
                    outcomes = lost(task, f"the Ray task failed: {type(error).__name__}: {error}")
                else:
                    outcomes = [unpack(task, item) for item in packed]
                for outcome in outcomes:
                    done(outcome)


def make_executor(name: str | Executor, *, registry: Any = None, workers: int | None = None,
                  ray_address: str = "", threads: int = 1) -> Executor:
    """The executor called ``name`` (``local``, ``processes``, ``ray``), or ``name`` itself."""
    if isinstance(name, Executor):
        return name
    classes = {"local": LocalExecutor, "processes": ProcessExecutor, "ray": RayExecutor}
    if name not in classes:
        from paralab.spec import SpecError

        raise SpecError([f"executor = {name!r}: one of {', '.join(classes)}"])
    return classes[name](registry=registry, workers=workers, ray_address=ray_address,
                         threads=threads)


# --------------------------------------------------------------------------- running tasks


def run_task(task: Task, registry: Any = None) -> list[RunOutcome]:
    """Run a task's seeds with :func:`paralab.run_seeds`; one outcome per seed, in order. A
    configuration rejected while building (a model that does not fit the data) is
    ``rejected`` for each seed, with the reason."""
    import time

    from paralab.seeds import run_seeds
    from paralab.spec import SpecError

    started = time.perf_counter()
    try:
        results = run_seeds(task.spec, list(task.seeds), registry=registry,
                            names=[seed_folder(seed) for seed in task.seeds], study=task.study)
    except SpecError as error:
        return [RunOutcome(task.configuration, seed, "rejected", error="; ".join(error.problems))
                for seed in task.seeds]
    share = (time.perf_counter() - started) / max(1, len(task.seeds))
    return [outcome_of(task, seed, result, share) for seed, result in zip(task.seeds, results)]


def outcome_of(task: Task, seed: int, result: Any, seconds: float = 0.0) -> RunOutcome:
    error = None
    if result.error:
        error = f"{result.error.get('type')}: {result.error.get('message')}"
    return RunOutcome(task.configuration, int(seed), result.status, path=result.path,
                      metrics=dict(result.metrics), main_metric=result.main_metric,
                      error=error, seconds=float(result.timings.get("total", seconds)))


def lost(task: Task, message: str) -> list[RunOutcome]:
    return [RunOutcome(task.configuration, seed, "failed", error=message) for seed in task.seeds]


def balanced(tasks: Sequence[Task], workers: int) -> list[Task]:
    """``tasks``, with seed groups split while there are fewer tasks than ``workers`` (a
    five-seed study of one configuration still uses every worker)."""
    tasks = list(tasks)
    while len(tasks) < workers:
        largest = max(range(len(tasks)), key=lambda i: len(tasks[i].seeds), default=None)
        if largest is None or len(tasks[largest].seeds) < 2:
            break
        task = tasks.pop(largest)
        half = (len(task.seeds) + 1) // 2
        tasks[largest:largest] = [replace(task, seeds=task.seeds[:half]),
                                  replace(task, seeds=task.seeds[half:])]
    return tasks


# ------------------------------------------------------------------------------ in workers

_REGISTRIES: dict[Any, Any] = {}


def worker_registry(settings: Any) -> Any:
    """The registry a worker rebuilds from the driver's load settings (once per process)."""
    from paralab import host

    if settings is None:
        return host.get_registry()
    if settings not in _REGISTRIES:
        _REGISTRIES[settings] = host.make_registry(settings).load()
    return _REGISTRIES[settings]


def _init_worker(settings: Any, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    from paralab import host

    host.set_registry(worker_registry(settings))


def _run_in_worker(task: Task) -> list[RunOutcome]:
    from paralab import host

    return run_task(task, host.get_registry())


def _run_in_ray(task: Task, settings: Any, threads: int) -> list[dict[str, Any]]:
    """In a Ray worker: run the seeds into a temporary folder on this node; return each run's
    outcome and the files of its folder (the driver writes them into the study folder)."""
    import ray
    import torch

    torch.set_num_threads(threads)
    node = ray.get_runtime_context().get_node_id()
    with tempfile.TemporaryDirectory(prefix="paralab-study-") as temporary:
        local = replace(task, spec={**task.spec, "output": temporary})
        outcomes = run_task(local, worker_registry(settings))
        packed = []
        for outcome in outcomes:
            files: dict[str, bytes] = {}
            if outcome.path:
                root = Path(outcome.path)
                files = {str(file.relative_to(root)): file.read_bytes()
                         for file in sorted(root.rglob("*")) if file.is_file()}
            outcome.worker = node
            packed.append({"outcome": outcome, "files": files})
    return packed


def unpack(task: Task, item: dict[str, Any]) -> RunOutcome:
    """Write a Ray worker's run folder into the study folder (in the driver): staged in a
    hidden folder, then renamed into place, its ``result.json`` saying where it now is."""
    import json

    outcome: RunOutcome = item["outcome"]
    files: dict[str, bytes] = item["files"]
    if not files:
        return outcome
    target = task.folder / seed_folder(outcome.seed)
    task.folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.incoming-", dir=task.folder))
    for relative, content in files.items():
        path = staging / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if relative == "result.json":
            data = json.loads(content)
            if isinstance(data.get("spec"), dict):
                data["spec"]["output"] = str(task.folder)
            content = (json.dumps(data, indent=2) + "\n").encode("utf-8")
        path.write_bytes(content)
    if target.exists():
        set_aside(target)
    os.replace(staging, target)
    outcome.path = str(target)
    return outcome


def set_aside(folder: Path) -> Path:
    """Move an unfinished run's folder into ``.attempts/`` beside it (kept, never deleted),
    so the run can start again under its own name."""
    attempts = folder.parent / ATTEMPTS
    attempts.mkdir(exist_ok=True)
    number = 1
    while (attempts / f"{folder.name}.{number}").exists():
        number += 1
    destination = attempts / f"{folder.name}.{number}"
    shutil.move(str(folder), str(destination))
    return destination
