"""Kernel methods for the ``kernel`` protocol: a quantum-kernel SVM and its classical baseline.

Both fit scikit-learn's ``SVC`` (on a precomputed Gram matrix for the quantum kernel) and
return logits, so the host's evaluation engine, metrics and auditors treat them like any model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from paralab import KernelMethod
from paralab_quantum.choices import SVC_GAMMAS
from paralab_quantum.kernel import FidelityKernel

if TYPE_CHECKING:
    from paralab import RunContext


class KernelSVC(KernelMethod):
    """``fit(x, y)`` then ``logits(x)``: an ``SVC`` whose decision values become logits.

    :param kernel: ``quantum`` (the :class:`FidelityKernel`) or any scikit-learn kernel name
        (``rbf``, ``linear``, ``poly``, ``sigmoid``).

    The methods' options are declared (and checked) in :mod:`paralab_quantum`; the one check a
    declaration cannot express (``gamma`` is a number or one of ``"scale"``, ``"auto"``) is
    :meth:`validate`.
    """

    def __init__(self, kernel: str = "quantum", C: float = 1.0, embedding: str = "zz",
                 reps: int = 2, entanglement: str = "full", n_qubits: int = 0,
                 scale: float = 1.0, gamma: str | float = "scale") -> None:
        self.kernel = kernel
        self.C = float(C)
        self.gamma = gamma
        self.quantum = (
            FidelityKernel(embedding, n_qubits=n_qubits, reps=reps, entanglement=entanglement,
                           scale=scale)
            if kernel == "quantum"
            else None
        )
        self.n_classes = 0
        self._train: torch.Tensor | None = None
        self._svc = None

    def validate(self, run: RunContext) -> None:
        if isinstance(self.gamma, str) and self.gamma not in SVC_GAMMAS:
            raise ValueError(
                f"gamma = {self.gamma!r}: expected {' or '.join(map(repr, SVC_GAMMAS))} or a "
                "number >= 0"
            )

    def fit(self, x: torch.Tensor, y: torch.Tensor, n_classes: int | None = None) -> KernelSVC:
        from sklearn.svm import SVC

        x = x.reshape(x.shape[0], -1)
        self.n_classes = int(n_classes or int(y.max()) + 1)
        labels = y.detach().cpu().numpy()
        if self.quantum is not None:
            self._train = x
            features = self.quantum.gram(x).cpu().numpy()
            self._svc = SVC(kernel="precomputed", C=self.C)
        else:
            features = x.detach().cpu().double().numpy()
            self._svc = SVC(kernel=self.kernel, C=self.C, gamma=self.gamma)
        self._svc.fit(features, labels)
        return self

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, n_classes)`` scores whose argmax is the SVC's prediction."""
        if self._svc is None:
            raise RuntimeError("call fit before logits")
        x = x.reshape(x.shape[0], -1)
        if self.quantum is not None:
            features = self.quantum.gram(x, self._train).cpu().numpy()
        else:
            features = x.detach().cpu().double().numpy()
        decision = torch.as_tensor(self._svc.decision_function(features), dtype=torch.float32)
        classes = torch.as_tensor(self._svc.classes_, dtype=torch.long)
        logits = torch.full((x.shape[0], self.n_classes), -1e4)
        if decision.dim() == 1:  # binary: positive means classes_[1]
            logits[:, classes[0]] = -decision / 2
            logits[:, classes[1]] = decision / 2
        else:
            logits[:, classes] = decision
        return logits.to(x.device)


def qsvc(C: float = 1.0, embedding: str = "zz", reps: int = 2, entanglement: str = "full",
         n_qubits: int = 0, scale: float = 1.0) -> KernelSVC:
    """The quantum-kernel SVM (the ``qsvc`` method)."""
    return KernelSVC("quantum", C, embedding, reps, entanglement, n_qubits, scale)


def svc(kernel: str = "rbf", C: float = 1.0, gamma: str | float = "scale") -> KernelSVC:
    """A classical SVM (the ``svc`` method), the baseline the quantum kernel is compared with
    (its declared kernels leave ``quantum`` to ``qsvc``)."""
    return KernelSVC(kernel, C, gamma=gamma)
