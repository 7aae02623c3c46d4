"""Memory figures per experience: what a strategy keeps, and the peak memory of training.

Papers report a replay buffer's size in bytes and the peak memory of a method. Each
experience's phase records (deterministic, so a resumed run reproduces them):

* ``memory/strategy_bytes``: what the strategy's plugins keep between experiences, as stored
  (replay's index memory, EWC's ``A`` and ``B``, SI's importances, LwF's teacher, A-GEM's
  indices).
* ``memory/buffer_rows`` and ``memory/buffer_bytes``: the rehearsal memory's examples and the
  bytes they would take as copies of the inputs and targets (what a paper means by "a buffer of
  200 MNIST images"; paralab stores indices, so its own cost is in ``strategy_bytes``).

Peak memory depends on the machine and on what else the process holds, so it is not a phase
metric (metrics are what a resumed or a stacked run must reproduce exactly); each
experience's peaks go to ``result.provenance["peak_memory"]``:

* ``peak_rss_bytes``: the process's peak resident memory during the experience (Linux resets
  the high-water mark through ``/proc/self/clear_refs`` at each experience's start; where it
  cannot, it is the peak since the process started and ``scope`` says ``"process"`` instead
  of ``"experience"``).
* ``peak_device_bytes``: on CUDA, ``torch.cuda.max_memory_allocated`` over the experience
  (reset at its start).
* ``stacked``: how many seeds shared the process (the seed axis trains them as one model).
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from typing import Any

import torch

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); False if it cannot."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _read_hwm() is not None


def _read_hwm() -> int | None:
    """``VmHWM`` of /proc/self/status in bytes (None off Linux)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakMemory:
    """The peak memory of one experience: :meth:`start` before training, :meth:`figures`
    after consolidation."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.scope = "process"

    def start(self) -> None:
        self.scope = "experience" if _reset_peak_rss() else "process"
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def record(self, run: Any, experience: int, stacked: int = 1) -> None:
        """Append this experience's peaks to ``run.result.provenance["peak_memory"]``."""
        entry: dict[str, Any] = {"experience": experience, "scope": self.scope,
                                 **self.figures()}
        if stacked > 1:
            entry["stacked"] = stacked
        run.result.provenance.setdefault("peak_memory", []).append(entry)

    def figures(self) -> dict[str, int]:
        peak = _read_hwm() if self.scope == "experience" else None
        if peak is None:
            # ru_maxrss: KiB on Linux, bytes on macOS.
            scale = 1 if sys.platform == "darwin" else 1024
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        figures = {"peak_rss_bytes": int(peak)}
        if self.device.type == "cuda":
            figures["peak_device_bytes"] = int(torch.cuda.max_memory_allocated(self.device))
        return figures


def strategy_figures(method: Any, dataset: Any) -> dict[str, int]:
    """``memory/strategy_bytes``, ``memory/buffer_rows`` and ``memory/buffer_bytes`` of a
    native strategy (empty for a method that cannot say, the Avalanche adapter)."""
    report = getattr(method, "memory_report", None)
    return report(dataset) if callable(report) else {}
