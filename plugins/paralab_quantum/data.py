"""The ``ad_hoc`` dataset of Havlicek et al. 2019, as qiskit-machine-learning generates it.

Its labels are defined by a ZZ feature map, so a quantum kernel separates it by construction;
it is the dataset of the paper's experiment and of Qiskit's QSVC tutorials.

The points are those of ``qiskit_machine_learning.datasets.ad_hoc_data`` (grid sampling,
expectation labelling, full entanglement): the same seed gives the same arrays (a test
compares them). The sampler is ours because qiskit's draws grid points until it has enough of
each class, with no limit: a ``gap`` that leaves no grid point of a class (``gap = 0.95`` with
``n = 3``) spins forever. Here the grid is labelled first, a class with fewer grid points than
the points asked for is a ``ValueError`` naming the options, and the draws have a limit.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from paralab import SharedDataset

GRID_SIDE = {2: 100, 3: 20}
"""Grid points per dimension of qiskit's grid sampler."""

DRAWS_PER_GRID_POINT = 100
"""The draw limit per class, in multiples of the grid's size: with at least as many points
of the class on the grid as are drawn, the expected draws are at most the grid's size."""


def _observable(n: int, rng: np.random.Generator) -> np.ndarray:
    """The labelling observable ``V^dagger Z_n V``, ``V`` a random unitary (qiskit's order of
    draws, so the seed gives qiskit's observable)."""
    dims = 2**n
    a = rng.random((dims, dims)) + 1j * rng.random((dims, dims))
    eigvals, eigvecs = np.linalg.eig(a.conj().T @ a)
    v = eigvecs[:, eigvals.argsort()[::-1]]
    z_n = np.diag(np.sign(np.diag(_hadamard(n))))
    return v.conj().T @ z_n @ v


def _hadamard(n: int) -> np.ndarray:
    """The n-qubit Hadamard matrix, by qiskit's binary powers (the same rounding)."""
    base = np.array([[1, 1], [1, -1]]) / np.sqrt(2)
    result = np.eye(1)
    while n > 0:
        if n % 2 == 1:
            result = np.kron(result, base)
        base = np.kron(base, base)
        n //= 2
    return result


def grid_labels(n: int, gap: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The grid's coordinates and each grid point's label (+1, -1, or 0 inside the gap)."""
    dims = 2**n
    z = [np.diag(np.kron(np.kron(np.eye(2**i), np.diag([1, -1])), np.eye(2 ** (n - i - 1))))
         for i in range(n)]
    pairs = list(itertools.combinations(range(n), 2))
    observable = _observable(n, rng)
    h_n = _hadamard(n)
    psi_0 = np.ones(dims) / np.sqrt(dims)
    xvals = np.linspace(0, 2 * np.pi, GRID_SIDE[n], endpoint=False)
    labels = []
    for point in itertools.product(xvals, repeat=n):
        phase: np.ndarray | float = 0.0  # summed in qiskit's order: the same rounding
        for i in range(n):
            phase = phase + point[i] * z[i]
        for i, j in pairs:
            phase = phase + ((np.pi - point[i]) * (np.pi - point[j])) * (z[i] * z[j])
        u_phi = np.diag(np.exp(1j * np.asarray(phase).flatten()))
        psi = (u_phi @ h_n @ u_phi @ psi_0).reshape((1, -1, 1))
        value = float(np.real(np.transpose(psi.conj(), (0, 2, 1)) @ observable @ psi)[0, 0, 0])
        labels.append((abs(value) > gap) * np.sign(value))
    return xvals, np.array(labels).reshape((GRID_SIDE[n],) * n)


def _draw(label: int, needed: int, xvals: np.ndarray, labels: np.ndarray,
          rng: np.random.Generator) -> np.ndarray:
    """``needed`` grid points of ``label``, drawn with replacement (qiskit's rejection
    sampling, one coordinate at a time), giving up after a bounded number of draws."""
    side, n = labels.shape[0], labels.ndim
    limit = DRAWS_PER_GRID_POINT * labels.size
    points: list[list[float]] = []
    for _ in range(limit):
        if len(points) == needed:
            break
        draws = tuple(int(rng.choice(side)) for _ in range(n))
        if labels[draws] == label:
            points.append([xvals[d] for d in draws])
    if len(points) < needed:
        raise ValueError(f"ad_hoc: {limit} draws gave {len(points)} of {needed} points of a "
                         "class: lower gap or training_size")
    return np.array(points, dtype=np.float64).reshape(needed, n)


def ad_hoc_points(training_size: int, test_size: int, n: int, gap: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class A and class B points, ``training_size + test_size`` of each (train first).

    A ``gap`` outside [0, 1) or not finite, or one that leaves a class fewer grid points than
    the points asked for, is a ``ValueError`` naming the options to change.
    """
    if not (isinstance(gap, (int, float)) and math.isfinite(gap) and 0 <= gap < 1):
        raise ValueError(f"ad_hoc: gap = {gap!r} must be a number in [0, 1) (the labels' "
                         "expectation values lie in [-1, 1])")
    if n not in GRID_SIDE:
        raise ValueError(f"ad_hoc: n = {n!r} must be one of 2, 3")
    if training_size < 1 or test_size < 0:
        raise ValueError(f"ad_hoc: training_size = {training_size} must be >= 1 and "
                         f"test_size = {test_size} >= 0")
    rng = np.random.default_rng(seed)
    xvals, labels = grid_labels(n, gap, rng)
    needed = training_size + test_size
    for name, label in (("A", 1), ("B", -1)):
        available = int(np.sum(labels == label))
        if available < needed:
            raise ValueError(
                f"ad_hoc: gap = {gap} leaves too few points: class {name} has {available} of "
                f"the {labels.size} grid points for n = {n}, fewer than the {needed} "
                f"(training_size + test_size) drawn per class: lower gap or training_size"
            )
    return _draw(1, needed, xvals, labels, rng), _draw(-1, needed, xvals, labels, rng)


def ad_hoc(root: str | None = None, training_size: int = 20, test_size: int = 5, n: int = 2,
           gap: float = 0.3, seed: int = 12345) -> SharedDataset:
    """``training_size`` and ``test_size`` points *per class* in ``n`` dimensions (2 or 3),
    with a margin ``gap``; ``root`` is ignored (the data is generated). The options' ranges
    are declared in :mod:`paralab_quantum` and checked by the spec; what they leave of the
    grid is checked here (:func:`ad_hoc_points`)."""
    a, b = ad_hoc_points(training_size, test_size, n, gap, seed)
    x = np.concatenate([a[:training_size], b[:training_size], a[training_size:],
                        b[training_size:]])
    y = np.array([0] * training_size + [1] * training_size + [0] * test_size + [1] * test_size,
                 dtype=np.int64)
    n_train = 2 * training_size
    return SharedDataset(
        name="ad_hoc",
        x=torch.as_tensor(x, dtype=torch.float32),
        y=torch.as_tensor(y),
        splits={"train": torch.arange(n_train), "test": torch.arange(n_train, len(x))},
        class_names=("A", "B"),
        feature_names=tuple(f"x{i}" for i in range(n)),
        meta={"source": "qiskit_machine_learning.datasets.ad_hoc_data (grid sampling), "
                        "reproduced by paralab_quantum.data with a draw limit",
              "gap": gap, "seed": seed},
    )
