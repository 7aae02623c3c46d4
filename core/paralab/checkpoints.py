"""A run's saved model and its phase checkpoints: :func:`load_model`, :func:`resume`.

* **The model**: a completed run with an output folder saves its model's ``state_dict`` as
  ``model.safetensors`` (tensors only, no pickle: safe to load from anyone's run folder);
  :func:`load_model` rebuilds the module from the saved spec and loads the weights.
* **Checkpoints**: ``checkpoint_every = N`` saves ``checkpoint.pt`` every N phases: what the
  protocol needs to continue (:meth:`paralab.interfaces.Protocol` ``checkpoint_state``), the
  random number generators, the phases so far, and the state of each of the run's middleware
  and trackers that has ``checkpoint_state(run)``/``restore_state(run, state)`` (the ``dp``
  middleware's accountant and noise stream). It is read back with
  ``torch.load(weights_only=True)``, so it holds tensors and plain data only.
  :func:`resume` (``paralab resume RUN_DIR``) rebuilds the run from its folder and continues
  after the last checkpoint; a protocol whose spec declares ``resumable`` continues so that the
  final metrics equal those of an uninterrupted run of the same seed.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from paralab.results import MODEL_FILE, RESULT_FILE, Result, _clean

if TYPE_CHECKING:
    from paralab.context import RunContext

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_VERSION = 1


class ResumeError(ValueError):
    """A run folder cannot be resumed (no checkpoint, already completed, another version)."""


def save_model(model: torch.nn.Module, folder: Path) -> Path:
    """``model``'s weights as ``folder/model.safetensors`` (shared tensors stored once)."""
    from safetensors.torch import save_model as save

    path = Path(folder) / MODEL_FILE
    save(model, str(path), metadata={"format": "pt", "saved_by": "paralab"})
    return path


def load_model(run_dir: str | os.PathLike[str], *, device: str | torch.device = "cpu",
               registry: Any = None) -> torch.nn.Module:
    """The trained model of a run folder: built from the saved spec (the model factory sees the
    saved dataset's shape), with the saved weights, in ``eval()`` mode.

    >>> import paralab
    >>> result = paralab.run({"dataset": "iris", "model": "mlp", "output": str(tmp),
    ...                       "protocol": {"name": "supervised", "epochs": 1}})  # doctest: +SKIP
    >>> model = paralab.load_model(result.path)  # doctest: +SKIP
    """
    from safetensors.torch import load_model as load

    from paralab.data.cache import load_dataset
    from paralab.host import get_registry
    from paralab.spec import ExperimentSpec

    folder = Path(run_dir)
    weights = folder / MODEL_FILE
    if not weights.is_file():
        raise FileNotFoundError(
            f"{folder} has no {MODEL_FILE}: the run did not complete, ran with "
            f"save_model = false, or its protocol trains no torch model"
        )
    result = Result.load(folder)
    spec = ExperimentSpec.from_dict(result.spec, str(folder / RESULT_FILE))
    registry = registry or get_registry()
    dataset = load_dataset(spec.dataset.name, device="cpu", registry=registry,
                           **spec.dataset.options)
    factory = registry.component("model", spec.model.name).load()
    model = factory(dataset.info, **spec.model.options)
    load(model, str(weights), device=str(device))
    return model.to(device).eval()


# ------------------------------------------------------------------------------ checkpoints


def rng_state(run: RunContext) -> dict[str, Any]:
    """Every generator a run draws from: its own, torch's, numpy's and Python's (and CUDA's)."""
    state = {
        "run": run.generator.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(run: RunContext, state: dict[str, Any]) -> None:
    run.generator.set_state(state["run"])
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state() -> tuple[Any, ...]:
    name, keys, position, has_gauss, cached = np.random.get_state()
    return (name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss),
            float(cached))


RUN_OBJECT_PREFIXES = ("middleware[", "trackers[")
"""The names under which the runner registers a run's own objects in its plugin manager."""


def _run_objects(run: RunContext) -> dict[str, Any]:
    """The run's middleware and trackers by their registered name (``middleware[0]:dp``)."""
    return {name: plugin for name, plugin in run.hooks.pm.list_name_plugin()
            if plugin is not None and name.startswith(RUN_OBJECT_PREFIXES)}


