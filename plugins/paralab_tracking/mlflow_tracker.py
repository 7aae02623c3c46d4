"""The ``mlflow`` tracker: each paralab run is an MLflow run in a real tracking store.

What an MLflow run holds:

* **params**: the resolved spec (after overrides, every option's default filled in),
  flattened: ``method.lr``, ``model.hidden``, ``protocol.epochs``, ``seed`` ...
  (:func:`paralab_tracking.values.resolved_spec`, :func:`~paralab_tracking.values.flat_spec`);
* **metrics**: every scalar phase metric, step = phase position from 0, as ``result.json``
  holds it (double precision: the values are equal, not close);
* **tags**: ``paralab.plugin.<name>`` = version for every active plugin,
  ``paralab.package.<name>`` = version (at the end), paralab's git commit
  (``mlflow.source.git.commit``, ``paralab.git.dirty``), ``paralab.run_dir``, ``paralab.seed``,
  ``paralab.status`` (``completed``, ``failed``, ``interrupted``), the error when it failed;
* **artifacts** (``log_artifacts = true``): the run folder's files when the run ends (result,
  summary, curve, model, the CSV and TensorBoard files of the other trackers), and
  ``result.json`` as the run ended;
* its **status**: FINISHED, FAILED when the run failed, KILLED when it was interrupted.

The store is ``tracking_uri``, by default ``sqlite:///<output>/mlflow.db`` (the spec's output
folder), whose experiments keep their artifacts in ``<output>/mlartifacts``. The run folder
gets ``mlflow_run.json`` (store, experiment and run ids); a resumed run continues the same
MLflow run.

**Studies**: :meth:`MlflowTracker.before_study` makes (or, when the study is run again, finds)
a parent run and hands its id to the study's runs (``info.extra``); each run is then a child
(tag ``mlflow.parentRunId``) in the parent's store and experiment.
:meth:`MlflowTracker.after_study` logs the study's table and plot on the parent and ends it.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
from pathlib import Path
from typing import Any

from paralab import Tracker, hookimpl
from paralab_tracking import mlflow_store as store
from paralab_tracking.values import flat_spec, resolved_spec, scalars, study_value

RUN_FILE = "mlflow_run.json"
"""In a run folder: which MLflow run records it (a resumed run continues that one)."""
STUDY_FILE = "mlflow_study.json"
"""In a study folder: the study's parent run (a study run again reuses it)."""

PARENT = "mlflow_parent_run_id"
STORE = "mlflow_tracking_uri"
EXPERIMENT = "mlflow_experiment_id"
"""Keys of ``StudyInfo.extra`` (and so of ``run.study``) that :meth:`before_study` fills."""

logger = logging.getLogger("paralab_tracking")

_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


