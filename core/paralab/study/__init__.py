"""Studies: one experiment over several seeds and configurations, with a table of intervals.

A study names a base spec, ``seeds``, a ``grid`` over any spec paths (or a random, Optuna or Ray
Tune search) and an executor (``local``, ``processes``, ``ray``); :func:`run_study` checks every
configuration, runs what is missing into the study folder (resuming what completed) and writes
``study.json``, ``table.csv``, ``table.md`` and ``study.png``. See ``docs/studies.md``.

>>> import paralab
>>> study = paralab.run_study("examples/study_digits.toml")  # doctest: +SKIP
>>> study.best("test/accuracy")  # doctest: +SKIP
"""

from __future__ import annotations

from paralab.study.driver import run_study
from paralab.study.executors import (
    Executor,
    LocalExecutor,
    ProcessExecutor,
    RayExecutor,
    RunOutcome,
    Task,
    make_executor,
)
from paralab.study.expand import Configuration
from paralab.study.objects import Best, Study, StudyInfo, StudyRun
from paralab.study.spec import Dimension, SearchSpec, StudySpec, load_study, parse_seeds

__all__ = [
    "Best",
    "Configuration",
    "Dimension",
    "Executor",
    "LocalExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "RunOutcome",
    "SearchSpec",
    "Study",
    "StudyInfo",
    "StudyRun",
    "StudySpec",
    "Task",
    "load_study",
    "make_executor",
    "parse_seeds",
    "run_study",
]