def run_objects_state(run: RunContext) -> dict[str, Any]:
    """What each of the run's middleware and trackers that has a ``checkpoint_state(run)``
    needs to continue (a DP accountant's steps so far, its noise generator): without it a
    resumed run would restart their counts and streams, and its metrics would differ."""
    states = {}
    for name, plugin in _run_objects(run).items():
        checkpoint_state = getattr(plugin, "checkpoint_state", None)
        if callable(checkpoint_state):
            states[name] = checkpoint_state(run)
    return states


def restore_run_objects(run: RunContext, states: dict[str, Any]) -> None:
    """Hand each middleware or tracker back its :func:`run_objects_state` entry."""
    objects = _run_objects(run)
    for name, state in states.items():
        plugin = objects.get(name)
        restore_state = getattr(plugin, "restore_state", None)
        if not callable(restore_state):
            raise ResumeError(f"the checkpoint holds the state of {name}, which this run has "
                              f"not or cannot take back (no restore_state)")
        restore_state(run, state)


def save_checkpoint(run: RunContext) -> Path:
    """Write ``checkpoint.pt`` for the phases closed so far (atomically)."""
    folder = run.writer.folder
    state = {
        "version": CHECKPOINT_VERSION,
        "phases": len(run.result.phases),
        "protocol": run.protocol.checkpoint_state(run),
        "rng": rng_state(run),
        "plugins": run_objects_state(run),
        # What result.json does not hold per phase: the run's latest values (JSON text).
        "result": json.dumps(_clean({"metrics": run.result.metrics, "audits": run.result.audits,
                                     "artifacts": run.result.artifacts})),
    }
    path = folder / CHECKPOINT_FILE
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{CHECKPOINT_FILE}.", suffix=".tmp")
    os.close(handle)
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    run.result.artifacts["checkpoint"] = CHECKPOINT_FILE
    return path


@dataclass
class Resumption:
    """What :func:`resume` hands the runner: the folder, the saved result and checkpoint."""

    folder: Path
    result: Result
    checkpoint: dict[str, Any]

    def restore(self, run: RunContext) -> None:
        """Put the run back where the checkpoint left it, before the protocol starts."""
        count = self.checkpoint["phases"]
        phases = self.result.phases[:count]
        run.result.phases = list(phases)
        saved = json.loads(self.checkpoint["result"])
        run.result.metrics.update(saved["metrics"])
        run.result.audits.update(saved["audits"])
        run.result.artifacts.update(saved["artifacts"])
        run.result.provenance["resumed"] = {
            "from_phase": count,
            "previous_status": self.result.status,
            "previous": self.result.provenance,
        }
        set_rng_state(run, self.checkpoint["rng"])
        restore_run_objects(run, self.checkpoint.get("plugins", {}))
        run.protocol.restore_state(run, self.checkpoint["protocol"])


def resume(run_dir: str | os.PathLike[str], *, registry: Any = None) -> Result:
    """Continue an interrupted or failed run from its last checkpoint, in the same folder.

    Raises :class:`ResumeError` when the folder has no checkpoint (the spec had no
    ``checkpoint_every``, or the run stopped before the first) or the run had completed.
    """
    from paralab.runner import run

    folder = Path(run_dir)
    if not (folder / RESULT_FILE).is_file():
        raise ResumeError(f"{folder} is not a run folder (no {RESULT_FILE})")
    result = Result.load(folder)
    if result.status == "completed":
        raise ResumeError(f"{folder}: the run completed; there is nothing to resume")
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        raise ResumeError(
            f"{folder} has no {CHECKPOINT_FILE}: run with checkpoint_every = N (phases) to be "
            f"able to resume; this run stopped with status {result.status!r}"
        )
    checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise ResumeError(f"{path}: checkpoint version {checkpoint.get('version')!r}, this "
                          f"paralab reads version {CHECKPOINT_VERSION}")
    return run(dict(result.spec), registry=registry, study=result.study,
               resume_from=Resumption(folder, result, checkpoint))
