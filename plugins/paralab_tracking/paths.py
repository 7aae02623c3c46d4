"""Where a tracker writes inside a run's folder, checked before the run starts.

A file tracker writes into the run's own folder, so that every run keeps its record beside its
``result.json`` and two runs never write into one file. A path option is therefore relative to
that folder and may not climb out of it; a run without a folder (``output = None``) has nowhere
to put the file, which is a spec error, not a silent no-op.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any


def check_relative(value: str, field: str, run: Any) -> None:
    """Raise ``ValueError`` (the runner's spec error) when ``value`` cannot name a file or
    folder inside ``run``'s folder."""
    path = PurePath(value)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{field} = {value!r}: give a path relative to the run folder, "
                         f"inside it (e.g. {PurePath(value).name or 'metrics.csv'!r})")
    needs_folder(field, run)


def needs_folder(field: str, run: Any) -> None:
    """The runner prefixes the message with the spec path and the tracker's name."""
    if not run.writer.enabled:
        raise ValueError(f"{field}: this tracker writes into the run folder, and the spec has "
                         f"output = None; set output to a folder or remove the tracker")
