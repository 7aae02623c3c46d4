"""Helpers for the host's tests: real installed-distribution metadata in a temporary folder.

``make_distribution`` writes ``NAME-VERSION.dist-info`` (METADATA and entry_points.txt) and the
plugin's modules into a folder; with that folder on ``sys.path`` (or ``PYTHONPATH`` for a
subprocess) ``importlib.metadata`` finds the plugin exactly as it finds an installed one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def make_distribution(
    folder: Path,
    name: str,
    version: str,
    entry_points: Mapping[str, str],
    modules: Mapping[str, str] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = ["[paralab]"] + [f"{key} = {value}" for key, value in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for relative, source in (modules or {}).items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return folder


@contextmanager
def on_path(*folders: Path) -> Iterator[None]:
    """Put folders first on sys.path; forget modules imported from them afterwards."""
    before = set(sys.modules)
    sys.path[:0] = [str(folder) for folder in folders]
    try:
        yield
    finally:
        for folder in folders:
            sys.path.remove(str(folder))
        for module in set(sys.modules) - before:
            origin = getattr(sys.modules[module], "__file__", None) or ""
            if any(origin.startswith(str(folder)) for folder in folders):
                del sys.modules[module]


def paralab_cli(*args: str, env: Mapping[str, str] | None = None, path: Path | None = None,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m paralab ARGS`` in a fresh interpreter."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PARALAB_")}
    environment["PARALAB_QUIET"] = "1"
    if "PARALAB_DATA" in os.environ:
        environment["PARALAB_DATA"] = os.environ["PARALAB_DATA"]
    if path is not None:
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(path), environment.get("PYTHONPATH", "")]
        ).strip(os.pathsep)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "paralab", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd or REPOSITORY,
        timeout=300,
        check=False,
    )


HELLO = REPOSITORY / "examples" / "paralab-hello"


def hello_distribution(folder: Path) -> Path:
    """The example third-party plugin as an installed distribution in ``folder``."""
    make_distribution(folder, "paralab-hello", "0.2.0", {"paralab_hello": "paralab_hello"})
    target = folder / "paralab_hello"
    target.mkdir(exist_ok=True)
    for source in (HELLO / "paralab_hello").glob("*.py"):
        (target / source.name).write_text(source.read_text("utf-8"), encoding="utf-8")
    return folder
