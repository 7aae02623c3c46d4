"""Refuse a statevector that cannot fit, before allocating it.

A statevector of ``n`` qubits holds ``2**n`` complex amplitudes per example: 8 bytes each in
complex64, 16 in complex128 (PennyLane and Qiskit use complex128). Thirty qubits is already
16 GiB per example, so a typo in ``n_qubits`` would otherwise end in the kernel's OOM killer,
minutes later and with no message.
"""

from __future__ import annotations

import os

ALWAYS_FITS = 2**26
"""Statevectors up to 64 MiB are not checked against the free memory (any device has it)."""


class QubitMemoryError(MemoryError):
    """The statevector does not fit in the memory of the chosen simulator's device."""


def available_bytes(device: str = "cpu") -> int:
    """Free memory on ``device``: CUDA's free memory, else the host's MemAvailable."""
    if str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def statevector_bytes(n_qubits: int, batch: int = 1, bytes_per_amplitude: int = 8) -> int:
    return (2**n_qubits) * batch * bytes_per_amplitude


def check_statevector(
    n_qubits: int,
    *,
    batch: int = 1,
    bytes_per_amplitude: int = 8,
    copies: int = 1,
    simulator: str = "torch",
    device: str = "cpu",
    limit_bytes: int | None = None,
) -> int:
    """Raise :class:`QubitMemoryError` when ``copies`` statevectors of ``batch`` examples on
    ``n_qubits`` qubits exceed ``limit_bytes`` (default: the device's free memory); return the
    bytes needed otherwise. Nothing is allocated."""
    needed = statevector_bytes(n_qubits, batch, bytes_per_amplitude) * max(copies, 1)
    if limit_bytes is None and needed <= ALWAYS_FITS:
        return needed  # skip reading the free memory on every small forward pass
    limit = available_bytes(device) if limit_bytes is None else int(limit_bytes)
    if needed > limit:
        raise QubitMemoryError(
            f"{simulator} simulator: {n_qubits} qubits x batch {batch} needs "
            f"{_human(needed)} of statevectors ({copies} cop{'y' if copies == 1 else 'ies'} of "
            f"2**{n_qubits} amplitudes x {bytes_per_amplitude} bytes) but {device} has "
            f"{_human(limit)} free; use fewer qubits (at most "
            f"{max_qubits(limit, batch, bytes_per_amplitude * max(copies, 1))}) or a smaller batch"
        )
    return needed


def max_qubits(limit_bytes: int, batch: int = 1, bytes_per_amplitude: int = 8) -> int:
    n = 0
    while statevector_bytes(n + 1, batch, bytes_per_amplitude) <= limit_bytes:
        n += 1
    return n


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PiB"
