"""What ``paralab sweep`` and ``paralab run --seeds/--grid`` do (the lead's ``cli.py`` parses
the arguments and calls these).

Both print one progress line per finished run on stderr (none with ``PARALAB_QUIET``, which
``-q`` sets; outside a terminal the runs' own per-phase lines are silenced) and the table
(Markdown) on stdout at the end. Exit codes: 0 every run completed, 1 some run did not (the table shows what did),
2 the study or a configuration is invalid (nothing ran).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from paralab.spec import ExperimentSpec, SpecError


def sweep_main(study_path: str, *, executor: str | None = None, workers: int | None = None,
               output: str | None = None, overrides: Sequence[str] = (), registry: Any = None,
               resume: bool = True) -> int:
    """``paralab sweep STUDY.toml [--executor E] [--workers N] [--output DIR] [--set P=V]
    [--no-resume]``."""
    from paralab.study.spec import load_study

    try:
        spec = load_study(study_path)
    except SpecError as error:
        return _invalid(error)
    return _run(spec, executor=executor, workers=workers, output=output, overrides=overrides,
                registry=registry, resume=resume)


def run_as_study(spec_path: str, *, seeds: str | None = None, grid: Sequence[str] = (),
                 overrides: Sequence[str] = (), output: str | None = None,
                 executor: str | None = None, workers: int | None = None,
                 registry: Any = None, resume: bool = True) -> int:
    """``paralab run SPEC.toml --seeds 0-4 --grid method.lr=0.01,0.1 [--set P=V]``: the spec
    as the base of a study named after it, in ``OUTPUT/NAME`` (``--output`` or the spec's
    ``output``). ``grid`` items are ``PATH=V1,V2,...`` (commas inside ``[]``/``{}`` stay)."""
    from paralab.overrides import OverrideError, apply_overrides, parse_override, parse_value
    from paralab.study.expand import split_values
    from paralab.study.spec import parse_study

    try:
        base = ExperimentSpec.read_toml(spec_path)
        # --output/--set name=... name the study's folder (the runs' own are the study's)
        named = apply_overrides(base, overrides)
        problems = []
        table: dict[str, Any] = {"grid": {}}
        for item in grid:
            path, equals, text = item.partition("=")
            try:
                parse_override(f"{path.strip()}=0")
            except OverrideError as error:
                problems.append(f"--grid {error}")
                continue
            if not equals or not text.strip():
                problems.append(f"--grid {item!r}: write PATH=V1,V2,..., e.g. "
                                f"method.lr=0.01,0.1")
                continue
            if path.strip() in table["grid"]:
                problems.append(f"--grid {item!r}: {path.strip()} is given twice; list every "
                                f"value in one --grid")
                continue
            table["grid"][path.strip()] = [parse_value(v) for v in split_values(text)]
        if problems:
            raise SpecError(problems, spec_path)
        if seeds is not None:
            table["seeds"] = seeds
        table["name"] = named.get("name") or Path(spec_path).stem
        table["output"] = output if output is not None else (named.get("output") or "runs")
        if executor is not None:
            table["executor"] = executor
        if workers is not None:
            table["workers"] = workers
        spec = parse_study(table, base=base, base_source=str(spec_path), source=str(spec_path))
    except SpecError as error:
        return _invalid(error)
    return _run(spec, executor=None, workers=None, output=None, overrides=overrides,
                registry=registry, resume=resume)


def _run(spec: Any, *, executor: str | None, workers: int | None, output: str | None,
         overrides: Sequence[str], registry: Any, resume: bool) -> int:
    from paralab.study.driver import run_study
    from paralab.study.objects import TABLE_MD

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    quiet = bool(os.environ.get("PARALAB_QUIET"))  # -q: no progress lines at all
    try:
        # Outside a terminal one line per run, not each run's line per phase as well.
        with _runs_quiet(not quiet and not sys.stderr.isatty()):
            study = run_study(spec, registry=registry, executor=executor, workers=workers,
                              output=output, overrides=overrides, resume=resume,
                              progress=None if quiet else progress)
    except SpecError as error:
        return _invalid(error)
    except KeyboardInterrupt:
        print(f"paralab: the study was interrupted; its finished runs are kept in "
              f"{Path(spec.output).absolute() / spec.name} (or the name-N folder it named); "
              f"run the same command again to resume", file=sys.stderr)
        raise
    sys.stdout.write((study.folder / TABLE_MD).read_text("utf-8"))
    counts = study.counts()
    total = sum(counts.values())
    print(f"paralab: study {study.name}: {counts.get('completed', 0)}/{total} runs completed; "
          f"{study.folder}", file=sys.stderr)
    return 0 if counts.get("completed", 0) == total else 1


@contextmanager
def _runs_quiet(enabled: bool) -> Iterator[None]:
    """``PARALAB_QUIET=1`` for the study's runs (also the workers it starts), then as before."""
    if not enabled:
        yield
        return
    os.environ["PARALAB_QUIET"] = "1"
    try:
        yield
    finally:
        os.environ.pop("PARALAB_QUIET", None)


def _invalid(error: SpecError) -> int:
    print(f"paralab: {error}", file=sys.stderr)
    return 2
