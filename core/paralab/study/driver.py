"""Run a study: check every configuration, claim the folder, resume, execute, aggregate.

1. **check**: every configuration (the grid's product, a random search's draws, or the
   corners of an adaptive search's space) becomes a spec that is validated against the
   registry; every problem is a :class:`paralab.SpecError` naming the study field, raised
   before any run starts and before the study folder exists.
2. **folder**: ``output/name``. With ``resume`` (the default) an existing study folder is
   continued; without, a new one is claimed (``name-2``, ...).
3. **resume**: a run whose ``result.json`` says ``completed`` (and whose spec is the one this
   study would run) is kept and not run again; an unfinished one (failed, interrupted, or a
   process that died mid-run) is moved into ``.attempts/`` and run again.
4. **execute** the remaining runs on the executor; ``study.json`` is rewritten (atomically)
   after every finished run, so a study stopped anywhere keeps every finished run.
5. **aggregate**: ``table.csv``, ``table.md`` and ``study.png``; the trackers'
   ``after_study``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from paralab.overrides import toml_value
from paralab.results import RESULT_FILE, write_atomic
from paralab.spec import ExperimentSpec, SpecError
from paralab.study import search as searches
from paralab.study import table as tables
from paralab.study.executors import Executor, RunOutcome, Task, make_executor, set_aside
from paralab.study.expand import Configuration, grid_configurations, seed_folder
from paralab.study.objects import STUDY_FILE, STUDY_PLOT, TABLE_CSV, TABLE_MD, Study, StudyInfo
from paralab.study.plot import band, phase_label, plot_bands, run_curve
from paralab.study.spec import StudySpec, load_study, study_from_dict

Progress = Callable[[str], None]
FORMAT = 1
_IGNORED_IN_COMPARISON = ("output",)
"""Spec fields a resumed run may differ in: the folder moves with the study."""


def run_study(study: StudySpec | str | os.PathLike[str] | Mapping[str, Any], *,
              registry: Any = None, executor: str | Executor | None = None,
              workers: int | None = None, resume: bool = True, overrides: Sequence[str] = (),
              output: str | None = None, progress: Progress | None = None) -> Study:
    """Run a study (a study file, a :class:`StudySpec` or a study file's data) and return
    its :class:`Study`.

    ``executor``, ``workers`` and ``output`` replace the study's own; ``overrides`` change
    the base spec after the study's ``overrides`` (``["protocol.epochs=3"]``). ``progress``
    gets one line per finished run. Raises :class:`paralab.SpecError` before any run when a
    configuration is invalid; failed runs are recorded (status ``failed``), never raised.

    >>> import paralab
    >>> study = paralab.run_study("examples/study_digits.toml")  # doctest: +SKIP
    >>> study.table()  # doctest: +SKIP
    """
    from paralab.host import get_registry

    spec = coerce(study)
    changes: dict[str, Any] = {"workers": workers, "output": output}
    if isinstance(executor, str):
        changes["executor"] = executor
    if overrides:
        changes["overrides"] = [*spec.overrides, *overrides]
    spec = spec.with_changes(**changes)
    registry = registry or get_registry()
    session = _Session(spec, registry, executor, progress or (lambda line: None))
    return session.run(resume)


def coerce(study: StudySpec | str | os.PathLike[str] | Mapping[str, Any]) -> StudySpec:
    if isinstance(study, StudySpec):
        return study
    if isinstance(study, (str, os.PathLike)):
        return load_study(study)
    if isinstance(study, Mapping):
        return study_from_dict(study)
    raise TypeError(f"expected a study file, a StudySpec or a study's data, got {type(study)}")


# ------------------------------------------------------------------------------- checking


def resolve(spec: StudySpec, configuration: Configuration, registry: Any) -> dict[str, Any]:
    """The configuration's spec data: the base, the study's overrides, the configuration's
    values; checked against the registry (raises :class:`SpecError`)."""
    from paralab.overrides import apply_overrides

    data = apply_overrides(spec.base, [*spec.overrides, *configuration.overrides], registry)
    ExperimentSpec.from_dict(data).validate(registry)
    return data


def check(spec: StudySpec, configurations: Sequence[Configuration], registry: Any) -> None:
    """Every configuration against the registry, every problem named by its study field."""
    from paralab.overrides import apply_overrides

    problems: list[str] = []
    try:
        apply_overrides(spec.base, spec.overrides, registry)
    except SpecError as error:
        problems += [_field("study.overrides", p) for p in error.problems]
    dimensions = [(f"study.grid[{path!r}]", path, values[0]) for path, values in spec.grid]
    if spec.search is not None:
        dimensions += [(f"study.search.space[{d.path!r}]", d.path, d.corners()[0])
                       for d in spec.search.space]
    for where, path, value in dimensions:
        try:
            apply_overrides(spec.base, [f"{path}={toml_value(value)}"], registry)
        except SpecError as error:
            problems += [_field(where, p) for p in error.problems]
    if problems:
        raise SpecError(problems, spec.source)
    found: dict[str, list[str]] = {}
    for configuration in configurations:
        try:
            resolve(spec, configuration, registry)
        except SpecError as error:
            for problem in error.problems:
                found.setdefault(problem, []).append(configuration.label)
    for problem, labels in found.items():
        if len(labels) == len(configurations):
            problems.append(f"{spec.base_source or 'the base spec'}: {problem}")
        else:
            shown = ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3
                                              else "")
            problems.append(f"configuration {shown}: {problem}")
    output = Path(spec.output)
    for parent in (output, *output.parents):
        if parent.exists():
            if not parent.is_dir():
                problems.append(f"study.output = {spec.output!r}: {parent} is a file, not a "
                                f"folder")
            break
    if problems:
        raise SpecError(problems, spec.source)


def _field(where: str, problem: str) -> str:
    """``--set 'method.lrr=0.1': ...`` from the override grammar, named by the study field."""
    if problem.startswith("--set "):
        problem = problem[len("--set "):]
    return f"{where}: {problem}"


def planned(spec: StudySpec) -> tuple[list[Configuration], list[Configuration]]:
    """``(configurations to run now, configurations only to check)``: a grid or a random
    search knows them all; an adaptive search checks its space's corners."""
    if spec.search is None:
        return grid_configurations(spec.grid), []
    if spec.search.kind == "random":
        return searches.sample_random(spec.search), []
    return [], searches.corner_configurations(spec.search)


# -------------------------------------------------------------------------------- the run


class _Session:
    """One execution of a study: the folder, the book of runs, the executor, the trackers."""

    def __init__(self, spec: StudySpec, registry: Any, executor: str | Executor | None,
                 progress: Progress) -> None:
        self.spec = spec
        self.registry = registry
        self.executor = make_executor(executor if isinstance(executor, Executor)
                                      else spec.executor, registry=registry,
                                      workers=spec.workers, ray_address=spec.ray_address)
        self.progress = progress
        self.configurations: list[Configuration] = []
        self.runs: dict[tuple[str, int], dict[str, Any]] = {}
        self.folder = Path()
        self.info: StudyInfo | None = None
        self.done_count = 0
        self.to_run = 0
        self.started_at = ""
        self.planned_total = 0
        """Runs an adaptive search will make (for the progress lines' count)."""

    # --------------------------------------------------------------------------- phases

    def run(self, resume: bool) -> Study:
        configurations, corners = planned(self.spec)
        check(self.spec, configurations or corners, self.registry)
        trackers = self._trackers()
        self.folder = self._claim(resume)
        previous = self._previous()
        self.started_at = _now()
        self.info = StudyInfo(name=self.spec.name, folder=str(self.folder),
                              configurations=[], seeds=list(self.spec.seeds))
        for tracker in trackers:
            before = getattr(tracker, "before_study", None)
            if callable(before):
                before(self.info)
        status = "interrupted"
        try:
            if self.spec.search is not None and self.spec.search.kind == "optuna":
                self._optuna(previous)
            elif self.spec.search is not None and self.spec.search.kind == "ray_tune":
                self._ray_tune(previous)
            else:
                self.execute(configurations)
            status = ("completed" if all(r["status"] == "completed" for r in self.runs.values())
                      else "incomplete")
        finally:
            self._finish(status)
            for tracker in trackers:
                after = getattr(tracker, "after_study", None)
                if callable(after):
                    after(self.info)
        return Study.load(self.folder)

    def _trackers(self) -> list[Any]:
        from paralab.overrides import apply_overrides

        base = ExperimentSpec.from_dict(apply_overrides(self.spec.base, self.spec.overrides,
                                                        self.registry))
        return [self.registry.component("tracker", ref.name).load()(**ref.options)
                for ref in base.trackers]

    def _claim(self, resume: bool) -> Path:
        """``output/name``, or the first ``name-N`` after it: with ``resume``, the first that
        is a study folder (or empty), else the first free one. A folder that holds something
        else (a single run's folder of the same name) is passed over, never written into."""
        base = Path(self.spec.output).absolute() / self.spec.name
        base.parent.mkdir(parents=True, exist_ok=True)
        suffix = 1
        while True:
            folder = base if suffix == 1 else base.with_name(f"{base.name}-{suffix}")
            suffix += 1
            if resume and folder.is_dir() and ((folder / STUDY_FILE).is_file()
                                               or not any(folder.iterdir())):
                return folder
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            return folder

    def _previous(self) -> dict[str, Any]:
        file = self.folder / STUDY_FILE
        if not file.is_file():
            return {}
        try:
            return json.loads(file.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}

    # ------------------------------------------------------------------------ executing

    def execute(self, configurations: Sequence[Configuration]) -> None:
        """Run what is missing of ``configurations`` x seeds; keep what completed before."""
        assert self.info is not None
        tasks: list[Task] = []
        kept = 0
        problems: list[str] = []
        plans = []
        for configuration in configurations:
            if all(c.label != configuration.label for c in self.configurations):
                self.configurations.append(configuration)
                self.info.configurations.append(configuration.to_dict())
            try:
                data = resolve(self.spec, configuration, self.registry)
            except SpecError as error:
                for seed in self.spec.seeds:
                    self._record(RunOutcome(configuration.label, seed, "rejected",
                                            error="; ".join(error.problems)))
                continue
            data["output"] = str(self.folder / configuration.label)
            pending = []
            for seed in self.spec.seeds:
                outcome, problem = self._existing(configuration.label, seed, data)
                if problem:
                    problems.append(problem)
                elif outcome is not None:
                    self._record(outcome, report=False)
                    kept += 1
                else:
                    pending.append(seed)
            plans.append((configuration, data, pending))
        if problems:
            raise SpecError(problems, self.spec.source)
        for configuration, data, pending in plans:
            for seed in pending:
                self._record(RunOutcome(configuration.label, seed, "pending"), report=False)
                folder = self.folder / configuration.label / seed_folder(seed)
                if folder.exists():
                    set_aside(folder)
            if pending:
                study = {**asdict(self.info), "configuration": configuration.label,
                         "values": dict(configuration.values)}
                tasks.append(Task(configuration.label, data, tuple(pending), study))
        self.to_run += sum(len(task.seeds) for task in tasks)
        if kept:
            self.progress(f"{self.spec.name}: {kept} run(s) completed before, kept; "
                          f"{self.to_run - self.done_count} to run")
        self._save()
        if tasks:
            self.executor.run(tasks, self._record)

    def _existing(self, label: str, seed: int,
                  data: dict[str, Any]) -> tuple[RunOutcome | None, str | None]:
        """A completed run of this configuration and seed, if its folder holds one."""
        folder = self.folder / label / seed_folder(seed)
        file = folder / RESULT_FILE
        if not file.is_file():
            return None, None
        try:
            saved = json.loads(file.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            return None, None
        if saved.get("status") != "completed":
            return None, None
        expected = ExperimentSpec.from_dict({**data, "seed": seed, "name": seed_folder(seed)})
        difference = _difference(saved.get("spec") or {}, expected.to_dict())
        if difference:
            return None, (f"{folder}: holds a completed run of another spec ({difference}); "
                          f"run the study with resume=False (--no-resume) for a new folder, or "
                          f"choose another output or name")
        return RunOutcome(label, seed, "completed", path=str(folder),
                          metrics=dict(saved.get("metrics") or {}),
                          main_metric=saved.get("main_metric", ""),
                          seconds=float((saved.get("timings") or {}).get("total", 0.0))), None

    def _record(self, outcome: RunOutcome, report: bool = True) -> None:
        """Keep one run's outcome (in the driver) and rewrite ``study.json``."""
        item = outcome.to_dict()
        if item["path"]:
            with contextlib.suppress(ValueError):  # another drive (Windows): keep it absolute
                item["path"] = os.path.relpath(item["path"], self.folder)
        self.runs[(outcome.configuration, outcome.seed)] = item
        if report and outcome.status != "pending":
            self.done_count += 1
            self.progress(_progress_line(outcome, self.done_count,
                                         max(self.to_run, self.planned_total)))
            self._save()

    # ------------------------------------------------------------------------ searching

    def _optuna(self, previous: dict[str, Any]) -> None:
        assert self.spec.search is not None
        search = self.spec.search
        sampler = searches.OptunaSearch(search)
        earlier = [c for c in previous.get("configurations", [])
                   if str(c.get("label", "")).startswith("trial-")]
        earlier = earlier[: search.trials]
        if earlier:  # run what an earlier session left unfinished, then tell Optuna
            configurations = [Configuration(c["label"], dict(c.get("values") or {}))
                              for c in earlier]
            self.execute(configurations)
            for configuration in configurations:
                sampler.add_finished(configuration.values, self._objective(configuration))
        batch = max(1, self.spec.workers or 1)
        index = len(earlier)
        self.planned_total = self.to_run + (search.trials - index) * len(self.spec.seeds)
        while index < search.trials:
            asked = []
            for _ in range(min(batch, search.trials - index)):
                trial, values = sampler.ask()
                asked.append((trial, Configuration(searches.trial_label(index), values)))
                index += 1
            self.execute([configuration for _, configuration in asked])
            for trial, configuration in asked:
                sampler.tell(trial, self._objective(configuration))

    def _objective(self, configuration: Configuration) -> float | None:
        runs = [r for (label, _), r in self.runs.items() if label == configuration.label]
        metric = self._objective_metric()
        return searches.objective_value(runs, metric)

    def _objective_metric(self) -> str:
        assert self.spec.search is not None
        return self.spec.search.objective or self._main_metric()

    def _ray_tune(self, previous: dict[str, Any]) -> None:
        import ray
        from ray import tune
        from ray.tune.search.basic_variant import BasicVariantGenerator

        assert self.spec.search is not None and self.info is not None
        search = self.spec.search
        earlier = [c for c in previous.get("configurations", [])
                   if str(c.get("label", "")).startswith("trial-")][: search.trials]
        if earlier:
            self.execute([Configuration(c["label"], dict(c.get("values") or {}))
                          for c in earlier])
        remaining = search.trials - len(earlier)
        if remaining <= 0:
            return
        started = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "configure_logging": False}
            if self.spec.ray_address:
                options["address"] = self.spec.ray_address
            elif self.spec.workers:
                options["num_cpus"] = self.spec.workers
            _init_ray(ray, options)
            started = True
        payload = {
            "search": search, "base": self.spec.base, "overrides": list(self.spec.overrides),
            "folder": str(self.folder), "seeds": list(self.spec.seeds),
            "settings": getattr(self.registry, "settings", None), "threads": 1,
            "offset": len(earlier), "objective": search.objective,
            "study": asdict(self.info),
        }
        self.to_run += remaining * len(self.spec.seeds)
        # Tune's console reporter would print its own tables on the stdout that holds ours.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        try:
            tuner = tune.Tuner(
                tune.with_parameters(searches.tune_trial, payload=payload),
                param_space=searches.tune_space(search),
                tune_config=tune.TuneConfig(
                    num_samples=remaining, metric="objective",
                    mode="max" if search.direction == "maximize" else "min",
                    search_alg=BasicVariantGenerator(random_state=search.seed),
                    max_concurrent_trials=self.spec.workers),
                run_config=tune.RunConfig(storage_path=str(self.folder / ".tune"),
                                          name="tune", verbose=0),
            )
            results = tuner.fit()
        finally:
            if started:
                ray.shutdown()
        reported = []
        for result in results:
            metrics = result.metrics or {}
            if "label" not in metrics:
                continue
            reported.append((metrics["label"], json.loads(metrics["values"]),
                             json.loads(metrics["outcomes"])))
        for label, values, outcomes in sorted(reported, key=lambda item: item[0]):
            configuration = Configuration(label, values)
            self.configurations.append(configuration)
            self.info.configurations.append(configuration.to_dict())
            for item in outcomes:
                self._record(RunOutcome(**item))

    # -------------------------------------------------------------------------- writing

    def _main_metric(self) -> str:
        return next((r["main_metric"] for r in self.runs.values() if r.get("main_metric")), "")

    def _data(self, status: str) -> dict[str, Any]:
        order = {c.label: position for position, c in enumerate(self.configurations)}
        runs = sorted(self.runs.values(),
                      key=lambda r: (order.get(r["configuration"], len(order)), r["seed"]))
        return {
            "format": FORMAT,
            "name": self.spec.name,
            "folder": str(self.folder),
            "status": status,
            "started_at": self.started_at,
            "updated_at": _now(),
            "executor": self.executor.name,
            "main_metric": self._main_metric(),
            "objective": None if self.spec.search is None else {
                "metric": self._objective_metric(), "direction": self.spec.search.direction},
            "seeds": list(self.spec.seeds),
            "study": self.spec.to_dict(),
            "configurations": [c.to_dict() for c in self.configurations],
            "runs": runs,
            "extra": _jsonable(self.info.extra if self.info else {}),
        }

    def _save(self, status: str = "running") -> None:
        write_atomic(self.folder / STUDY_FILE, json.dumps(self._data(status), indent=2) + "\n")

    def _finish(self, status: str) -> None:
        """``study.json`` with the final status, the tables and the plot."""
        assert self.info is not None
        data = self._data(status)
        rows = tables.rows(data["configurations"], data["runs"], data["main_metric"])
        self.info.status = status
        self.info.main_metric = data["main_metric"]
        self.info.table = rows
        write_atomic(self.folder / STUDY_FILE, json.dumps(data, indent=2) + "\n")
        write_atomic(self.folder / TABLE_CSV, tables.to_csv(rows))
        write_atomic(self.folder / TABLE_MD, tables.to_markdown(rows, title=self.spec.name))
        try:
            self._plot(data)
        except Exception as error:  # noqa: BLE001 - a plot never loses the table
            self.progress(f"{self.spec.name}: no {STUDY_PLOT}: {type(error).__name__}: {error}")

    def _plot(self, data: dict[str, Any]) -> None:
        metric = data["main_metric"]
        if not metric:
            return
        series = []
        loaded = []
        for configuration in data["configurations"]:
            curves = []
            for run in data["runs"]:
                if run["configuration"] != configuration["label"] or run["status"] != "completed":
                    continue
                try:
                    result = json.loads((self.folder / run["path"] / RESULT_FILE).read_text())
                except (OSError, json.JSONDecodeError):
                    continue
                loaded.append(result)
                curves.append(run_curve(result, metric))
            series.append((configuration["label"], band(curves)))
        if any(points for _, points in series):
            plot_bands(series, self.folder / STUDY_PLOT, metric=metric,
                       title=f"{self.spec.name}: mean over seeds, 95% interval",
                       xlabel=phase_label(loaded))


def _init_ray(ray: Any, options: dict[str, Any]) -> None:
    import warnings

    with warnings.catch_warnings():  # Ray's notice about accelerator variables, every start
        warnings.simplefilter("ignore", FutureWarning)
        ray.init(**options)


def _difference(saved: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
    for key in sorted(set(saved) | set(expected)):
        if key in _IGNORED_IN_COMPARISON:
            continue
        if saved.get(key) != expected.get(key):
            return f"{key}: {saved.get(key)!r} there, {expected.get(key)!r} now"
    return ""


def _progress_line(outcome: RunOutcome, done: int, total: int) -> str:
    line = f"[{done}/{total}] {outcome.configuration}/{seed_folder(outcome.seed)} {outcome.status}"
    value = outcome.metrics.get(outcome.main_metric)
    if isinstance(value, (int, float)):
        line += f" {outcome.main_metric}={value:.4f}"
    if outcome.seconds:
        line += f" ({outcome.seconds:.1f} s)"
    if outcome.error and outcome.status != "completed":
        line += f": {outcome.error}"
    return line


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
