"""Where real data files live: ``root=`` or ``$PARALAB_DATA/<folder>``, and optional download.

Nothing is ever downloaded unless the caller asks (``download=True``); offline, a missing file
is a clear error that names the folder searched and how to provide it.

What a loader reads is checked, not trusted: a corrupt file (garbage lines, a wrong column
count, non-UTF-8 bytes, NaN numbers, labels out of range, a bad IDX header) is a
:class:`DataFileError` naming the file and the line or record, so the runner rejects the spec
(no run folder) instead of training on garbage. Where a ``SHA256SUMS`` file sits beside the
data, ``verify=True`` checks each file against it (:func:`verify_files`).
"""

from __future__ import annotations

import hashlib
import math
import os
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

DATA_ENV = "PARALAB_DATA"
SUMS_FILE = "SHA256SUMS"


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are not where the loader looked."""


class DataFileError(ValueError):
    """A data file's contents are not what its loader expects.

    A ``ValueError``, so the runner turns it into a :class:`~paralab.SpecError` raised before
    any run folder exists. The message starts with the file, then the line (text files) or
    record (binary files), then what was wrong.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str, *, line: int | None = None,
                 record: int | None = None) -> None:
        where = f"line {line}: " if line is not None else (
            f"record {record}: " if record is not None else "")
        super().__init__(f"{path}: {where}{problem}")
        self.path = Path(path)
        self.line = line
        self.record = record
        self.problem = problem


def resolve_root(root: str | os.PathLike[str] | None, folder: str) -> Path:
    """The folder holding a dataset's files: ``root`` itself, or ``$PARALAB_DATA/folder``."""
    if root is not None:
        return Path(root).expanduser()
    base = os.environ.get(DATA_ENV)
    if not base:
        raise DataNotFoundError(
            f"dataset folder {folder!r}: pass root=... (or root = '...' in the spec's dataset "
            f"table) or set {DATA_ENV} to the folder that holds {folder}/"
        )
    return Path(base).expanduser() / folder


def require_files(
    folder: Path,
    names: list[str],
    *,
    dataset: str,
    urls: dict[str, str] | None = None,
    download: bool = False,
    verify: bool = False,
) -> dict[str, Path]:
    """Paths of ``names`` inside ``folder``; download missing ones when asked and possible.

    An empty file is a :class:`DataFileError` here (every loader needs content); with
    ``verify`` each file is checked against the ``SHA256SUMS`` beside it.
    """
    paths = {name: folder / name for name in names}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing and download and urls:
        folder.mkdir(parents=True, exist_ok=True)
        for name in missing:
            if name in urls:
                urllib.request.urlretrieve(urls[name], paths[name])  # noqa: S310 - asked for
        missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        hint = " or pass download=True when online" if urls else ""
        raise DataNotFoundError(
            f"dataset {dataset!r}: missing {', '.join(missing)} in {folder}; put the files "
            f"there{hint}"
        )
    for path in paths.values():
        if path.stat().st_size == 0:
            raise DataFileError(path, f"the file is empty (dataset {dataset!r})")
    if verify:
        verify_files(list(paths.values()))
    return paths


def find_sums(path: Path) -> Path | None:
    """The ``SHA256SUMS`` that covers ``path``: in its folder or any folder above it."""
    for folder in path.resolve().parents:
        candidate = folder / SUMS_FILE
        if candidate.is_file():
            return candidate
    return None


def read_sums(sums: Path) -> dict[Path, str]:
    """``sha256sum`` output (``DIGEST  PATH``, or ``DIGEST *PATH``), paths made absolute."""
    digests: dict[Path, str] = {}
    for number, line in text_lines(sums):
        if not line.strip():
            continue
        digest, _, name = line.strip().partition(" ")
        name = name.lstrip(" *")
        if len(digest) != 64 or not name or any(c not in "0123456789abcdef" for c in digest):
            raise DataFileError(sums, f"not a sha256sum line: {line.strip()[:80]!r}", line=number)
        digests[(sums.parent / name).resolve()] = digest
    return digests


def sha256(path: Path) -> str:
    """The file's SHA-256, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(paths: Iterable[Path]) -> None:
    """Check each file against the ``SHA256SUMS`` beside it (``verify = true``).

    No ``SHA256SUMS``, a file it does not list, or a different digest is a
    :class:`DataFileError` naming the file (and, for a mismatch, both digests).
    """
    cache: dict[Path, dict[Path, str]] = {}
    for path in paths:
        sums = find_sums(path)
        if sums is None:
            raise DataFileError(path, f"verify = true, but there is no {SUMS_FILE} in its "
                                      "folder or any folder above it")
        if sums not in cache:
            cache[sums] = read_sums(sums)
        expected = cache[sums].get(path.resolve())
        if expected is None:
            raise DataFileError(path, f"verify = true, but {sums} does not list this file")
        actual = sha256(path)
        if actual != expected:
            raise DataFileError(path, f"sha256 {actual} does not match {expected} listed in "
                                      f"{sums} (the file is corrupt or a different version)")


def text_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a text file, line endings removed; bytes that are not
    ``encoding`` are a :class:`DataFileError` naming the line (not a bare UnicodeDecodeError)."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as error:
                raise DataFileError(path, f"bytes that are not {encoding} at column "
                                          f"{error.start + 1}", line=number) from None
            yield number, line.rstrip("\r\n")


def number(path: Path, value: str, column: str, line: int) -> float:
    """``value`` as a finite float; anything else (``nan``, ``inf``, text) names the line."""
    try:
        result = float(value)
    except ValueError:
        raise DataFileError(path, f"column {column!r} = {value!r} is not a number",
                            line=line) from None
    if not math.isfinite(result):
        raise DataFileError(path, f"column {column!r} = {value!r} is not a finite number",
                            line=line)
    return result


def require_classes(path: Path, labels: Sequence[int], classes: Sequence[str],
                    split: str = "", minimum: int = 2) -> None:
    """Every class of ``classes`` has at least ``minimum`` rows in ``labels`` (a stratified
    split needs two; a classifier needs both classes), else a :class:`DataFileError`."""
    counts = [0] * len(classes)
    for label in labels:
        counts[label] += 1
    where = f" of split {split!r}" if split else ""
    if not labels:
        raise DataFileError(path, f"no usable rows{where}")
    short = [f"{name!r}: {count}" for name, count in zip(classes, counts) if count < minimum]
    if short:
        raise DataFileError(path, f"too few rows of a class{where} ({', '.join(short)}; "
                                  f"need {minimum} each)")


def decoded_text(path: Path, encoding: str = "utf-8") -> str:
    """The whole file as text; bytes that are not ``encoding`` name their line."""
    data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataFileError(path, f"bytes that are not {encoding}", line=line) from None
