"""Searches: configurations drawn from ``search.space`` instead of a grid.

* ``random``: ``trials`` configurations drawn up front from a generator seeded with
  ``search.seed`` (so a re-run draws the same ones and resumes them), then run like a grid.
* ``optuna``: Optuna's TPE sampler (seeded) asks for ``workers`` trials at a time; each trial is
  one configuration run over every seed, and its value is the mean of ``objective`` over
  them. On resume the finished trials are told to a fresh Optuna study first, so it goes on
  from what it learnt.
* ``ray_tune``: Ray Tune's ``Tuner`` (its default random search, seeded) runs the trials, each
  trial a configuration's seeds in one Tune worker that writes its run folders straight into
  the study folder: on a cluster, put the study folder on a file system every node sees.

A trial's folder is ``trial-NNN``; the values it drew are in ``study.json`` and the table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from paralab.study.expand import Configuration
from paralab.study.spec import Dimension, SearchSpec


def trial_label(index: int) -> str:
    return f"trial-{index:03d}"


def sample_random(search: SearchSpec) -> list[Configuration]:
    """``search.trials`` configurations drawn independently from ``search.space``."""
    import numpy as np

    generator = np.random.default_rng(search.seed)
    configurations = []
    for index in range(search.trials):
        values = {d.path: _draw(d, generator) for d in search.space}
        configurations.append(Configuration(trial_label(index), values))
    return configurations


def _draw(dimension: Dimension, generator: Any) -> Any:
    if dimension.kind == "choice":
        return dimension.choices[int(generator.integers(len(dimension.choices)))]
    low, high = dimension.low, dimension.high
    assert low is not None and high is not None
    if dimension.kind == "int":
        if dimension.log:
            value = math.exp(generator.uniform(math.log(low), math.log(high + 1)))
            return int(min(high, max(low, math.floor(value))))
        return int(generator.integers(low, high + 1))
    if dimension.log:
        return float(math.exp(generator.uniform(math.log(low), math.log(high))))
    return float(generator.uniform(low, high))


def corner_configurations(search: SearchSpec) -> list[Configuration]:
    """Configurations at the bounds of every dimension (the others at their first bound), to
    check a search's space against the registry before any trial runs."""
    first = {d.path: d.corners()[0] for d in search.space}
    configurations = [Configuration("corner-000", dict(first))]
    for dimension in search.space:
        for value in dimension.corners()[1:]:
            values = {**first, dimension.path: value}
            configurations.append(Configuration(f"corner-{len(configurations):03d}", values))
    return configurations


def objective_value(runs: Sequence[dict[str, Any]], metric: str) -> float | None:
    """The mean of ``metric`` over a configuration's completed runs (``None``: none has it)."""
    values = [float(run["metrics"][metric]) for run in runs
              if run.get("status") == "completed"
              and isinstance((run.get("metrics") or {}).get(metric), (int, float))
              and math.isfinite(float(run["metrics"][metric]))]
    return sum(values) / len(values) if values else None


# -------------------------------------------------------------------------------- Optuna


