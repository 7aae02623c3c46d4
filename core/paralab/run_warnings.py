"""One line per distinct warning in a run, not one per evaluation.

Libraries warn from inside loops: fairlearn or the fairness auditor about a tiny group at every
evaluation point, torch about a deprecated call at every step. Eighteen copies of one
``FairnessWarning`` on stderr hide the one warning that matters. While a run is active,
:func:`collect` lets the first occurrence of each (category, message) through as usual (a
person sees it when it happens, ``pytest.warns`` records it), counts the repeats, and at the
end says in one line how many repeats were not shown. ``result.json`` keeps every distinct
warning with its count and where it came from, so a run folder tells what was warned.

The warning filters in force stay in force: an ``error`` filter still raises and an
``ignore`` filter still silences. Only warnings no filter decides are shown every time
(instead of Python's once per code location) so that the count is right.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class RunWarnings:
    """The distinct warnings of a run, in the order they first came, with their counts."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self._index: dict[tuple[str, str], dict[str, Any]] = {
            (record["category"], record["message"]): record for record in records
        }

    def count(self, message: Warning | str, category: type[Warning], filename: str,
              lineno: int) -> bool:
        """Count one warning; ``True`` when it is the first of its kind in this run."""
        key = (category.__name__, str(message))
        record = self._index.get(key)
        if record is not None:
            record["count"] += 1
            return False
        record = {"category": key[0], "message": key[1], "where": f"{filename}:{lineno}",
                  "count": 1}
        self.records.append(record)
        self._index[key] = record
        return True


@contextmanager
def collect(records: list[dict[str, Any]]) -> Iterator[RunWarnings]:
    """Count the warnings raised inside the block into ``records`` (a live list: a result saved
    midway already holds the counts so far); show each kind once, then a summary of repeats."""
    collector = RunWarnings(records)
    with warnings.catch_warnings():
        forward = warnings.showwarning
        warnings.filterwarnings("always", append=True)  # undecided ones: count every copy

        def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
            if collector.count(message, category, filename, lineno):
                forward(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        try:
            yield collector
        finally:
            warnings.showwarning = forward
            repeated = [record for record in records if record["count"] > 1]
            if repeated:
                forward(_summary(repeated), RepeatedWarning, __file__, 0)


class RepeatedWarning(UserWarning):
    """How often a warning shown once in a run came (see :mod:`paralab.run_warnings`)."""


def _summary(repeated: list[dict[str, Any]]) -> str:
    """One line for all repeats: how many, of which categories, and where the counts are."""
    by_category: dict[str, int] = {}
    for record in repeated:
        by_category[record["category"]] = by_category.get(record["category"], 0) + record["count"] - 1
    total = sum(by_category.values())
    listed = ", ".join(f"{name} {count}" for name, count in by_category.items())
    return (f"{total} repeats of {len(repeated)} warning(s) shown above were not shown again "
            f"({listed}); result.json's 'warnings' and summary.md count each")
