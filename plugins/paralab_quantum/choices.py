"""The named values the plugin's options accept, in one pure-Python place.

The declarations in :mod:`paralab_quantum` (read without importing torch, PennyLane or Qiskit)
and the code that acts on the values use these same tuples; the circuit's own vocabularies
(embeddings, rotations, entanglers, measurements) live in :mod:`paralab_quantum.circuit`, which
is pure Python too.
"""

from __future__ import annotations

from paralab_quantum.circuit import (
    EMBEDDINGS,
    ENTANGLERS,
    MEASUREMENTS,
    ROTATIONS,
    ZZ_ENTANGLEMENTS,
)

BACKENDS = ("torch", "pennylane", "lightning")
"""Where a quantum layer runs: paralab's batched torch simulator, PennyLane ``default.qubit``
(backprop) or ``lightning.qubit`` (adjoint)."""

PRECISIONS = ("single", "double")
"""Statevector precision: complex64 or complex128."""

READOUTS = ("linear", "direct")
"""How a classifier's measured outputs become logits."""

SVC_KERNELS = ("rbf", "linear", "poly", "sigmoid")
"""scikit-learn's kernels for the classical ``svc`` baseline (the quantum one is ``qsvc``)."""

SVC_GAMMAS = ("scale", "auto")
"""scikit-learn's named ``gamma`` values (a number >= 0 is the other choice)."""

NOISE_PLACEMENTS = ("gate", "layer")
"""Where noise channels act: after every gate on its wires, or after every circuit layer on
every wire (:class:`paralab_quantum.density.Noise`)."""

__all__ = ["BACKENDS", "DIFF_METHODS", "EMBEDDINGS", "ENTANGLERS", "MEASUREMENTS",
           "NOISE_PLACEMENTS", "PRECISIONS", "READOUTS", "ROTATIONS", "SVC_GAMMAS", "SVC_KERNELS",
           "ZZ_ENTANGLEMENTS"]
DIFF_METHODS = ("backprop", "parameter-shift")
"""How a quantum layer is differentiated (:mod:`paralab_quantum.shots`)."""