class MlflowTracker(Tracker):
    """Records one run (or, through ``before_study``/``after_study``, a study) in MLflow."""

    def __init__(self, tracking_uri: str = "", experiment: str = "", run_name: str = "",
                 artifact_location: str = "", log_artifacts: bool = True) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.artifact_location = artifact_location
        self.log_artifacts = log_artifacts
        self.run_id: str | None = None
        self.uri = ""
        self._client: Any = None
        self._ended = False

    # ------------------------------------------------------------------------------ a run

    def validate(self, run: Any) -> None:
        """Open the store now, so that a bad ``tracking_uri`` is a spec error before training:
        a local store is created here, a server must answer. In a study the run uses its
        parent's store and experiment (``run.study``), whatever its own options say."""
        from_study = study_value(run.study, STORE)
        if not (from_study or self.tracking_uri or run.writer.enabled):
            raise ValueError("tracking_uri: empty means sqlite:///<output>/mlflow.db, and the "
                             "spec has output = None; set tracking_uri or output")
        self.uri = from_study or self.tracking_uri or store.default_uri(run.spec.output)
        try:
            self._client = store.client(self.uri)
        except Exception as error:  # noqa: BLE001 - MLflow raises MlflowException, not ValueError
            raise ValueError(f"tracking_uri = {self.uri!r}: {error}") from error
        problem = store.unreachable(self.uri)
        if problem:
            raise ValueError(f"tracking_uri = {self.uri!r}: {problem}")

    @hookimpl
    def paralab_before_experiment(self, run: Any) -> None:
        client = self._client
        folder = run.output_dir if run.writer.enabled else None
        previous = _read(folder / RUN_FILE) if folder is not None else None
        if run.result.phases and previous and previous.get("tracking_uri") == self.uri:
            self.run_id = previous["run_id"]  # a resumed run goes on in its MLflow run
            client.update_run(self.run_id, status="RUNNING")
            store.log(client, self.run_id, tags={"paralab.status": "running"})
            return
        experiment = study_value(run.study, EXPERIMENT) or store.experiment_id(
            client, self._experiment_name(run), store.artifact_root(self.uri,
                                                                    self.artifact_location))
        name = self.run_name or self._run_name(run, folder)
        created = client.create_run(experiment, run_name=name, tags=self._tags(run, folder))
        self.run_id = created.info.run_id
        store.log(client, self.run_id, params=flat_spec(resolved_spec(run.result)))
        if folder is not None:
            _write(folder / RUN_FILE, {"tracking_uri": self.uri, "experiment_id": experiment,
                                       "run_id": self.run_id,
                                       "parent_run_id": study_value(run.study, PARENT)})
            run.result.artifacts["mlflow_run"] = RUN_FILE

    @staticmethod
    def _run_name(run: Any, folder: Path | None) -> str:
        """The run folder's name; in a study, with the configuration's label before it (every
        configuration's folder holds the same ``seed=0``, ``seed=1`` ...)."""
        name = folder.name if folder is not None else run.spec.name
        label = study_value(run.study, "configuration")
        return f"{label} {name}" if isinstance(label, str) and label else name

    def _experiment_name(self, run: Any) -> str:
        return self.experiment or study_value(run.study, "name") or run.spec.name

    def _tags(self, run: Any, folder: Path | None) -> dict[str, str]:
        result = run.result
        provenance = result.provenance or {}
        git = provenance.get("paralab_git") or {}
        command = provenance.get("command") or []
        tags = {
            "mlflow.source.type": "LOCAL",
            "mlflow.source.name": Path(command[0]).name if command else "paralab",
            "mlflow.user": _user(),
            "paralab.spec_name": run.spec.name,
            "paralab.seed": str(run.spec.seed),
            "paralab.device": str(run.device),
            "paralab.host": str(provenance.get("host", "")),
            "paralab.status": "running",
        }
        if git.get("commit"):
            tags["mlflow.source.git.commit"] = git["commit"]
            tags["paralab.git.commit"] = git["commit"]
            tags["paralab.git.dirty"] = str(bool(git.get("dirty"))).lower()
        if folder is not None:
            tags["paralab.run_dir"] = str(folder.resolve())
        for record in result.plugins:
            if record.get("status") in ("active", "missing"):
                tags[f"paralab.plugin.{record['name']}"] = str(record.get("version", ""))
        parent = study_value(run.study, PARENT)
        if parent:
            tags["mlflow.parentRunId"] = parent
            tags["paralab.study"] = str(study_value(run.study, "name") or "")
            for field in ("configuration", "seed", "values"):
                item = study_value(run.study, field)
                if item is not None:
                    tags[f"paralab.study.{field}"] = (
                        item if isinstance(item, str) else json.dumps(item, default=str))
        return tags

    # After every other plugin's after_phase (which may add metrics or fail the phase), so the
    # tracker records the phase as result.json keeps it.
    @hookimpl(trylast=True)
    def paralab_after_phase(self, run: Any, phase: Any) -> None:
        step = len(run.result.phases)
        store.log(self._client, self.run_id,
                  metrics=[(k, v, step) for k, v in scalars(phase.metrics).items()])

    # Last among the trackers: the others' files (TensorBoard's hparams) are complete by then.
    @hookimpl(trylast=True)
    def paralab_after_experiment(self, run: Any, result: Any) -> None:
        self._end(run, result, result.status)

    @hookimpl(trylast=True)
    def paralab_on_error(self, run: Any, error: BaseException, phase: Any) -> None:
        if self.run_id is None:
            return  # failed before the MLflow run existed
        status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        where = f" (during {phase.kind} {phase.index})" if phase is not None else ""
        try:
            store.log(self._client, self.run_id,
                      tags={"paralab.error": f"{type(error).__name__}: {error}{where}"})
            if self._ended:  # the run failed after (or in) this tracker's after_experiment
                store.log(self._client, self.run_id, tags={"paralab.status": status})
                self._client.set_terminated(self.run_id, _STATUS[status])
            else:
                self._end(run, run.result, status)
        except Exception as failure:  # noqa: BLE001 - the store may be what failed the run
            # Raising here would keep the on_error hooks after this one from running.
            logger.warning("mlflow: could not mark run %s %s in %s: %s", self.run_id,
                           _STATUS[status], self.uri, failure)

    def _end(self, run: Any, result: Any, status: str) -> None:
        self._ended = True
        client = self._client
        packages = {f"paralab.package.{name}": version
                    for name, version in (result.packages or {}).items()}
        store.log(client, self.run_id, tags={"paralab.status": status, **packages})
        ended = _STATUS.get(status, "FAILED")
        try:
            if self.log_artifacts:
                if run.writer.enabled:
                    self._upload(run.output_dir)
                # The result as it ended (the folder's copy is rewritten after the hooks).
                client.log_text(self.run_id, json.dumps(result.to_dict(), indent=2) + "\n",
                                "result.json")
        except BaseException:
            ended = "FAILED"  # the run fails on this error: so does its MLflow run
            raise
        finally:
            client.set_terminated(self.run_id, ended)

    def _upload(self, folder: Path) -> None:
        """The run folder's files, less the store itself if it was put in there."""
        excluded = {p for p in (store.sqlite_file(self.uri),) if p is not None}
        root = store.local_path(store.artifact_root(self.uri, self.artifact_location))
        if root is not None:
            excluded.add(root)
        for entry in sorted(folder.iterdir()):
            resolved = entry.resolve()
            if entry.name.startswith(".") or entry.name == "result.json" or any(
                    resolved == p or p.is_relative_to(resolved) or resolved.is_relative_to(p)
                    for p in excluded):
                continue
            if entry.is_dir():
                self._client.log_artifacts(self.run_id, str(entry), artifact_path=entry.name)
            else:
                self._client.log_artifact(self.run_id, str(entry))

    # ------------------------------------------------------------------------------ a study

    def before_study(self, info: Any) -> None:
        """Create the study's parent run (or find it, when the study runs again) and hand its
        store, experiment and id to the study's runs through ``info.extra``."""
        folder = Path(info.folder)
        self.uri = self.tracking_uri or store.default_uri(folder)
        client = self._client = store.client(self.uri)
        previous = _read(folder / STUDY_FILE)
        if previous and previous.get("tracking_uri") == self.uri and _exists(
                client, previous["run_id"]):
            self.run_id, experiment = previous["run_id"], previous["experiment_id"]
            client.update_run(self.run_id, status="RUNNING")
        else:
            experiment = store.experiment_id(
                client, self.experiment or info.name,
                store.artifact_root(self.uri, self.artifact_location))
            tags = {"paralab.role": "study", "paralab.study": info.name,
                    "paralab.study_folder": str(folder.resolve()), "mlflow.user": _user(),
                    "mlflow.source.type": "LOCAL"}
            self.run_id = client.create_run(experiment, run_name=info.name,
                                            tags=tags).info.run_id
            store.log(client, self.run_id, params={
                "study.seeds": json.dumps(list(getattr(info, "seeds", None) or []), default=str)})
            folder.mkdir(parents=True, exist_ok=True)
            _write(folder / STUDY_FILE, {"tracking_uri": self.uri, "experiment_id": experiment,
                                         "run_id": self.run_id})
        info.extra[PARENT] = self.run_id
        info.extra[STORE] = self.uri
        info.extra[EXPERIMENT] = experiment

    def after_study(self, info: Any) -> None:
        """Log the study's own files (``table.csv``, ``table.md``, ``study.json``,
        ``study.png``; each run's files are on its child) on the parent run and end it:
        FINISHED when every run completed, KILLED when the study was interrupted, else
        FAILED."""
        folder = Path(info.folder)
        run_id = info.extra.get(PARENT) or self.run_id
        if self._client is None or run_id is None:
            previous = _read(folder / STUDY_FILE) or {}
            run_id = run_id or previous.get("run_id")
            self.uri = info.extra.get(STORE) or previous.get("tracking_uri") or self.uri
            self._client = store.client(self.uri)
        if run_id is None:
            raise RuntimeError(f"{folder}: no MLflow parent run to end (before_study did not "
                               f"run and there is no {STUDY_FILE})")
        database = store.sqlite_file(self.uri)
        if self.log_artifacts and folder.is_dir():
            for entry in sorted(folder.iterdir()):
                if entry.is_file() and not entry.name.startswith(".") and not (
                        database is not None and entry.resolve().parent == database.parent
                        and entry.name.startswith(database.name)):
                    self._client.log_artifact(run_id, str(entry))
        status = str(getattr(info, "status", "") or "completed")
        # Tags, not params: a study's configurations are known only as it runs them (a search
        # draws them), and a study run again may add some; params cannot change.
        configurations = list(getattr(info, "configurations", None) or [])
        store.log(self._client, run_id, tags={
            "paralab.status": status, "paralab.study.configurations": str(len(configurations)),
            **{f"paralab.study.configuration.{i}": json.dumps(_described(c), default=str)
               for i, c in enumerate(configurations[:1000])}})
        self._client.set_terminated(run_id, _STATUS.get(status, "FAILED"))


def _described(configuration: Any) -> Any:
    """A study configuration as its parameter: what it sets (``{"label", "values", ...}``
    of :class:`paralab.StudyInfo` gives ``{"lr=0.1": {"method.lr": 0.1}}``)."""
    if isinstance(configuration, dict) and "label" in configuration:
        return {configuration["label"]: configuration.get("values", {})}
    return configuration


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _write(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
    os.replace(temporary, path)


def _exists(client: Any, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:
        return False


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"