class OptunaSearch:
    """Optuna's ask-and-tell over ``search.space`` (TPE, seeded with ``search.seed``)."""

    def __init__(self, search: SearchSpec) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.search = search
        self.optuna = optuna
        self.study = optuna.create_study(
            direction=search.direction,
            sampler=optuna.samplers.TPESampler(seed=search.seed),
        )
        self.distributions = {d.path: self._distribution(d) for d in search.space}

    def _distribution(self, dimension: Dimension) -> Any:
        distributions = self.optuna.distributions
        if dimension.kind == "choice":  # indices: Optuna's choices must be plain scalars
            return distributions.CategoricalDistribution(list(range(len(dimension.choices))))
        if dimension.kind == "int":
            return distributions.IntDistribution(int(dimension.low), int(dimension.high),
                                                 log=dimension.log)
        return distributions.FloatDistribution(float(dimension.low), float(dimension.high),
                                               log=dimension.log)

    def values_of(self, params: dict[str, Any]) -> dict[str, Any]:
        values = {}
        for dimension in self.search.space:
            value = params[dimension.path]
            values[dimension.path] = (dimension.choices[value] if dimension.kind == "choice"
                                      else value)
        return values

    def params_of(self, values: dict[str, Any]) -> dict[str, Any] | None:
        """Optuna's parameters for values drawn before (``None`` when outside the space)."""
        params = {}
        for dimension in self.search.space:
            if dimension.path not in values:
                return None
            value = values[dimension.path]
            if dimension.kind == "choice":
                if value not in dimension.choices:
                    return None
                value = list(dimension.choices).index(value)
            params[dimension.path] = value
        return params

    def add_finished(self, values: dict[str, Any], objective: float | None) -> None:
        """Tell Optuna a trial that finished in an earlier session of this study."""
        params = self.params_of(values)
        if params is None:
            return
        state = self.optuna.trial.TrialState
        trial = self.optuna.trial.create_trial(
            params=params, distributions=self.distributions,
            value=objective, state=state.COMPLETE if objective is not None else state.FAIL)
        self.study.add_trial(trial)

    def ask(self) -> tuple[Any, dict[str, Any]]:
        trial = self.study.ask(self.distributions)
        return trial, self.values_of(trial.params)

    def tell(self, trial: Any, objective: float | None) -> None:
        if objective is None:
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, objective)


# ------------------------------------------------------------------------------ Ray Tune


def tune_space(search: SearchSpec) -> dict[str, Any]:
    """``search.space`` as Ray Tune's sampling functions (choices by index)."""
    from ray import tune

    space = {}
    for dimension in search.space:
        if dimension.kind == "choice":
            space[dimension.path] = tune.choice(list(range(len(dimension.choices))))
        elif dimension.kind == "int":
            sample = tune.lograndint if dimension.log else tune.randint
            space[dimension.path] = sample(int(dimension.low), int(dimension.high) + 1)
        else:
            sample = tune.loguniform if dimension.log else tune.uniform
            space[dimension.path] = sample(float(dimension.low), float(dimension.high))
    return space


def tune_values(search: SearchSpec, config: dict[str, Any]) -> dict[str, Any]:
    values = {}
    for dimension in search.space:
        value = config[dimension.path]
        if dimension.kind == "choice":
            value = dimension.choices[int(value)]
        elif dimension.kind == "int":
            value = int(value)
        else:
            value = float(value)
        values[dimension.path] = value
    return values


def tune_trial(config: dict[str, Any], payload: dict[str, Any]) -> None:
    """One Ray Tune trial: a configuration's seeds, run into the study folder; reports the
    objective and every run's outcome (JSON) to Tune."""
    import json
    from pathlib import Path

    import torch
    from ray import tune

    from paralab.overrides import apply_overrides
    from paralab.study.executors import Task, run_task, worker_registry

    torch.set_num_threads(payload["threads"])
    search: SearchSpec = payload["search"]
    registry = worker_registry(payload["settings"])
    trial_id = tune.get_context().get_trial_id() or ""
    suffix = trial_id.rsplit("_", 1)[-1]
    index = payload["offset"] + (int(suffix) if suffix.isdigit() else 0)
    configuration = Configuration(trial_label(index), tune_values(search, config))
    data = apply_overrides(payload["base"], [*payload["overrides"], *configuration.overrides],
                           registry)
    data["output"] = str(Path(payload["folder"]) / configuration.label)
    study = {**payload["study"], "configuration": configuration.label,
             "values": dict(configuration.values)}
    task = Task(configuration.label, data, tuple(payload["seeds"]), study)
    outcomes = [outcome.to_dict() for outcome in run_task(task, registry)]
    metric = payload["objective"] or next((o["main_metric"] for o in outcomes
                                           if o["main_metric"]), "")
    objective = objective_value(outcomes, metric)
    tune.report({"objective": math.nan if objective is None else objective,
                 "label": configuration.label,
                 "values": json.dumps(configuration.values),
                 "outcomes": json.dumps(outcomes)})
