"""Where a result came from: when it ran, on which host, from which command and commit.

A result that cannot be traced to code and a machine cannot be trusted months later;
``result.json`` keeps this beside the resolved spec. The git commit is read once per process
(two ``git`` calls, ~10 ms), and only when paralab runs from a checkout.
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def provenance() -> dict[str, Any]:
    """The facts known when a run starts; :func:`finish` adds its end."""
    return {
        "started_at": _now(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.executable,
        "command": list(sys.argv) if sys.argv and sys.argv[0] else [],
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "paralab_git": git_state(),
        "_t0": time.time(),
    }


def finish(result: Any) -> None:
    """Stamp the end time and duration (wall clock, seconds) on ``result.provenance``."""
    data = result.provenance
    started = data.pop("_t0", None)
    data["finished_at"] = _now()
    if started is not None:
        data["duration_s"] = round(time.time() - started, 3)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@functools.cache
def git_state() -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the checkout paralab is imported from, or None
    when it is an installed copy (or git is missing)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True,
                                timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip()), "root": str(root)}
