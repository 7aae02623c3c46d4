"""Where real data files live: ``root=`` or ``$PARALAB_DATA/<folder>``, and optional download.

Nothing is ever downloaded unless the caller asks (``download=True``); offline, a missing file
is a clear error that names the folder searched and how to provide it.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

DATA_ENV = "PARALAB_DATA"


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are not where the loader looked."""


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
) -> dict[str, Path]:
    """Paths of ``names`` inside ``folder``; download missing ones when asked and possible."""
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
    return paths
