"""The few things the ``mlflow`` tracker asks of an MLflow tracking store, through an explicit
``MlflowClient`` (never MLflow's process-wide active run, which two runs in one process, or a
study's parent and its children, would share).

Imports MLflow inside functions: importing it takes seconds, and this module is imported as
soon as a spec names the tracker (to check its options), not only when a run starts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

DATABASE = "mlflow.db"
"""The default store's file, in the spec's output folder (a study's: the study folder)."""
ARTIFACTS = "mlartifacts"
"""Beside a sqlite store: the artifact root of the experiments this tracker creates (MLflow's
own default would be ``./mlruns`` of whatever folder the process started in)."""

_BAD_KEY = re.compile(r"[^\w\-. :/]")
_MAX_VALUE = {"param": 6000, "tag": 8000}
"""MLflow's limits on a param's and a tag's value (``mlflow.utils.validation``)."""
_PER_BATCH = {"metrics": 1000, "params": 100, "tags": 100}


def default_uri(folder: str | Path) -> str:
    """``sqlite:////abs/folder/mlflow.db``: a real store, in the folder the run writes into."""
    return f"sqlite:///{Path(folder).resolve() / DATABASE}"


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative: to the working folder)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path).resolve() if path and path != ":memory:" else None


def artifact_root(uri: str, chosen: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``chosen``, else beside a sqlite file, else
    the store's own default (a server's, a file store's)."""
    if chosen:
        return chosen
    database = sqlite_file(uri)
    return (database.parent / ARTIFACTS).as_uri() if database else None


def local_path(uri: str | None) -> Path | None:
    """The folder of a ``file:`` URI, else None."""
    if not uri or not uri.startswith("file:"):
        return None
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(uri).path)).resolve()


def client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def unreachable(uri: str, timeout: float = 10.0) -> str | None:
    """Why nothing answers at an ``http(s)://`` tracking URI, or None. Any HTTP answer, even an
    error status, means a server is there; only a refused or timed-out connection is a problem
    (MLflow itself would retry it for minutes before failing the run)."""
    if not uri.startswith(("http://", "https://")):
        return None
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return (f"no MLflow server answers there ({reason}); start one with `mlflow server "
                f"--host 127.0.0.1 --port PORT` or leave tracking_uri empty for a local store")


def experiment_id(store: Any, name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name``, created when missing (restored when deleted). Runs that
    start together may race to create it: the loser reads the winner's."""
    from mlflow.exceptions import MlflowException

    found = store.get_experiment_by_name(name)
    if found is None:
        try:
            return store.create_experiment(name, artifact_location=artifact_location)
        except MlflowException:
            found = store.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        store.restore_experiment(found.experiment_id)
    return found.experiment_id


def key(name: str) -> str:
    """A metric or param key MLflow accepts (letters, digits, ``_-. :/``)."""
    return _BAD_KEY.sub("_", name)


def value(text: Any, kind: str) -> str:
    text = str(text)
    limit = _MAX_VALUE[kind]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def now_ms() -> int:
    return int(time.time() * 1000)


def log(store: Any, run_id: str, *, metrics: Iterable[tuple[str, float, int]] = (),
        params: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None) -> None:
    """Metrics ``(key, value, step)``, params and tags in as few requests as MLflow allows."""
    from mlflow.entities import Metric, Param, RunTag

    stamp = now_ms()
    entities = {
        "metrics": [Metric(key(k), float(v), stamp, int(step)) for k, v, step in metrics],
        "params": [Param(key(k), value(v, "param")) for k, v in (params or {}).items()],
        "tags": [RunTag(k, value(v, "tag")) for k, v in (tags or {}).items()],
    }
    for kind, items in entities.items():
        size = _PER_BATCH[kind]
        for start in range(0, len(items), size):
            store.log_batch(run_id, **{kind: items[start:start + size]}, synchronous=True)
